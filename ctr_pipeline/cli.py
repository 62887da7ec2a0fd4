"""``ctr-pipeline``: one command, a subcommand per stage, ``run`` for all of them.

A user mistake (bad flag, bad config, bad input) prints one line ``ctr-pipeline: error: ...`` and
exits with code 2; the configuration is fully validated before any Spark work starts.
"""
from __future__ import annotations

import argparse
import dataclasses
import glob
import logging
import os
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

from . import __version__
from .aws import AwsSettings, spark_s3_conf
from .config import Layer, build_config, describe, flag_layer, load_file_layer, parse_set_option, schema_markdown
from .errors import RunFailed, UserError
from .redact import RedactSecrets, redact_text, without_redacted
from .runs import STAGES, RunDir
from .schema import SPLIT_NAMES, Config
from .storage import Location, is_remote

STAGE_HELP = {"sample": "read and validate the input, draw train/validation/test sets -> RUN/splits",
              "features": "fit the feature transform on train, write sparse vectors -> RUN/features",
              "train": "train distributed XGBoost on the train features -> RUN/model",
              "evaluate": "score held-out splits, AUC and MXE -> RUN/evaluation",
              "run": "all four stages in order (finished ones are skipped)"}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit code 2 (via UserError), no usage dump
        raise UserError(f"{message} (see '{self.prog} --help')")


def add_verbs(sub: Any, name: str, help: str, description: str,
              verbs: dict[str, str]) -> list[tuple[str, argparse.ArgumentParser]]:
    """A command group (``emr``, ``models``) on the main parser's subparsers: (verb, parser) per verb."""
    group = sub.add_parser(name, help=help, description=description)
    parsers = group.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
    parsers.required = True
    return [(verb, parsers.add_parser(verb, help=text, description=text)) for verb, text in verbs.items()]


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="YAML config file (see configs/ and docs/config.md)")
    p.add_argument("--set", metavar="SECTION.KEY=VALUE", action="append", default=[],
                   help="override one config value, e.g. --set training.max_depth=8 (repeatable)")
    p.add_argument("--input", metavar="PATH", help="input file, directory or glob (overrides input.path)")
    p.add_argument("--master", metavar="URL", help="Spark master: local[N], spark://HOST:PORT or yarn")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ctr-pipeline", description="Gradient-boosted trees for CTR prediction on Spark.")
    parser.add_argument("--version", action="version", version=f"ctr-pipeline {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and the final summary")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in (*STAGES, "run"):
        p = sub.add_parser(name, help=STAGE_HELP[name], description=STAGE_HELP[name])
        _add_config_flags(p)
        p.add_argument("--out", metavar="RUN_DIR", required=True, help="the run directory (created if needed)")
        p.add_argument("--force", action="store_true", help="redo stages even when already complete")
        if name in ("train", "run"):
            p.add_argument("--resume", action="store_true",
                           help="continue an interrupted training from its newest checkpoint")
        if name in ("sample", "run"):
            p.add_argument("--sizes", metavar="SET=SIZE,...",
                           help="set sizes, row counts or fractions: train=100000,validation=20000,test=0.1")
            p.add_argument("--seed", type=int, help="sampling seed (sampling.seed)")
            p.add_argument("--delta", type=float, help="ScalableSRS failure probability (sampling.delta)")
            p.add_argument("--stratify-by", metavar="COLUMN", help="stratify sets by this column (e.g. label)")
            p.add_argument("--engine", choices=("auto", "driver", "spark", "mrjob"),
                           help="sampler implementation (sampling.engine)")
        p.set_defaults(handler=cmd_stages, stages=STAGES if name == "run" else (name,))
    p = sub.add_parser("demo-data", help="write seeded demo data in the Criteo DAC layout")
    p.add_argument("--rows", type=int, default=100_000, help="number of rows (default 100000)")
    p.add_argument("--out", required=True, metavar="PATH", help="output file; .gz compresses")
    p.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    p.add_argument("--day", type=int, default=0, help="a later day's window: other rows (default 0)")
    p.add_argument("--drift", type=float, default=0.0,
                   help="how far the click model moves per day (e.g. 0.3; default 0: no drift)")
    p.set_defaults(handler=cmd_demo_data)
    p = sub.add_parser("compare", help="side-by-side metrics of finished runs")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories with a finished evaluate stage")
    p.add_argument("--out", metavar="FILE", default="comparison.md",
                   help="Markdown table to write (default comparison.md); a .json file is written beside it")
    p.set_defaults(handler=cmd_compare)
    p = sub.add_parser("score", help="score raw logs with a trained model -> OUT/predictions, OUT/report.json",
                       description="Score raw logs (in the model's input layout) with a trained model.")
    _add_config_flags(p)
    p.add_argument("--model", required=True, metavar="MODEL",
                   help="a run directory, or a registry version: REGISTRY@champion, REGISTRY@v3")
    p.add_argument("--out", required=True, metavar="PATH", help="output directory (local path or s3://)")
    p.add_argument("--force", action="store_true", help="replace an earlier scoring output at --out")
    p.add_argument("--unlabeled", action="store_true",
                   help="the logs have no label column (criteo_dac: the 39 fields I1-I13, C1-C26)")
    p.set_defaults(handler=cmd_score)
    p = sub.add_parser("config", help="print the effective configuration with each value's source")
    _add_config_flags(p)
    p.add_argument("--out", metavar="RUN_DIR", help="include the config recorded in this run")
    p.add_argument("--schema", action="store_true", help="print the documented schema (Markdown)")
    p.set_defaults(handler=cmd_config)
    from emr_configs.cli import add_parser as add_emr_parser

    from .refresh.cli import add_parser as add_refresh_parser
    from .registry.cli import add_parser as add_models_parser

    from zeppelin.cli import add_parser as add_notes_parser

    add_emr_parser(sub)
    add_models_parser(sub)
    add_refresh_parser(sub)
    add_notes_parser(sub)
    return parser


# ---------------------------------------------------------------------------------------------- config

def flag_layers(args: argparse.Namespace) -> list[Layer]:
    """--config < --set < --input/--master < the sampling flags, as layers."""
    layers = []
    if args.config:
        layers.append(load_file_layer(args.config))
    layers += [parse_set_option(s) for s in args.set]
    if args.input:
        layers.append(flag_layer("--input", "input.path", args.input))
    if args.master:
        layers.append(flag_layer("--master", "spark.master", args.master))
    return layers + _sampling_flag_layers(args)


def config_from_args(args: argparse.Namespace, run: Optional[RunDir] = None,
                     layers: Optional[list[Layer]] = None) -> Config:
    """defaults < the run's recorded config < --config < --set < --input/--master (``layers``: those
    flags' layers when already read).

    A relative local input path (from any layer) is made absolute against the current directory.
    """
    layers = list(flag_layers(args) if layers is None else layers)
    recorded = run.manifest().get("config") if run is not None else None
    if recorded:
        layers.insert(0, Layer(str(run.manifest_path), without_redacted(recorded)))
    cfg = build_config(layers)
    path = cfg.input.path
    if path and "://" not in path and not os.path.isabs(path):  # keep the run valid from any directory
        cfg = dataclasses.replace(cfg, input=dataclasses.replace(cfg.input, path=os.path.abspath(path)))
    return cfg


def open_run(args: argparse.Namespace) -> tuple[RunDir, Config]:
    """The run directory named by ``--out`` (local or S3) and the configuration. The AWS settings that
    reach the run directory come from the flags and the config file, not from the run's own record."""
    layers = flag_layers(args)
    run = RunDir.at(args.out, aws_settings(layers))
    return run, config_from_args(args, run, layers)


def aws_settings(layers: Sequence[Layer]) -> AwsSettings:
    """``aws.region`` / ``aws.endpoint_url`` as the given layers set them (the last wins), else the
    environment's; read before the full configuration, which may come partly from an S3 run."""
    found: dict[str, Any] = {}
    for layer in layers:
        section = layer.values.get("aws")
        if isinstance(section, dict):
            found.update({k: v for k, v in section.items() if k in ("region", "endpoint_url") and v})
    return AwsSettings.from_env(found.get("region"), found.get("endpoint_url"))


def _sampling_flag_layers(args: argparse.Namespace) -> list[Layer]:
    layers = []
    for flag, key, value in (("--seed", "sampling.seed", getattr(args, "seed", None)),
                             ("--delta", "sampling.delta", getattr(args, "delta", None)),
                             ("--stratify-by", "sampling.stratify_by", getattr(args, "stratify_by", None)),
                             ("--engine", "sampling.engine", getattr(args, "engine", None))):
        if value is not None:
            layers.append(flag_layer(flag, key, value))
    sizes = getattr(args, "sizes", None)
    if sizes:
        for part in sizes.split(","):
            name, sep, raw = part.partition("=")
            name = name.strip()
            if not sep or name not in SPLIT_NAMES:
                raise UserError(f"--sizes {sizes!r}: expected SET=SIZE items with SET one of "
                                f"{', '.join(SPLIT_NAMES)}, e.g. train=100000,validation=0.1,test=0.1")
            value = _size_value(raw.strip(), sizes)
            layers.append(flag_layer("--sizes", f"sampling.{name}", value))
    return layers


def _size_value(raw: str, flag: str) -> int | float:
    """'100000' is a row count, '0.1' or '1.0' a fraction."""
    try:
        return int(raw) if raw.isdigit() else float(raw)
    except ValueError:
        raise UserError(f"--sizes {flag!r}: {raw!r} is neither a row count nor a fraction") from None


def _check_input(cfg: Config) -> None:
    """A missing input is one line before Spark starts: a local path or glob, or an S3 object or prefix."""
    path = cfg.input.path
    if not path:
        raise UserError("no input: pass --input PATH or set input.path in the config file")
    if not is_remote(path):
        found = bool(glob.glob(path))
    elif any(ch in path for ch in "*?["):
        found = True  # an S3 glob is expanded by Spark's file system, which names what it cannot find
    else:
        found = Location.of(path, AwsSettings.from_config(cfg)).exists()
    if not found:
        raise UserError(f"{cfg.source_of('input.path')}: input {path!r} does not exist")


# ---------------------------------------------------------------------------------------------- commands

def cmd_stages(args: argparse.Namespace) -> int:
    from .invocation import invocation_log, one_line_failures
    from .locks import Lock
    from .pipeline import run_stages
    from .runs import LOGS, RUN_LOCK
    from .javacheck import check_java
    from .spark import LazySession, check_master, stop_session, under_spark_submit

    run, cfg = open_run(args)
    check_master(cfg.spark.master, f"{cfg.source_of('spark.master')}: spark.master")
    if not under_spark_submit():   # before any stage, though a run that works in the driver starts no JVM
        check_java()
    if "sample" in args.stages and (args.force or not run.is_complete("sample")):
        _check_input(cfg)
        if cfg.sampling.engine == "mrjob" and cfg.sampling.mrjob_runner == "emr" and run.root.is_local:
            raise UserError(f"{cfg.source_of('sampling.mrjob_runner')}: sampling.mrjob_runner 'emr' reads and "
                            "writes S3: give an s3:// run directory (--out s3://bucket/prefix)")

    def start():
        from .spark import get_session

        return get_session(cfg.spark, extra_conf=spark_s3_conf(AwsSettings.from_config(cfg)))

    session = LazySession(start, cfg.spark)   # stages that work in the driver start no JVM

    with invocation_log(run.root / LOGS) as log_path, one_line_failures(log_path):
        with Lock(run.root / RUN_LOCK, " ".join(args.stages), what=f"run directory {run.root}"):
            try:
                records = run_stages(args.stages, cfg, run, session, force=args.force,
                                     options={"resume": getattr(args, "resume", False)})
            finally:
                if session.started is not None:
                    stop_session(session.started)
    print_summary(run, records, log_path)
    return 0


def print_summary(run: RunDir, records: dict[str, dict], log_path: str) -> None:
    print(f"\nctr-pipeline: run {run.root}")
    print(f"  {'stage':<10}{'seconds':>9}{'rows/s':>10}  rows")
    for stage, rec in records.items():
        counts = rec.get("rows", {})
        ordered = [k for k in SPLIT_NAMES if k in counts] + [k for k in counts if k not in SPLIT_NAMES]
        rows = ", ".join(f"{k} {counts[k]:,}" for k in ordered)
        seconds = rec.get("seconds", 0)
        rate = f"{sum(counts.values()) / seconds:,.0f}" if seconds and counts else "-"
        print(f"  {stage:<10}{seconds:>9.1f}{rate:>10}  {rows}")
    for rec in records.values():
        for line in rec.get("summary", []):
            print(f"  {line}")
    print(f"  manifest: {run.manifest_path}")
    print(f"  log: {log_path}")


def cmd_score(args: argparse.Namespace) -> int:
    from .invocation import invocation_log, one_line_failures
    from .locks import Lock
    from .runs import LOGS

    if not args.input:
        raise UserError("score needs --input PATH: the raw logs to score")
    layers = flag_layers(args)
    aws = aws_settings(layers)
    out = Location.of(args.out, aws)
    # a log per invocation in OUT/logs (kept when OUT is replaced), and one scorer at a time per OUT
    with invocation_log(out / LOGS) as log_path, one_line_failures(log_path):
        with Lock(out.parent / f".{out.name}.lock", "score", what=f"scoring output {out}"):
            lines = _score(args, layers, aws, out)
    print("\nctr-pipeline: " + "\n  ".join([*lines, f"log: {log_path}"]))
    return 0


def _score(args: argparse.Namespace, layers: list[Layer], aws: AwsSettings, out: Location) -> list[str]:
    from evaluation.scoring import prepare_output, publish, score, summary_lines

    from .progress import watch
    from .registry.bundle import resolve
    from .spark import check_master, get_session, stop_session

    bundle = resolve(args.model, aws)
    cfg = config_from_args(args, layers=[Layer(f"{bundle.label} (the model's configuration)", bundle.config),
                                         *layers])
    check_master(cfg.spark.master, f"{cfg.source_of('spark.master')}: spark.master")
    _check_input(cfg)
    staging = prepare_output(out, args.force)
    spark = get_session(cfg.spark, extra_conf=spark_s3_conf(AwsSettings.from_config(cfg)))
    try:
        with watch(spark, "score", cfg.spark.progress_seconds):
            doc = score(spark, bundle, cfg, staging, labeled=not args.unlabeled)
        publish(staging, out)
    except BaseException:
        if staging != out:
            staging.rmtree()
        raise
    finally:
        stop_session(spark)
    return summary_lines(doc, out)


def cmd_demo_data(args: argparse.Namespace) -> int:
    from .demo_data import generate

    if args.rows < 1:
        raise UserError(f"--rows must be at least 1, got {args.rows}")
    if args.day < 0:
        raise UserError(f"--day must be 0 or more, got {args.day}")
    log = logging.getLogger("ctr_pipeline.demo")
    info = generate(args.rows, args.out, seed=args.seed, day=args.day, drift=args.drift,
                    progress=lambda done, total: log.info("demo-data: %s / %s rows", f"{done:,}", f"{total:,}"))
    print(f"ctr-pipeline: wrote {info['rows']:,} rows ({info['positive_rate']:.2%} positives) to {info['path']}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from evaluation.compare import comparison_table, format_table, markdown

    table = comparison_table(args.runs)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(markdown(table), encoding="utf-8")
    out.with_suffix(".json").write_text(table.to_json(orient="records", indent=1) + "\n", encoding="utf-8")
    print(format_table(table))
    print(f"ctr-pipeline: wrote {out} and {out.with_suffix('.json')}")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    if args.schema:
        print(schema_markdown())
        return 0
    print(describe(open_run(args)[1] if args.out else config_from_args(args)))
    return 0


# ---------------------------------------------------------------------------------------------- main

def _setup_logging(quiet: bool) -> None:
    logger = logging.getLogger("ctr_pipeline")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        handler.addFilter(RedactSecrets())
        logger.addHandler(handler)
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    logger.propagate = False
    # xgboost.spark logs its parameters and each worker's start at INFO (its workers take the driver's
    # level); the training stage prints its own progress lines instead.
    logging.getLogger("XGBoost-PySpark").setLevel(logging.WARNING)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the console script and of ``spark-submit ctr_pipeline/spark_submit.py``."""
    try:
        args = build_parser().parse_args(argv)
        _setup_logging(args.quiet)
        return args.handler(args)
    except UserError as exc:
        print(f"ctr-pipeline: error: {redact_text(str(exc))}", file=sys.stderr)
        return 2
    except RunFailed as exc:
        print(f"ctr-pipeline: failed: {redact_text(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("ctr-pipeline: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:   # outside a run directory's invocation log: the trace goes to a file of its own
        from .failures import explain
        from .invocation import trace_file
        from .scratch import jvm_errors

        print(f"ctr-pipeline: failed: {redact_text(explain(exc, jvm_errors()))} (full trace: {trace_file(exc)})",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
