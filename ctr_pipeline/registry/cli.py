"""``ctr-pipeline models register | list | show | promote | rollback | history``.

Results go to stdout (a table, or JSON for ``show``); every command takes ``--config`` / ``--set`` only
for the ``aws.*`` settings of an ``s3://`` registry.
"""
from __future__ import annotations

import argparse
import json
from typing import Any

VERBS = {"register": "copy a finished run's model into the registry as a new immutable version",
         "list": "every version with its lineage, metrics and aliases",
         "show": "one version's record (REGISTRY@VERSION or REGISTRY@ALIAS), as JSON",
         "promote": "point an alias (default champion) at a version",
         "rollback": "point an alias back at the version it had before its current one",
         "history": "every alias move: when, who, from, to, why"}


def add_parser(sub: Any) -> None:
    from ..cli import add_verbs

    for verb, p in add_verbs(sub, "models", "the model registry: versions, champion / challenger aliases",
                             "The model registry: versions, aliases and their history.", VERBS):
        p.add_argument("--config", metavar="FILE", help="YAML config file (its aws.* settings reach S3)")
        p.add_argument("--set", metavar="SECTION.KEY=VALUE", action="append", default=[],
                       help="override a config value, e.g. --set aws.endpoint_url=http://127.0.0.1:5000")
        if verb == "register":
            p.add_argument("run", metavar="RUN_DIR", help="a run directory with complete features and train stages")
            p.add_argument("--registry", required=True, metavar="REGISTRY", help="local path or s3:// prefix "
                           "(created if new)")
            p.add_argument("--promote", metavar="ALIAS", help="also point this alias at the new version")
        elif verb == "show":
            p.add_argument("ref", metavar="REGISTRY@VERSION")
        else:
            p.add_argument("registry", metavar="REGISTRY", help="local path or s3:// prefix")
        if verb == "promote":
            p.add_argument("version", metavar="VERSION", help="v<N>, or an alias whose version to take")
        if verb in ("promote", "rollback"):
            p.add_argument("--alias", default="champion", help="the alias to move (default champion)")
        if verb in ("register", "promote", "rollback"):
            p.add_argument("--reason", default="", help="why (kept in the version or the alias history)")
        p.set_defaults(handler=run_verb)


def run_verb(args: argparse.Namespace) -> int:
    from ..cli import aws_settings
    from ..config import load_file_layer, parse_set_option
    from ..storage import Location
    from .bundle import from_run, resolve
    from .store import Registry

    layers = ([load_file_layer(args.config)] if args.config else []) + [parse_set_option(s) for s in args.set]
    aws = aws_settings(layers)
    if args.verb == "show":
        bundle = resolve(args.ref, aws)
        print(json.dumps(bundle.info, indent=1, default=str))
        return 0
    if args.verb == "register":
        bundle = from_run(Location.of(args.run, aws))
        registry = Registry.open(args.registry, aws, create=True)
        name = registry.register(bundle, reason=args.reason)
        print(f"ctr-pipeline: registered {bundle.label} as {registry.root}@{name}")
        if args.promote:
            registry.promote(name, args.promote, args.reason or "registered with --promote")
            print(f"ctr-pipeline: {args.promote} -> {name}")
        return 0
    registry = Registry.open(args.registry, aws)
    if args.verb == "list":
        print(format_versions(registry.versions(), registry.aliases(), registry.incomplete()))
    elif args.verb == "history":
        print(format_history(registry.history()))
    elif args.verb == "promote":
        doc = registry.promote(args.version, args.alias, args.reason)
        print(f"ctr-pipeline: {args.alias} -> {doc['version']} (was {doc['history'][-1]['previous'] or 'unset'})")
    elif args.verb == "rollback":
        doc = registry.rollback(args.alias, args.reason)
        print(f"ctr-pipeline: {args.alias} rolled back -> {doc['version']} (was {doc['history'][-1]['previous']})")
    return 0


def format_versions(versions: list[dict], aliases: dict[str, dict], incomplete: list[str]) -> str:
    pointing: dict[str, list[str]] = {}
    for alias, doc in sorted(aliases.items()):
        pointing.setdefault(doc.get("version"), []).append(alias)
    lines = [f"{'version':<9}{'created':<29}{'method':<14}{'parent':<8}{'test MXE':>10}{'test AUC':>10}  aliases"]
    for v in versions:
        test = v.get("metrics", {}).get("test", {})
        mxe = f"{test['mxe']:.5f}" if "mxe" in test else "-"
        auc = f"{test['auc']:.4f}" if "auc" in test else "-"
        lin = v.get("lineage", {})
        lines.append(f"{v['version']:<9}{v['created']:<29}{lin.get('method', '-'):<14}{lin.get('parent') or '-':<8}"
                     f"{mxe:>10}{auc:>10}  {', '.join(pointing.get(v['version'], [])) or '-'}")
    if not versions:
        lines.append("(no versions)")
    if incomplete:
        lines.append(f"incomplete (a writer was killed; never used, safe to delete): {', '.join(incomplete)}")
    return "\n".join(lines)


def format_history(moves: list[dict]) -> str:
    lines = [f"{'at':<29}{'alias':<12}{'action':<10}{'from':<8}{'to':<8}{'by':<28}reason"]
    for m in moves:
        lines.append(f"{m['at']:<29}{m['alias']:<12}{m['action']:<10}{m.get('previous') or '-':<8}{m['version']:<8}"
                     f"{m['by']:<28}{m.get('reason', '')}")
    if not moves:
        lines.append("(no alias moves yet)")
    return "\n".join(lines)
