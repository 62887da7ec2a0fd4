"""``ctr-pipeline emr up | submit | status | logs | down | policies``: the launcher's command line.

Nothing here imports boto3 until a handler runs. The run config given to ``submit`` (``--config``,
``--set``, ``--input``) is validated locally first, then uploaded beside the run and passed to every
stage's step unchanged, so local and EMR runs read the same settings.
"""
from __future__ import annotations

import argparse
import json
from typing import Any

from ctr_pipeline.errors import UserError
from ctr_pipeline.runs import STAGES

VERBS = {"up": "upload the wheel, bootstrap and entry script, create the cluster",
         "submit": "run the pipeline's stages as spark-submit steps and follow them",
         "status": "the cluster's state and its steps", "logs": "the tail of a step's stderr log",
         "down": "terminate the cluster", "policies": "the IAM policies the definition's roles need"}


def add_parser(sub: Any) -> None:
    """Register ``emr`` and its verbs on the main parser's subparsers."""
    from ctr_pipeline.cli import _add_config_flags, _Parser

    emr = sub.add_parser("emr", help="run the pipeline on AWS EMR (cluster definitions in emr_configs/)",
                         description="Run the pipeline on AWS EMR.")
    verbs = emr.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
    verbs.required = True
    for verb, text in VERBS.items():
        p = verbs.add_parser(verb, help=text, description=text)
        _add_config_flags(p)
        p.add_argument("--definition", metavar="FILE", help="cluster definition (default: emr.definition)")
        if verb in ("status", "logs", "down"):
            p.add_argument("--cluster-id", required=True, metavar="ID")
        if verb in ("up", "submit"):
            p.add_argument("--dry-run", action="store_true", help="print the exact requests; send nothing")
        if verb == "submit":
            p.add_argument("--cluster-id", metavar="ID", help="an existing cluster (or --up)")
            p.add_argument("--up", action="store_true", help="create the cluster first")
            p.add_argument("--out", required=True, metavar="s3://RUN", help="the run directory on S3")
            p.add_argument("--stages", default=",".join(STAGES), help="comma-separated (default all four)")
            p.add_argument("--transient", action="store_true", help="terminate the cluster after the last step")
            p.add_argument("--no-wait", action="store_true", help="return once the steps are added")
        if verb == "logs":
            p.add_argument("--step-id", required=True, metavar="ID")
            p.add_argument("--lines", type=int, help="lines to show (default emr.log_tail_lines)")
        p.set_defaults(handler=run_verb)


def _context(args: argparse.Namespace):
    from ctr_pipeline.aws import AwsSettings
    from ctr_pipeline.cli import config_from_args

    from .definition import load

    cfg = config_from_args(args)
    defn = load(args.definition or cfg.emr.definition)
    explicit_region = cfg.aws.region if cfg.source_of("aws.region") != "default" else None
    settings = AwsSettings.from_env(explicit_region or defn.region, cfg.aws.endpoint_url)
    return cfg, defn, settings


def make_launcher(defn, settings):
    """The launcher the verbs use (tests replace it to step moto's clusters instead of sleeping)."""
    from .launcher import Launcher

    return Launcher(defn, settings, say=print)


def run_verb(args: argparse.Namespace) -> int:
    from .iam import instance_role_policy, service_role_policies

    cfg, defn, settings = _context(args)
    launcher = make_launcher(defn, settings)
    if args.verb == "policies":
        print(json.dumps({"instance_role": instance_role_policy(defn),
                          "service_role": service_role_policies(defn)}, indent=1))
    elif args.verb == "up":
        if args.dry_run:
            return _dry_run(launcher, [("RunJobFlow", launcher.create_request())])
        print(launcher.up())
    elif args.verb == "submit":
        return _submit(args, cfg, defn, launcher)
    elif args.verb == "status":
        got = launcher.status(args.cluster_id)
        print(f"{args.cluster_id} {got['name']}: {got['state']}")
        for step in got["steps"]:
            print(f"  {step['id']}  {step['state']:<11} {step['name']}")
    elif args.verb == "logs":
        launcher.print_tail(args.cluster_id, args.step_id, args.lines or cfg.emr.log_tail_lines)
    elif args.verb == "down":
        launcher.down(args.cluster_id)
    return 0


def _dry_run(launcher, requests: list, extra_puts: list = ()) -> int:
    puts = [(uri, data) for uri, data in launcher.artifacts()] + list(extra_puts)
    print(json.dumps({"s3_puts": [{"uri": uri, "bytes": len(data)} for uri, data in puts],
                      **{name: req for name, req in requests}}, indent=1, default=str))
    return 0


def _submit(args: argparse.Namespace, cfg, defn, launcher) -> int:
    from .steps import stage_steps

    out = args.out.rstrip("/")
    if not out.startswith("s3://"):
        raise UserError(f"--out {args.out}: an EMR run directory must be on S3 (s3://bucket/prefix)")
    input_uri = args.input or cfg.input.path
    if input_uri and not str(input_uri).startswith("s3://"):
        raise UserError(f"{'--input' if args.input else cfg.source_of('input.path')}: {input_uri!r} must be on "
                        "S3 for an EMR run")
    if bool(args.cluster_id) == bool(args.up):
        raise UserError("emr submit needs exactly one of --cluster-id ID or --up")
    if args.transient and args.no_wait and not args.up:
        raise UserError("--transient on an existing cluster needs to wait for the steps; drop --no-wait")
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    if not stages or any(s not in STAGES for s in stages):
        raise UserError(f"--stages {args.stages!r}: a comma-separated subset of {', '.join(STAGES)}")
    config_uri = f"{out}/_emr/config.yaml"
    config_bytes = _config_bytes(args)
    steps = stage_steps(defn, stages, out, config_uri, args.input, args.set, args.transient)
    if args.dry_run:
        first = ("RunJobFlow", launcher.create_request(steps, args.transient)) if args.up else \
            ("AddJobFlowSteps", {"JobFlowId": args.cluster_id, "Steps": steps})
        return _dry_run(launcher, [first], [(config_uri, config_bytes)])
    launcher.put(config_uri, config_bytes)
    if args.up:
        cluster_id = launcher.up(steps, args.transient)
        step_ids = launcher.step_ids(cluster_id)
    else:
        cluster_id = args.cluster_id
        step_ids = launcher.add_steps(cluster_id, steps)
    print(f"emr: cluster {cluster_id}: steps {', '.join(step_ids)}; run directory {out}")
    if args.no_wait:
        return 0
    launcher.follow(cluster_id, step_ids, cfg.emr.poll_seconds, cfg.emr.log_tail_lines)
    print(f"emr: all {len(step_ids)} step(s) completed; run directory {out}")
    if args.transient and not args.up:
        launcher.down(cluster_id)
    return 0


def _config_bytes(args: argparse.Namespace) -> bytes:
    """The run config file as given (the steps pass --set and --input again), or an empty mapping."""
    if not args.config:
        return b"{}\n"
    from ctr_pipeline.storage import Location

    return Location.of(args.config).read_bytes()

