"""Build the one frozen :class:`Config` from layers: defaults < run manifest < config file < CLI flags.

Every leaf value remembers its source so that an error can say ``configs/x.yaml line 7:
training.max_depth: expected an integer >= 1, got 'deep'``. Nothing here touches Spark.
"""
from __future__ import annotations

import collections.abc
import dataclasses
import difflib
import hashlib
import json
import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

import yaml

from .errors import ConfigError
from .redact import redacted
from .storage import Location
from .schema import (BASELINES, CATEGORICAL_ENCODINGS, NUMERIC_TRANSFORMS, SECTIONS, SPLIT_NAMES, TIME_FEATURES,
                     Config)

DAC_NUMERIC = tuple(f"I{i}" for i in range(1, 14))
DAC_CATEGORICAL = tuple(f"C{i}" for i in range(1, 27))


@dataclass(frozen=True)
class Layer:
    """One source of settings: a nested mapping plus, per dotted key, a human description of where it is."""

    name: str
    values: Mapping[str, Any]
    where: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def source(self, key: str) -> str:
        return self.where.get(key, self.name)


# ---------------------------------------------------------------------------------------------- layers

def _key_lines(node: yaml.Node, prefix: str, out: dict[str, int]) -> None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = f"{prefix}{key_node.value}"
            out[key] = key_node.start_mark.line + 1
            _key_lines(value_node, key + ".", out)


def load_file_layer(path: str | Path) -> Layer:
    """Read a YAML config file into a :class:`Layer` that knows each key's line number."""
    try:
        text = Location.of(path).read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc.strerror or exc})") from None
    try:
        node = yaml.compose(text)
        values = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}{where}: not valid YAML ({problem})") from None
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of sections (input:, sampling:, ...) at the top level")
    lines: dict[str, int] = {}
    _key_lines(node, "", lines)
    return Layer(str(path), values, {k: f"{path} line {n}" for k, n in lines.items()})


def parse_set_option(text: str) -> Layer:
    """Turn ``--set training.max_depth=8`` into a layer; the value is parsed as YAML (8 -> int)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or "." not in key:
        raise ConfigError(f"--set {text!r}: expected SECTION.KEY=VALUE, e.g. --set training.max_depth=8")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    nested: dict[str, Any] = {}
    cursor = nested
    parts = key.split(".")
    for part in parts[:-1]:
        cursor = cursor.setdefault(part, {})
    cursor[parts[-1]] = value
    return Layer(f"--set {key}", nested)


def flag_layer(flag: str, key: str, value: Any) -> Layer:
    """A layer for a dedicated CLI flag such as ``--input`` (key ``input.path``)."""
    section, name = key.split(".", 1)
    return Layer(flag, {section: {name: value}})


# ---------------------------------------------------------------------------------------------- merge

def _merge(layers: list[Layer]) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Merge layers in order, checking section and key names. Mapping-typed fields merge by key, except
    those marked ``merge=False`` (a later layer's mapping replaces the earlier one whole)."""
    merged: dict[str, dict[str, Any]] = {}
    sources: dict[str, str] = {}
    for layer in layers:
        for section, body in layer.values.items():
            if section not in SECTIONS:
                raise ConfigError(f"{layer.source(str(section))}: unknown section {section!r}"
                                  f"{_suggest(str(section), SECTIONS)}; known sections: {', '.join(SECTIONS)}")
            if body is None:
                continue
            if not isinstance(body, dict):
                raise ConfigError(f"{layer.source(section)}: section {section!r} must be a mapping of keys, "
                                  f"got {_show(body)}")
            fields = {f.name: f for f in dataclasses.fields(_section_type(section))}
            for key, value in body.items():
                dotted = f"{section}.{key}"
                if key not in fields:
                    raise ConfigError(f"{layer.source(dotted)}: unknown key {dotted!r}{_suggest(str(key), fields)}; "
                                      f"known keys in {section}: {', '.join(fields)}")
                target = merged.setdefault(section, {})
                if _is_mapping_type(_field_types(section)[key]) and isinstance(value, dict) \
                        and isinstance(target.get(key), dict) and fields[key].metadata.get("merge", True):
                    target[key] = {**target[key], **value}
                else:
                    target[key] = value
                sources[dotted] = layer.source(dotted)
    return merged, sources


def _suggest(word: str, options: Any) -> str:
    close = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _show(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


# ---------------------------------------------------------------------------------------------- types

def _section_type(section: str) -> type:
    return typing.get_type_hints(Config)[section]


def _field_types(section: str) -> dict[str, Any]:
    return typing.get_type_hints(_section_type(section))


def _is_mapping_type(tp: Any) -> bool:
    return typing.get_origin(tp) in (collections.abc.Mapping, dict)


def _coerce(value: Any, tp: Any, where: str, key: str) -> Any:
    """Check ``value`` against annotation ``tp`` and convert lists to tuples; raise naming key and source."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Union and type(None) in args:
        if value is None:
            return None
        inner = [a for a in args if a is not type(None)][0]
        return _coerce(value, inner, where, key)
    if origin is typing.Union and set(args) == {int, float}:  # a row count (int) or a fraction (float)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: {key}: expected a row count or a fraction, got {_show(value)}")
    if origin is typing.Union and set(args) == {int, str}:  # a count or the word auto
        if (isinstance(value, int) and not isinstance(value, bool)) or value == "auto":
            return value
        raise ConfigError(f"{where}: {key}: expected a number or auto, got {_show(value)}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: {key}: expected true or false, got {_show(value)}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: {key}: expected an integer, got {_show(value)}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{where}: {key}: expected a number, got {_show(value)}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: {key}: expected a string, got {_show(value)}")
    if origin is tuple:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: {key}: expected a list, got {_show(value)}")
        for item in value:
            if not isinstance(item, str):
                raise ConfigError(f"{where}: {key}: expected a list of strings, got item {_show(item)}")
        return tuple(value)
    if _is_mapping_type(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: {key}: expected a mapping, got {_show(value)}")
        return {str(k): v for k, v in value.items()}
    raise TypeError(f"unsupported annotation {tp!r} for {key}")  # a bug in schema.py, not user input


def _check_range(value: Any, meta: Mapping[str, Any], where: str, key: str) -> None:
    if value is None:
        return
    if "choices" in meta and value not in meta["choices"]:
        raise ConfigError(f"{where}: {key}: {value!r} is not one of {', '.join(map(str, meta['choices']))}"
                          f"{_suggest(str(value), meta['choices'])}")
    bounds = [("min", lambda v, b: v >= b, ">="), ("max", lambda v, b: v <= b, "<="),
              ("gt", lambda v, b: v > b, ">"), ("lt", lambda v, b: v < b, "<")]
    for name, ok, sign in bounds:
        if name in meta and not isinstance(value, str) and not ok(value, meta[name]):
            raise ConfigError(f"{where}: {key}: must be {sign} {meta[name]}, got {value!r}")


# ---------------------------------------------------------------------------------------------- build

def build_config(layers: list[Layer]) -> Config:
    """Merge ``layers`` over the defaults, validate every value and cross-field rule, return a Config."""
    merged, sources = _merge(layers)
    sections: dict[str, Any] = {}
    for section in SECTIONS:
        cls = _section_type(section)
        types = _field_types(section)
        kwargs = {}
        for f in dataclasses.fields(cls):
            dotted = f"{section}.{f.name}"
            if f.name not in merged.get(section, {}):
                continue
            where = sources[dotted]
            value = _coerce(merged[section][f.name], types[f.name], where, dotted)
            _check_range(value, f.metadata, where, dotted)
            kwargs[f.name] = value
        sections[section] = cls(**kwargs)
    config = Config(**sections, sources=sources)
    _check_cross_fields(config)
    return config


def _check_sampling(cfg: Config) -> None:
    """Sizes (row counts or fractions), out-of-time window, strata settings."""
    s = cfg.sampling
    sizes = {"train": s.train, "validation": s.validation, "test": s.test}
    for name, size in sizes.items():
        if isinstance(size, float) and size > 1.0:
            raise ConfigError(f"{cfg.source_of('sampling.' + name)}: sampling.{name}: a fraction must be <= 1.0, "
                              f"got {size:g} (write a row count without a decimal point)")
    fractions = sum(v for v in sizes.values() if isinstance(v, float))
    if fractions > 1.0 + 1e-9:
        raise ConfigError(f"{cfg.source_of('sampling.train')}: the fractions in sampling.train/validation/test "
                          f"sum to {fractions:g}, more than 1")
    if s.out_of_time is not None:
        if not cfg.input.time:
            raise ConfigError(f"{cfg.source_of('sampling.out_of_time')}: sampling.out_of_time needs a time column: "
                              "set input.time")
        try:
            parse_duration(s.out_of_time)
        except ValueError as exc:
            raise ConfigError(f"{cfg.source_of('sampling.out_of_time')}: sampling.out_of_time: {exc}") from None
    for name in ("train",) if s.out_of_time else ("train", "test"):
        if not sizes[name]:
            raise ConfigError(f"{cfg.source_of('sampling.' + name)}: sampling.{name} must be positive (sampling."
                              "train and sampling.test are required sets)")
    for name, per_stratum in s.strata_sizes.items():
        where = cfg.source_of("sampling.strata_sizes")
        if not s.stratify_by:
            raise ConfigError(f"{where}: sampling.strata_sizes needs sampling.stratify_by (e.g. label)")
        if name not in SPLIT_NAMES or not isinstance(per_stratum, dict):
            raise ConfigError(f"{where}: sampling.strata_sizes: expected {{SET: {{STRATUM: rows}}}} with SET one of "
                              f"{', '.join(SPLIT_NAMES)}, got {name!r}: {per_stratum!r}")
        for value, rows in per_stratum.items():
            if not isinstance(rows, int) or isinstance(rows, bool) or rows < 0:
                raise ConfigError(f"{where}: sampling.strata_sizes[{name!r}][{value!r}] must be a row count >= 0, "
                                  f"got {rows!r}")
    if s.strata_rates and not s.stratify_by:
        raise ConfigError(f"{cfg.source_of('sampling.strata_rates')}: sampling.strata_rates needs "
                          "sampling.stratify_by (e.g. label)")
    for value, rate in s.strata_rates.items():
        if not isinstance(rate, (int, float)) or isinstance(rate, bool) or not 0 < rate <= 1:
            raise ConfigError(f"{cfg.source_of('sampling.strata_rates')}: sampling.strata_rates[{value!r}] must "
                              f"be a rate in (0, 1], got {rate!r}")


_MEMORY = re.compile(r"(\d+)([kmgt]?)b?", re.IGNORECASE)
MIN_DRIVER_MEMORY_MB = 512   # Spark refuses a heap under 450 MiB of usable memory (INVALID_DRIVER_MEMORY)


def memory_mb(text: str) -> Optional[float]:
    """MiB in a JVM memory size such as ``512m``, ``4g`` or ``4gb`` (no unit: bytes); None if not one."""
    match = _MEMORY.fullmatch(str(text).strip())
    if not match:
        return None
    scale = {"": 1 / 2**20, "k": 1 / 1024, "m": 1, "g": 1024, "t": 1024**2}[match.group(2).lower()]
    return int(match.group(1)) * scale


def _check_spark(cfg: Config) -> None:
    where = cfg.source_of("spark.driver_memory")
    mb = memory_mb(cfg.spark.driver_memory)
    if mb is None:
        raise ConfigError(f"{where}: spark.driver_memory: {cfg.spark.driver_memory!r} is not a JVM memory size; "
                          "write it like 4g or 512m")
    if mb < MIN_DRIVER_MEMORY_MB:
        raise ConfigError(f"{where}: spark.driver_memory: {cfg.spark.driver_memory!r} is below the "
                          f"{MIN_DRIVER_MEMORY_MB}m Spark needs to start a driver (it refuses a heap that leaves under about "
                          "450 MiB usable); give at least 512m (4g is the default)")


def _check_cross_fields(cfg: Config) -> None:
    s = cfg.sampling
    _check_sampling(cfg)
    _check_spark(cfg)
    for split in cfg.evaluation.splits:
        if split not in SPLIT_NAMES:
            raise ConfigError(f"{cfg.source_of('evaluation.splits')}: evaluation.splits: unknown split {split!r}; "
                              f"choose from {', '.join(SPLIT_NAMES)}")
    for name in cfg.evaluation.baselines:
        if name not in BASELINES:
            raise ConfigError(f"{cfg.source_of('evaluation.baselines')}: evaluation.baselines: {name!r} is not one "
                              f"of {', '.join(BASELINES)}{_suggest(name, BASELINES)}")
    seg = cfg.evaluation.segment_by
    declared = (*sum(resolved_columns(cfg), ()), *([cfg.input.time] if cfg.input.time else []))
    if seg is not None and seg not in declared:
        raise ConfigError(f"{cfg.source_of('evaluation.segment_by')}: evaluation.segment_by: {seg!r} is not a "
                          "declared input column (input.numeric / input.categorical / input.time)")
    if "gbdt_lr" in cfg.evaluation.baselines and not s.validation:
        raise ConfigError(f"{cfg.source_of('evaluation.baselines')}: evaluation.baselines: gbdt_lr fits its "
                          "logistic regression on the validation split (rows the trees did not see), but "
                          "sampling.validation is 0")
    if cfg.training.model == "gbdt_lr" and "gbdt_lr" in cfg.evaluation.baselines:
        raise ConfigError(f"{cfg.source_of('evaluation.baselines')}: evaluation.baselines: gbdt_lr is the model "
                          "this run ships (training.model: gbdt_lr), so it cannot also be its baseline; remove "
                          "it from evaluation.baselines (the evaluation compares the shipped model with its own "
                          "trees alone)")
    if "validation" in cfg.evaluation.splits and not s.validation:
        raise ConfigError(f"{cfg.source_of('evaluation.splits')}: evaluation.splits names 'validation' but "
                          "sampling.validation is 0")
    from training.search import check_space

    check_space(cfg.training.search_space, cfg.training.search_method, cfg.source_of("training.search_space"))
    if cfg.training.min_relative_gain is not None and not s.validation:
        raise ConfigError(f"{cfg.source_of('training.min_relative_gain')}: training.min_relative_gain needs a "
                          "validation split; set sampling.validation > 0")
    if cfg.training.early_stopping_rounds is not None and not s.validation \
            and cfg.source_of("training.early_stopping_rounds") != "default":   # the default is off then
        raise ConfigError(f"{cfg.source_of('training.early_stopping_rounds')}: training.early_stopping_rounds "
                          "needs a validation split; set sampling.validation > 0")
    _check_input_columns(cfg)
    _check_features(cfg)
    named = {"n_estimators", "max_depth", "learning_rate", "tree_method", "device", "num_workers",
             "early_stopping_rounds", "eta", "num_round", "num_boost_round"}
    clash = sorted(named & set(cfg.training.params))
    if clash:
        raise ConfigError(f"{cfg.source_of('training.params')}: training.params: {', '.join(clash)} have their "
                          "own keys in the training section (eta is learning_rate, num_round is n_estimators); "
                          "set them there")
    reserved = sorted({"callbacks", "xgb_model", "features_col", "label_col", "weight_col",
                       "validation_indicator_col"} & set(cfg.training.params))
    if reserved:
        raise ConfigError(f"{cfg.source_of('training.params')}: training.params: {', '.join(reserved)} are set by "
                          "the pipeline (checkpoints, resume, feature columns); remove them")


def parse_duration(text: str) -> int:
    """Seconds in a duration such as '90m', '24h' or '2d' (units s, m, h, d)."""
    match = re.fullmatch(r"\s*(\d+)\s*([smhd])\s*", text or "")
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"{text!r} is not a duration like 6h or 2d (a positive number and one of s, m, h, d)")
    return int(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]


def _check_features(cfg: Config) -> None:
    """Every column the features section names exists in the input with the right kind."""
    f = cfg.features
    numeric, categorical = resolved_columns(cfg)
    where = cfg.source_of

    def need(key: str, name: str, kinds: tuple[str, ...]) -> None:
        pools = {"numeric": numeric, "categorical": categorical}
        if any(name in pools[k] for k in kinds):
            return
        other = [k for k in pools if name in pools[k]]
        what = f"is a {other[0]} column" if other else "is not a declared input column"
        raise ConfigError(f"{where('features.' + key)}: features.{key}: {name!r} {what}; it must be one of the "
                          f"{' or '.join(kinds)} columns (input.{'/input.'.join(kinds)})")

    for name, choice in f.columns.items():
        kind = "numeric" if name in numeric else "categorical" if name in categorical else None
        if kind is None:
            need("columns", name, ("numeric", "categorical"))
        allowed = NUMERIC_TRANSFORMS if kind == "numeric" else CATEGORICAL_ENCODINGS
        if choice not in allowed:
            raise ConfigError(f"{where('features.columns')}: features.columns[{name!r}]: {choice!r} is not one of "
                              f"{', '.join(allowed)} (for a {kind} column){_suggest(str(choice), allowed)}")
    for key in ("counts", "target_encoding"):
        for name in getattr(f, key):
            need(key, name, ("categorical",))
    for cross in f.crosses:
        parts = [p.strip() for p in cross.split("*")]
        if len(parts) < 2 or len(set(parts)) != len(parts) or not all(parts):
            raise ConfigError(f"{where('features.crosses')}: features.crosses: {cross!r} must name two or more "
                              "different categorical columns joined by '*', e.g. site_id*device_model")
        for name in parts:
            need("crosses", name, ("categorical",))
    for name in f.time_features:
        if name not in TIME_FEATURES:
            raise ConfigError(f"{where('features.time_features')}: features.time_features: {name!r} is not one "
                              f"of {', '.join(TIME_FEATURES)}{_suggest(name, TIME_FEATURES)}")
    if f.weight is not None:
        need("weight", f.weight, ("numeric",))


def _check_input_columns(cfg: Config) -> None:
    inp = cfg.input
    if inp.format == "criteo_dac":
        for key, allowed in (("numeric", DAC_NUMERIC), ("categorical", DAC_CATEGORICAL)):
            unknown = [c for c in getattr(inp, key) if c not in allowed]
            if unknown:
                raise ConfigError(f"{cfg.source_of('input.' + key)}: input.{key}: {', '.join(unknown)} not in the "
                                  f"criteo_dac layout ({allowed[0]}-{allowed[-1]})")
        return
    if inp.format in ("csv", "parquet") and not (inp.numeric or inp.categorical):
        raise ConfigError(f"{cfg.source_of('input.format')}: input.format {inp.format!r} needs input.numeric "
                          "and/or input.categorical to declare the feature columns")
    declared = [inp.label, *inp.numeric, *inp.categorical, *([inp.time] if inp.time else []), *inp.drop]
    seen: set[str] = set()
    for name in declared:
        if name in seen:
            raise ConfigError(f"{cfg.source_of('input.format')}: input column {name!r} is declared twice "
                              "(label, numeric, categorical, time and drop must not overlap)")
        seen.add(name)
    if inp.delimiter is not None and len(inp.delimiter) != 1:
        raise ConfigError(f"{cfg.source_of('input.delimiter')}: input.delimiter must be one character, "
                          f"got {inp.delimiter!r}")


def resolved_columns(cfg: Config) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(numeric, categorical) column names in use, with the criteo_dac defaults filled in."""
    inp = cfg.input
    if inp.format == "criteo_dac":
        return inp.numeric or DAC_NUMERIC, inp.categorical or DAC_CATEGORICAL
    return inp.numeric, inp.categorical


# ---------------------------------------------------------------------------------------------- output

def to_dict(cfg: Config) -> dict[str, dict[str, Any]]:
    """Plain JSON-able dict of every section (tuples become lists), secrets redacted: this is what the
    manifest records, ``config`` shows and the stage hashes cover."""
    out = {}
    for section in SECTIONS:
        body = dataclasses.asdict(getattr(cfg, section))
        out[section] = redacted(json.loads(json.dumps(body)))
    return out


def section_hash(cfg: Config, *sections: str) -> str:
    """A short stable hash of the named sections, to notice when a finished stage's settings changed."""
    data = {s: to_dict(cfg)[s] for s in sections}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def describe(cfg: Config) -> str:
    """The effective configuration as YAML-like text with each value's source as a comment."""
    lines = []
    for section, body in to_dict(cfg).items():
        lines.append(f"{section}:")
        for key, value in body.items():
            lines.append(f"  {key}: {json.dumps(value)}  # {cfg.source_of(section + '.' + key)}")
    return "\n".join(lines)


def schema_markdown() -> str:
    """Markdown reference of every section and key with type, default, allowed values and doc."""
    out = ["# Configuration reference", "",
           "Generated from `ctr_pipeline/schema.py` (`ctr-pipeline config --schema`). Values come from "
           "defaults < the run's recorded config < `--config FILE` < CLI flags (`--input`, `--master`, "
           "`--set SECTION.KEY=VALUE`).", ""]
    for section in SECTIONS:
        sec_field = next(f for f in dataclasses.fields(Config) if f.name == section)
        out += [f"## `{section}`", "", sec_field.metadata["doc"], "", "| key | type | default | doc |",
                "|---|---|---|---|"]
        types = _field_types(section)
        for f in dataclasses.fields(_section_type(section)):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            signs = {"min": ">=", "max": "<=", "gt": ">", "lt": "<"}
            checks = ", ".join(f"{signs[k]} {v}" for k, v in f.metadata.items() if k in signs)
            doc = f.metadata["doc"] + (f" ({checks})" if checks else "")
            out.append(f"| `{f.name}` | {_type_name(types[f.name])} | `{json.dumps(default)}` | {doc} |")
        out.append("")
    return "\n".join(out)


def _type_name(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Union and set(args) == {int, float}:
        return "row count or fraction"
    if origin is typing.Union and set(args) == {int, str}:
        return "integer or auto"
    if origin is typing.Union:
        return " or ".join(_type_name(a) for a in args if a is not type(None)) + " or null"
    if origin is tuple:
        return "list of strings"
    if _is_mapping_type(tp):
        return "mapping"
    return {int: "integer", float: "number", str: "string", bool: "boolean"}.get(tp, str(tp))


def load_config(config_file: Optional[str] = None, base: Optional[Layer] = None,
                overrides: Optional[list[Layer]] = None) -> Config:
    """Convenience: defaults < ``base`` (e.g. a run manifest) < ``config_file`` < ``overrides``."""
    layers = [base] if base else []
    if config_file:
        layers.append(load_file_layer(config_file))
    layers += overrides or []
    return build_config(layers)

