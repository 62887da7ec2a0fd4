"""Reading a cluster definition's YAML into plain, typed values (pure: no AWS call).

:func:`read` takes the YAML path and optional overrides and returns the keyword arguments of
:class:`emr_configs.definition.ClusterDefinition` (the two nodes as mappings of :class:`Node` fields),
with ``where``: for every dotted key, ``"FILE line N"`` (or ``"FILE (override of KEY)"``) for messages.
Unknown keys get a did-you-mean; a wrong shape (a string where a list is needed, ...) names the file,
line and key. Value rules (EMR 7.x, sizes that fit, ...) live in :mod:`emr_configs.validate`.
"""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Mapping, Optional

from ctr_pipeline.config import load_file_layer
from ctr_pipeline.errors import ConfigError

# key -> allowed sub-keys (None: a leaf or a free mapping)
SCHEMA: dict[str, Optional[frozenset]] = {
    "name": None, "release_label": None, "region": None, "log_uri": None, "artifacts_uri": None,
    "data": frozenset({"input_prefixes", "run_prefixes"}),
    "roles": frozenset({"service_role", "instance_profile"}),
    "python": None, "idle_timeout_seconds": None, "subnet_id": None, "key_name": None, "tags": None,
    "applications": None, "instances": frozenset({"groups", "fleets"}),
    "spark": frozenset({"executor_cores", "conf"}),
}
GROUP_KEYS = frozenset({"type", "count", "market", "bid_price"})
FLEET_KEYS = frozenset({"types", "on_demand", "spot", "spot_timeout_minutes"})
REQUIRED = ("name", "release_label", "region", "log_uri", "artifacts_uri", "roles", "instances")
DEFAULTS: dict[str, Any] = {"python": "/usr/bin/python3.11", "idle_timeout_seconds": 3600,
                            "applications": ["Spark"], "tags": {}, "spark": {"executor_cores": 4, "conf": {}}}


class _Reader:
    """Messages that name ``FILE line N: key``; ``where`` maps dotted keys to ``FILE line N``."""

    def __init__(self, path: str, where: dict[str, str]):
        self.path, self.where = path, where

    def fail(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self.where.get(key, self.path)}: {key}: {message}")

    def unknown(self, key: str, known) -> ConfigError:
        last = key.rsplit(".", 1)[-1]
        close = difflib.get_close_matches(last, sorted(known), n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(sorted(known))}"
        return self.fail(key, f"unknown key {key!r}; {hint}")

    def mapping(self, value: Any, key: str, known=None) -> Mapping:
        if not isinstance(value, Mapping):
            what = f"of {', '.join(sorted(known))}" if known else "(key: value lines)"
            raise self.fail(key, f"must be a mapping {what}, got {value!r}")
        for inner in value if known is not None else ():
            if inner not in known:
                raise self.unknown(f"{key}.{inner}", known)
        return value

    def strings(self, value: Any, key: str, example: str) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.fail(key, f"must be a list of strings, e.g. [{example}], got {value!r}")
        return tuple(value)

    def whole(self, value: Any, key: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"must be a whole number, got {value!r}")
        return value


def _merge(base: Mapping, extra: Mapping) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, Mapping) and isinstance(out.get(key), Mapping) \
            else value
    return out


def _dotted(values: Mapping, prefix: str = "") -> list[str]:
    keys = []
    for key, value in values.items():
        keys.append(prefix + str(key))
        if isinstance(value, Mapping):
            keys += _dotted(value, f"{prefix}{key}.")
    return keys


def _node(r: _Reader, body: Any, key: str, fleets: bool) -> dict:
    """The fields of one :class:`~emr_configs.definition.Node` (master or core)."""
    body = r.mapping(body, key, FLEET_KEYS if fleets else GROUP_KEYS)
    if fleets:
        if "types" not in body:
            raise r.fail(key, "types is missing: list the instance types of the fleet, e.g. [m5.2xlarge]")
        node = {"types": r.strings(body["types"], f"{key}.types", "m5.2xlarge, m6i.2xlarge"),
                "on_demand": r.whole(body.get("on_demand", 0), f"{key}.on_demand"),
                "spot": r.whole(body.get("spot", 0), f"{key}.spot"),
                "spot_timeout_minutes": r.whole(body.get("spot_timeout_minutes", 10), f"{key}.spot_timeout_minutes")}
        if "spot_timeout_minutes" in body and not node["spot"]:
            raise r.fail(f"{key}.spot_timeout_minutes", "is set but the fleet asks for no spot capacity; "
                                                        "set spot: N or remove spot_timeout_minutes")
        return node
    if not isinstance(body.get("type"), str):
        raise r.fail(f"{key}.type", f"must name one instance type, e.g. m5.2xlarge, got {body.get('type')!r}")
    bid = body.get("bid_price")
    node = {"types": (body["type"],), "count": r.whole(body.get("count", 1), f"{key}.count"),
            "market": str(body.get("market", "ON_DEMAND")), "bid_price": None if bid is None else str(bid)}
    if bid is not None and node["market"] != "SPOT":
        raise r.fail(f"{key}.bid_price", f"only applies to market: SPOT (market is {node['market']}); "
                                         "set market: SPOT or remove bid_price")
    return node


def read(path: "str | Path", overrides: Optional[Mapping[str, Any]] = None) -> dict:
    """The keyword arguments of ``ClusterDefinition`` from the YAML at ``path`` (overrides win)."""
    layer = load_file_layer(path)
    where = dict(layer.where)
    for key in _dotted(overrides or {}):
        where[key] = f"{path} (override of {key})"
    r = _Reader(str(path), where)
    values = _merge(_merge(DEFAULTS, layer.values), overrides or {})
    for key in values:
        if key not in SCHEMA:
            raise r.unknown(str(key), SCHEMA)
    for key in REQUIRED:
        if values.get(key) in (None, "", {}):
            raise r.fail(key, "is missing; see emr_configs/README.md for every key")
    for key, sub in SCHEMA.items():
        if sub is not None and key in values:
            r.mapping(values[key], key, sub)
    inst = values["instances"]
    if len(inst) != 1:
        raise r.fail("instances", "needs exactly one of 'groups' or 'fleets'")
    kind = "fleets" if "fleets" in inst else "groups"
    nodes = r.mapping(inst[kind], f"instances.{kind}", {"master", "core"})
    for role in ("master", "core"):
        if role not in nodes:
            raise r.fail(f"instances.{kind}.{role}", "is missing")
    data, roles, spark = values.get("data") or {}, values["roles"], values["spark"]
    for role_key in ("service_role", "instance_profile"):
        if not isinstance(roles.get(role_key), str) or not roles[role_key]:
            raise r.fail(f"roles.{role_key}", "is missing: name the IAM role (see `ctr-pipeline emr policies`)")
    return {
        "source": str(path), "name": values["name"], "region": str(values["region"]),
        "release_label": str(values["release_label"]), "log_uri": str(values["log_uri"]),
        "artifacts_uri": str(values["artifacts_uri"]),
        "input_prefixes": r.strings(data.get("input_prefixes", []), "data.input_prefixes", "s3://bucket/logs/"),
        "run_prefixes": r.strings(data.get("run_prefixes", []), "data.run_prefixes", "s3://bucket/runs/"),
        "service_role": roles["service_role"], "instance_profile": roles["instance_profile"],
        "fleets": kind == "fleets",
        "master": _node(r, nodes["master"], f"instances.{kind}.master", kind == "fleets"),
        "core": _node(r, nodes["core"], f"instances.{kind}.core", kind == "fleets"),
        "python": str(values["python"]), "idle_timeout_seconds": values["idle_timeout_seconds"],
        "subnet_id": values.get("subnet_id"), "key_name": values.get("key_name"),
        "applications": r.strings(values["applications"], "applications", "Spark"),
        "tags": dict(r.mapping(values["tags"] or {}, "tags")),
        "executor_cores": r.whole(spark.get("executor_cores", 4), "spark.executor_cores"),
        "spark_conf": {str(k): str(v) for k, v in r.mapping(spark.get("conf") or {}, "spark.conf").items()},
        "where": where,
    }
