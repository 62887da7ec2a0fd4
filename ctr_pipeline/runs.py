"""A run is a directory: ``splits/ features/ model/ evaluation/ manifest.json``.

Stages write into ``.staging/<stage>-<token>/`` and are published by a rename, then recorded in the
manifest (written to a temp file and renamed). A stage counts as complete only when its record says so,
its directory exists, and the upstream stages it was built from are still the ones on record (a
forced re-run of ``sample`` makes ``features`` stale). Local paths only for now; see README.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from .errors import StageError

STAGES = ("sample", "features", "train", "evaluate")
STAGE_DIRS = {"sample": "splits", "features": "features", "train": "model", "evaluate": "evaluation"}
UPSTREAM = {"sample": (), "features": ("sample",), "train": ("features",), "evaluate": ("features", "train")}
CONFIG_SECTIONS = {"sample": ("input", "sampling"), "features": ("features",), "train": ("training",),
                   "evaluate": ("evaluation",)}
MANIFEST = "manifest.json"
FORMAT_VERSION = 1


def local_run_path(uri: str) -> Path:
    """The local path of a run directory URI; other schemes are not supported by this version."""
    if uri.startswith("file://"):
        uri = uri[len("file://"):]
    elif "://" in uri:
        raise StageError(f"--out {uri}: only local run directories are supported so far; on EMR use a local "
                         "or HDFS-mounted path for the run and copy it to S3 afterwards")
    return Path(uri).expanduser().resolve()


def library_versions() -> dict[str, str]:
    """Versions of the interpreter and the libraries that shape results."""
    from importlib import metadata

    out = {"python": platform.python_version()}
    for dist in ("ctr-pipeline", "pyspark", "xgboost-cpu", "xgboost", "numpy", "pandas", "pyarrow", "scipy"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


@dataclass
class RunDir:
    root: Path

    @classmethod
    def at(cls, uri: str) -> "RunDir":
        return cls(local_run_path(uri))

    # ------------------------------------------------------------------------------------ manifest
    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST

    def manifest(self) -> dict[str, Any]:
        """The manifest as a dict (an empty skeleton for a new run)."""
        try:
            data = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"format_version": FORMAT_VERSION, "stages": {}}
        except (OSError, json.JSONDecodeError) as exc:
            raise StageError(f"{self.manifest_path}: unreadable run manifest ({exc}); move the run "
                             "directory away or pick another --out") from None
        return data

    def write_manifest(self, data: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".{MANIFEST}.{uuid.uuid4().hex}.tmp"
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
        os.replace(tmp, self.manifest_path)

    def stage_record(self, stage: str) -> Optional[dict[str, Any]]:
        return self.manifest().get("stages", {}).get(stage)

    def record_stage(self, stage: str, record: dict[str, Any], config: dict[str, Any]) -> None:
        data = self.manifest()
        data.setdefault("created", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        data["config"] = config
        data["versions"] = library_versions()
        data.setdefault("stages", {})[stage] = record
        self.write_manifest(data)

    # ------------------------------------------------------------------------------------ stages
    def path_of(self, stage: str) -> Path:
        return self.root / STAGE_DIRS[stage]

    def is_complete(self, stage: str) -> bool:
        """Complete, its output present, and built from the upstream stages now on record."""
        stages = self.manifest().get("stages", {})
        rec = stages.get(stage)
        if not rec or rec.get("status") != "complete" or not self.path_of(stage).is_dir():
            return False
        for up in UPSTREAM[stage]:
            if not self.is_complete(up) or rec.get("upstream", {}).get(up) != stages[up].get("token"):
                return False
        return True

    def new_staging(self, stage: str) -> Path:
        """A fresh staging directory; leftovers of this stage from a killed run are removed first."""
        for old in (self.root / ".staging").glob(f"{stage}-*"):
            shutil.rmtree(old, ignore_errors=True)
        path = self.root / ".staging" / f"{stage}-{uuid.uuid4().hex[:12]}"
        path.mkdir(parents=True)
        return path

    def publish(self, stage: str, staging: Path) -> Path:
        """Move a finished staging directory into place; an older output is removed after the swap."""
        dest = self.path_of(stage)
        trash = None
        if dest.exists():
            trash = self.root / ".staging" / f"old-{stage}-{uuid.uuid4().hex[:12]}"
            os.replace(dest, trash)
        os.replace(staging, dest)
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)
        return dest

    def discard(self, staging: Path) -> None:
        shutil.rmtree(staging, ignore_errors=True)
