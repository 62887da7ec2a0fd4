"""``ctr-pipeline notes build | deploy``: write the notes and notebooks from their source; push the
notes to a Zeppelin server."""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
VERBS = {"build": "write zeppelin/notes/*.zpln and zeppelin/notebooks/*.ipynb from zeppelin/notes.py "
                  "(--check: only say whether they are up to date)",
         "deploy": "import the notes into a Zeppelin server (an older note at the same path is replaced)"}


def add_parser(sub: Any) -> None:
    from ctr_pipeline.cli import add_verbs

    for verb, p in add_verbs(sub, "notes", "the analysis notes (Zeppelin and Jupyter)",
                             "The analysis notes: build them from their source, deploy them to Zeppelin.", VERBS):
        if verb == "build":
            p.add_argument("--check", action="store_true", help="exit 1 if a file differs from its source")
        else:
            add_deploy_flags(p)
        p.set_defaults(handler=run_verb)


def add_deploy_flags(p: argparse.ArgumentParser, url_required: bool = True) -> None:
    p.add_argument("--zeppelin", required=url_required, metavar="URL",
                   help="the Zeppelin server, e.g. http://localhost:8890 (EMR: port 8890 of the primary node)")
    p.add_argument("--user", metavar="USER", help="log in as USER (password from ZEPPELIN_PASSWORD) when "
                                                   "Zeppelin's authentication is on")


def zpln_files() -> dict[str, str]:
    """Note path in Zeppelin -> .zpln text, as built (the files in the repository / the installed package)."""
    from .notes import NOTES
    from .render import ZEPPELIN_DIR, note_path, zpln_text

    out = {}
    for note in NOTES:
        path = HERE / ZEPPELIN_DIR / f"{note.slug}.zpln"
        out[note_path(note)] = path.read_text() if path.exists() else zpln_text(note)
    return out


def deploy_to(url: str, user: str | None) -> int:
    from .deploy import ZeppelinClient, deploy

    done = deploy(ZeppelinClient(url), zpln_files(), user, os.environ.get("ZEPPELIN_PASSWORD"))
    print(f"ctr-pipeline: {len(done)} note(s) deployed to {url}")
    return 0


def run_verb(args: argparse.Namespace) -> int:
    from .render import build, stale

    if args.verb == "deploy":
        return deploy_to(args.zeppelin, args.user)
    if args.check:
        old = stale(HERE)
        for path in old:
            print(f"out of date: {path} (run 'ctr-pipeline notes build')")
        return 1 if old else 0
    for path in build(HERE):
        print(f"wrote {path}")
    return 0
