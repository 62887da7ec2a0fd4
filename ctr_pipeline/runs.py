"""A run is a directory: ``splits/ features/ model/ evaluation/ manifest.json``, with ``logs/`` (one
file per command run on it) and, while a command writes it, ``run.lock`` naming that command.

The run directory is a local path or an ``s3://`` prefix; every file goes through
:mod:`ctr_pipeline.storage`. The manifest, replaced whole by one atomic write, is the commit point:
locally a stage writes into ``.staging/<stage>-<id>/`` and is renamed into ``splits/`` (etc.) before
its record is written; on S3, which has no rename, a stage writes straight into a version directory
``splits/v-<id>/`` that readers find only through the manifest record, so a reader never sees a
half-written stage. A stage counts as complete only when its record says so, its directory exists,
and the upstream stages it was built from are still the ones on record (a forced re-run of ``sample``
makes ``features`` stale).
"""
from __future__ import annotations

import json
import os
import platform
import time
import uuid
from typing import Any, Optional

from .aws import AwsSettings
from .errors import StageError
from .storage import Location

STAGES = ("sample", "features", "train", "evaluate")
STAGE_DIRS = {"sample": "splits", "features": "features", "train": "model", "evaluate": "evaluation"}
UPSTREAM = {"sample": (), "features": ("sample",), "train": ("features",), "evaluate": ("features", "train")}
CONFIG_SECTIONS = {"sample": ("input", "sampling"), "features": ("features",), "train": ("training",),
                   "evaluate": ("evaluation",)}
MANIFEST = "manifest.json"
RUN_LOCK = "run.lock"   # held by the command writing the run (ctr_pipeline.locks: one writer at a time)
LOGS = "logs"           # one log file per command run on the directory
FORMAT_VERSION = 1
VERSION_PREFIX = "v-"  # version directories of a stage on object stores: splits/v-<id>/


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


class RunDir:
    """A run directory at a local path or an ``s3://`` prefix (``root`` is a :class:`Location`)."""

    def __init__(self, root: "Location | str | os.PathLike", aws: Optional[AwsSettings] = None):
        self.root = Location.of(root, aws)

    @classmethod
    def at(cls, uri: str, aws: Optional[AwsSettings] = None) -> "RunDir":
        return cls(uri, aws)

    def __repr__(self) -> str:
        return f"RunDir({self.root.uri!r})"

    # ------------------------------------------------------------------------------------ manifest
    @property
    def manifest_path(self) -> Location:
        return self.root / MANIFEST

    def manifest(self) -> dict[str, Any]:
        """The manifest as a dict (an empty skeleton for a new run)."""
        try:
            data = json.loads(self.manifest_path.read_text())
        except FileNotFoundError:
            return {"format_version": FORMAT_VERSION, "stages": {}}
        except (OSError, ValueError) as exc:
            raise StageError(f"{self.manifest_path}: unreadable run manifest ({exc}); move the run "
                             "directory away or pick another --out") from None
        return data

    def write_manifest(self, data: dict[str, Any]) -> None:
        """Replace the manifest in one atomic write (rename locally, one put on S3): the commit point."""
        self.root.mkdir()
        self.manifest_path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")

    def stage_record(self, stage: str) -> Optional[dict[str, Any]]:
        return self.manifest().get("stages", {}).get(stage)

    def record_stage(self, stage: str, record: dict[str, Any], config: dict[str, Any]) -> None:
        """Record a stage (the commit point of its publication); on S3 the version it replaced is
        removed afterwards."""
        data = self.manifest()
        previous = data.get("stages", {}).get(stage) or {}
        data.setdefault("created", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        data["config"] = config
        data["versions"] = library_versions()
        data.setdefault("stages", {})[stage] = record
        self.write_manifest(data)
        old = previous.get("location")
        if old and old != record.get("location") and old.startswith(f"{STAGE_DIRS[stage]}/{VERSION_PREFIX}"):
            (self.root / old).rmtree()

    # ------------------------------------------------------------------------------------ stages
    def path_of(self, stage: str) -> Location:
        """Where the stage's output is: the recorded location (a version directory on S3), else the
        stage's directory."""
        rec = self.stage_record(stage) or {}
        return self.root / rec.get("location", STAGE_DIRS[stage])

    def is_complete(self, stage: str) -> bool:
        """Complete, its output present, and built from the upstream stages now on record."""
        stages = self.manifest().get("stages", {})
        rec = stages.get(stage)
        if not rec or rec.get("status") != "complete":
            return False
        if not (self.root / rec.get("location", STAGE_DIRS[stage])).is_dir():
            return False
        for up in UPSTREAM[stage]:
            if not self.is_complete(up) or rec.get("upstream", {}).get(up) != stages[up].get("token"):
                return False
        return True

    def new_staging(self, stage: str) -> Location:
        """A fresh staging directory; leftovers of this stage from a killed run are removed first.

        Locally it is ``.staging/<stage>-<id>`` (published by a rename); on S3, which cannot rename,
        it is the final version directory ``<stage dir>/v-<id>``, published by the manifest record.
        """
        tag = uuid.uuid4().hex[:12]
        if self.root.is_local:
            for old in (self.root / ".staging").glob(f"{stage}-*"):
                old.rmtree()
            path = self.root / ".staging" / f"{stage}-{tag}"
            path.mkdir()
            return path
        current = (self.stage_record(stage) or {}).get("location")
        for old in (self.root / STAGE_DIRS[stage]).glob(f"{VERSION_PREFIX}*"):
            if f"{STAGE_DIRS[stage]}/{old.name}" != current:
                old.rmtree()
        return self.root / STAGE_DIRS[stage] / f"{VERSION_PREFIX}{tag}"

    def final_location(self, stage: str, staging: Location) -> Location:
        """Where a stage's staging directory will be once published."""
        return self.root / STAGE_DIRS[stage] if self.root.is_local else staging

    def publish(self, stage: str, staging: Location) -> str:
        """Put a finished staging directory in place; returns its location relative to the root, to
        be recorded in the manifest (which makes it visible to readers).

        Locally the stage's record is first marked as being replaced, then the directory is renamed
        into place (an older output is removed after the swap): a kill in between leaves the stage
        incomplete, never an old record over new files. On S3 nothing moves.
        """
        if not self.root.is_local:
            return staging.uri[len(self.root.uri) + 1:]
        data = self.manifest()
        rec = data.get("stages", {}).get(stage)
        if rec and rec.get("status") == "complete":
            rec["status"] = "replacing"
            self.write_manifest(data)
        dest = self.root / STAGE_DIRS[stage]
        trash = None
        if dest.exists():
            trash = self.root / ".staging" / f"old-{stage}-{uuid.uuid4().hex[:12]}"
            dest.move_to(trash)
        staging.move_to(dest)
        if trash is not None:
            trash.rmtree()
        self._drop_empty_staging()
        return STAGE_DIRS[stage]

    def discard(self, staging: Location) -> None:
        """Remove a failed stage's staging directory."""
        staging.rmtree()
        self._drop_empty_staging()

    def _drop_empty_staging(self) -> None:
        parent = self.root / ".staging"
        if self.root.is_local and parent.path.is_dir() and not any(parent.path.iterdir()):
            parent.path.rmdir()
