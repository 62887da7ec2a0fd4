"""``ctr-pipeline emr up | submit | refresh | status | logs | down | policies``: the launcher's command line.

Nothing here imports boto3 until a handler runs. The run config given to ``submit`` (``--config``,
``--set``, ``--input``) is validated locally first, then uploaded beside the run and passed to every
stage's step unchanged, so local and EMR runs read the same settings. Results (a cluster id, states, a
log tail) go to stdout; progress lines go to the ``ctr_pipeline.emr`` logger (stderr, hidden by -q).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ctr_pipeline.errors import RunFailed, UserError
from ctr_pipeline.runs import STAGES

VERBS = {"up": "upload the wheel, bootstrap and entry script to the artifacts prefix, create the cluster, "
               "print its id",
         "submit": "run the pipeline's stages as spark-submit steps (on --cluster-id, or --up a new cluster) "
                   "and follow them",
         "refresh": "run 'ctr-pipeline refresh' on a registry and a new window as a step (on --cluster-id, or "
                    "--up a new cluster; with --transient it ends after the step)",
         "status": "the cluster's state and each step's state", "logs": "the tail of a step's stderr log",
         "down": "terminate the cluster", "policies": "the IAM policies the definition's roles need (JSON)",
         "notes": "wait until the cluster is up, then import the analysis notes into its Zeppelin (port 8890)"}
PROJECT = Path(__file__).resolve().parent.parent
DRY_RUN_HELP = "print the requests that upload or create anything (JSON, in order) and send nothing"


def add_parser(sub: Any) -> None:
    """Register ``emr`` and its verbs on the main parser's subparsers (``sub``)."""
    from ctr_pipeline.cli import _add_config_flags, add_verbs

    for verb, p in add_verbs(sub, "emr", "run the pipeline on AWS EMR (cluster definitions in emr_configs/)",
                             "Run the pipeline on AWS EMR: up -> submit -> status / logs -> down.", VERBS):
        _add_config_flags(p)
        p.add_argument("--definition", metavar="FILE", help="cluster definition YAML (default: emr.definition)")
        if verb == "notes":
            from zeppelin.cli import add_deploy_flags

            p.add_argument("--cluster-id", required=True, metavar="ID", help="the cluster (j-...)")
            add_deploy_flags(p, url_required=False)
            p.set_defaults(handler=run_verb)
            continue
        if verb in ("status", "logs", "down"):
            p.add_argument("--cluster-id", required=True, metavar="ID", help="the cluster (j-...)")
        if verb in ("up", "submit", "refresh"):
            p.add_argument("--dry-run", action="store_true", help=DRY_RUN_HELP)
        if verb in ("submit", "refresh"):
            p.add_argument("--cluster-id", metavar="ID", help="a running cluster (j-...); or --up")
            p.add_argument("--up", action="store_true", help="create the cluster with the steps (as 'emr up')")
            p.add_argument("--transient", action="store_true",
                           help="terminate the cluster after the last step (or when a step fails)")
            p.add_argument("--no-wait", action="store_true", help="return once the steps are added")
        if verb == "submit":
            p.add_argument("--out", required=True, metavar="s3://RUN", help="the run directory on S3")
            p.add_argument("--stages", default=",".join(STAGES), metavar="STAGE,...",
                           help=f"comma-separated stages (default {','.join(STAGES)})")
        if verb == "refresh":
            p.add_argument("--registry", required=True, metavar="s3://REGISTRY", help="the model registry on S3")
        if verb == "logs":
            p.add_argument("--step-id", required=True, metavar="ID", help="the step (s-...)")
            p.add_argument("--lines", type=int, metavar="N", help="lines to show (default emr.log_tail_lines)")
        p.set_defaults(handler=run_verb)


def _context(args: argparse.Namespace):
    """(run config, cluster definition, AWS settings): the region is aws.region when set explicitly,
    else the definition's; the endpoint aws.endpoint_url or AWS_ENDPOINT_URL."""
    from ctr_pipeline.aws import AwsSettings
    from ctr_pipeline.cli import config_from_args

    from .definition import load

    cfg = config_from_args(args)
    path = Path(args.definition or cfg.emr.definition)
    if not args.definition and cfg.source_of("emr.definition") == "default" and not path.exists():
        path = PROJECT / path  # the shipped default, from any directory
    defn = load(path)
    explicit_region = cfg.aws.region if cfg.source_of("aws.region") != "default" else None
    settings = AwsSettings.from_env(explicit_region or defn.region, cfg.aws.endpoint_url)
    return cfg, defn, settings


def make_launcher(defn, settings):
    """The launcher the verbs use (the seam tests replace to move moto's steps instead of sleeping)."""
    from .launcher import Launcher

    return Launcher(defn, settings)


def run_verb(args: argparse.Namespace) -> int:
    """Handler of every ``emr`` verb; returns the exit code."""
    cfg, defn, settings = _context(args)
    handler = {"up": _up, "submit": _submit, "refresh": _refresh, "status": _status, "logs": _logs, "down": _down,
               "policies": _policies, "notes": _notes}[args.verb]
    return handler(args, cfg, make_launcher(defn, settings))


def _print_plan(plan) -> int:
    print(json.dumps([request.shown() for request in plan], indent=1))
    return 0


def _up(args, cfg, launcher) -> int:
    plan = launcher.up_plan()
    if args.dry_run:
        return _print_plan(plan)
    print(launcher.started(launcher.execute(plan)[-1]))
    return 0


def _submit(args, cfg, launcher) -> int:
    from .steps import check_locations, parse_stages, stage_steps

    _check_launch_flags(args)
    out = args.out.rstrip("/")
    input_uri = args.input or cfg.input.path
    check_locations(launcher.defn, out, input_uri, "--input" if args.input else cfg.source_of("input.path"))
    stages = parse_stages(args.stages)
    config_uri = f"{out}/_emr/config.yaml"
    steps = stage_steps(launcher.defn, stages, out, config_uri, args.input, args.set, args.transient)
    return _launch(args, cfg, launcher, steps, config_uri, f"run directory {out}")


def _refresh(args, cfg, launcher) -> int:
    from .steps import check_locations, refresh_steps

    _check_launch_flags(args)
    if not args.input:
        raise UserError("emr refresh needs --input s3://WINDOW: the new window of logs")
    registry = args.registry.rstrip("/")
    check_locations(launcher.defn, registry, args.input, "--input")
    config_uri = f"{registry}/refresh/_emr/config.yaml"
    steps = refresh_steps(launcher.defn, registry, config_uri, args.input, args.set, args.transient)
    return _launch(args, cfg, launcher, steps, config_uri, f"registry {registry}")


def _check_launch_flags(args) -> None:
    if bool(args.cluster_id) == bool(args.up):
        raise UserError(f"emr {args.verb} needs exactly one of --cluster-id ID (a running cluster) or --up (a new one)")
    if args.transient and args.no_wait and not args.up:
        raise UserError("--transient on an existing cluster terminates it after its steps, so it must wait; "
                        "drop --no-wait (or use --up --transient, which EMR ends by itself)")
    if args.master:
        raise UserError(f"--master {args.master}: EMR steps run on YARN (spark-submit --master yarn); drop --master")


def _launch(args, cfg, launcher, steps: list[dict], config_uri: str, where: str) -> int:
    """Upload the config, add the steps (to a new cluster with --up), follow them unless --no-wait."""
    from .launcher import upload

    plan = [upload(config_uri, _config_bytes(args)),
            *(launcher.up_plan(steps, args.transient) if args.up else [launcher.add_steps(args.cluster_id, steps)])]
    if args.dry_run:
        return _print_plan(plan)
    if not args.up:
        launcher.check_alive(args.cluster_id)
    responses = launcher.execute(plan)
    if args.up:
        cluster_id = launcher.started(responses[-1])
        step_ids = [s["Id"] for s in launcher.steps(cluster_id)][-len(steps):]
    else:
        cluster_id, step_ids = args.cluster_id, responses[-1]["StepIds"]
    print(f"emr: cluster {cluster_id}: steps {', '.join(step_ids)}; {where}")
    if args.no_wait:
        print(f"emr: follow with 'ctr-pipeline emr status --cluster-id {cluster_id}'")
        return 0
    launcher.follow(cluster_id, step_ids, cfg.emr.poll_seconds, cfg.emr.log_tail_lines)
    print(f"emr: all {len(step_ids)} step(s) completed; {where}")
    if args.transient and not args.up:
        launcher.down(cluster_id)
    return 0


def _config_bytes(args: argparse.Namespace) -> bytes:
    """The run config file as given (the steps pass --set and --input again), or an empty mapping."""
    if not args.config:
        return b"{}\n"
    from ctr_pipeline.storage import Location

    return Location.of(args.config).read_bytes()


def _notes(args, cfg, launcher) -> int:
    """The notes into the cluster's Zeppelin: --zeppelin URL (e.g. an SSH tunnel), else the primary
    node's public DNS name on port 8890."""
    from zeppelin.cli import deploy_to

    cluster = launcher.wait_until_up(args.cluster_id, cfg.emr.poll_seconds)
    apps = [a.get("Name") for a in cluster.get("Applications", [])]
    if "Zeppelin" not in apps:
        raise UserError(f"cluster {args.cluster_id} runs {', '.join(apps) or 'no applications'} but not Zeppelin; "
                        "add Zeppelin to 'applications' in the cluster definition and start a new cluster")
    url = args.zeppelin or f"http://{cluster.get('MasterPublicDnsName')}:8890"
    return deploy_to(url, args.user)


def _status(args, cfg, launcher) -> int:
    got = launcher.status(args.cluster_id)
    reason = f" ({got['reason']})" if got["reason"] else ""
    print(f"{args.cluster_id} {got['name']}: {got['state']}{reason}")
    for step in got["steps"]:
        print(f"  {step['id']}  {step['state']:<11} {step['name']}")
    return 0


def _logs(args, cfg, launcher) -> int:
    lines = cfg.emr.log_tail_lines if args.lines is None else args.lines
    if lines < 1:
        raise UserError(f"--lines {lines}: give a number of lines >= 1")
    step = launcher.step(args.cluster_id, args.step_id)
    uri, got = launcher.tail(args.cluster_id, args.step_id, lines)
    if got is None:
        raise RunFailed(f"no stderr log of step '{step['Name']}' ({args.step_id}, {step['Status']['State']}) at "
                        f"{uri} yet; EMR copies step logs to S3 every few minutes, try again later")
    print(f"emr: {step['Name']} ({args.step_id}, {step['Status']['State']}): last {len(got)} lines of {uri}",
          file=sys.stderr)
    print("\n".join(got))
    return 0


def _down(args, cfg, launcher) -> int:
    launcher.down(args.cluster_id)
    print(f"{args.cluster_id}: {launcher.cluster(args.cluster_id)['Status']['State']}")
    return 0


def _policies(args, cfg, launcher) -> int:
    from .iam import instance_role_policy, service_role_policies

    print(json.dumps({"instance_role": instance_role_policy(launcher.defn),
                      "service_role": service_role_policies(launcher.defn)}, indent=1))
    return 0
