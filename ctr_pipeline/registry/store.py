"""The model registry on storage (a local path or an ``s3://`` prefix)::

    registry.json                 marker: format version, when it was created
    versions/v<N>/                immutable once complete
        booster.ubj  transform/  feature_map.tsv  features_summary.json  [gbdt_lr.npz]
        model.json                written last: a version without it is incomplete and never used
    aliases/<alias>.json          where the alias points and every move it made (one whole write)
    registry.lock                 held by whoever writes (see :mod:`ctr_pipeline.locks`)

Versions are never deleted or rewritten by these commands; an alias moves by replacing its document
(a rename locally, one put on S3), so a reader sees the old or the new pointer, never neither.
"""
from __future__ import annotations

import hashlib
import json
import logging
import socket
from datetime import datetime, timezone
from typing import Any, Callable, Optional

from ..aws import AwsSettings
from ..errors import UserError
from ..locks import Lock, user_name
from ..storage import Location
from . import core
from .bundle import BOOSTER, FEATURE_MAP, FEATURES_SUMMARY, LINEAR, TRANSFORM, ModelBundle, from_version

log = logging.getLogger("ctr_pipeline.registry")
MARKER = "registry.json"
FORMAT_VERSION = 1


def now_utc() -> str:
    """UTC to the microsecond, so moves made within one second still sort in order."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def who() -> str:
    return f"{user_name()}@{socket.gethostname()}"


class Registry:
    lock_wait = 60.0   # seconds a writer waits for another writer's registry lock (held for seconds)

    def __init__(self, root: Location):
        self.root = root

    # ------------------------------------------------------------------------------------ opening
    @staticmethod
    def is_registry(root: Location) -> bool:
        return (root / MARKER).is_file()

    @classmethod
    def open(cls, where: str, aws: Optional[AwsSettings] = None, create: bool = False) -> "Registry":
        root = Location.of(where, aws)
        if not cls.is_registry(root):
            if not create:
                raise UserError(f"{root}: not a model registry (no {MARKER}); create one with "
                                f"'ctr-pipeline models register RUN_DIR --registry {root}'")
            if root.exists() and root.iterdir():
                raise UserError(f"{root}: exists and is not empty; a new registry needs an empty or new directory")
            (root / MARKER).write_text(json.dumps({"format_version": FORMAT_VERSION, "created": now_utc(),
                                                   "created_by": who()}) + "\n")
        return cls(root)

    def lock(self, purpose: str) -> Lock:
        """The registry's own lock, held for seconds by register and alias moves (others wait lock_wait)."""
        return Lock(self.root / "registry.lock", purpose, what=f"registry {self.root}", wait=self.lock_wait)

    # ------------------------------------------------------------------------------------ versions
    def _version_dirs(self) -> list[Location]:
        found = [d for d in (self.root / "versions").iterdir() if core.version_number(d.name) is not None]
        return sorted(found, key=lambda d: core.version_number(d.name))

    def versions(self) -> list[dict[str, Any]]:
        """model.json of every complete version, oldest first."""
        return [json.loads((d / "model.json").read_text()) for d in self._version_dirs()
                if (d / "model.json").is_file()]

    def incomplete(self) -> list[str]:
        """Version directories a killed writer left without model.json (never used; safe to delete)."""
        return [d.name for d in self._version_dirs() if not (d / "model.json").is_file()]

    def version_dir(self, name: str) -> Location:
        d = self.root / "versions" / name
        if not (d / "model.json").is_file():
            known = ", ".join(v["version"] for v in self.versions()) or "none yet"
            raise UserError(f"{self.root}: no version {name!r} (versions: {known})")
        return d

    def resolve(self, selector: str) -> str:
        """A version name for ``v<N>`` or an alias."""
        if core.version_number(selector) is not None:
            self.version_dir(selector)
            return selector
        doc = self.alias_doc(core.check_alias(selector))
        if not doc or not doc.get("version"):
            raise UserError(f"{self.root}: alias {selector!r} points nowhere yet; promote a version first "
                            f"('ctr-pipeline models promote {self.root} v<N> --alias {selector}')")
        return doc["version"]

    def bundle(self, selector: str) -> ModelBundle:
        name = self.resolve(selector)
        return from_version(self.version_dir(name), f"{self.root}@{name}")

    def register(self, bundle: ModelBundle, method: str = "full_train", parent: Optional[str] = None,
                 reason: str = "", extra: Optional[dict[str, Any]] = None) -> str:
        """Copy ``bundle`` into a new immutable version; returns its name. model.json goes last."""
        if method not in core.METHODS:
            raise ValueError(f"method {method!r} is not one of {core.METHODS}")
        with self.lock(f"register {bundle.label}"):
            name = core.next_version(d.name for d in self._version_dirs())
            target = self.root / "versions" / name
            files = {BOOSTER: bundle.booster, FEATURE_MAP: bundle.feature_map}
            if bundle.features_summary is not None:
                files[FEATURES_SUMMARY] = bundle.features_summary
            if bundle.linear is not None:
                files[LINEAR] = bundle.linear
            for src in bundle.transform.files():
                files[f"{TRANSFORM}/{src.uri[len(bundle.transform.uri) + 1:]}"] = src
            digests = {}
            for rel, src in sorted(files.items()):
                data = src.read_bytes()
                (target / rel).write_bytes(data)
                digests[rel] = hashlib.sha256(data).hexdigest()
            info = {k: v for k, v in bundle.info.items() if k not in ("version", "lineage", "files")}
            lineage = {"method": method, "parent": parent, "source": bundle.label,
                       "source_run": bundle.info.get("source_run"), "data_window": bundle.info.get("data_window"),
                       **(extra or {})}
            doc = {"version": name, "created": now_utc(), "created_by": who(), "reason": reason,
                   **info, "lineage": lineage, "files": digests}
            (target / "model.json").write_text(json.dumps(doc, indent=1, default=str) + "\n")
        log.info("registry: %s registered as %s (%s)", bundle.label, name, method)
        return name

    # ------------------------------------------------------------------------------------ aliases
    def alias_doc(self, alias: str) -> Optional[dict[str, Any]]:
        path = self.root / "aliases" / f"{alias}.json"
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            return None

    def aliases(self) -> dict[str, dict[str, Any]]:
        out = {}
        for path in (self.root / "aliases").glob("*.json"):
            out[path.stem] = json.loads(path.read_text())
        return out

    def _move(self, alias: str, action: str, reason: str, choose: Callable[[Optional[dict]], str]) -> dict[str, Any]:
        """Under the registry lock: read the alias, pick the target with ``choose``, write the alias
        document (pointer and history together) in one write."""
        core.check_alias(alias)
        with self.lock(f"{action} {alias}"):
            for left in (self.root / "aliases").glob(".*.tmp"):   # a killed mover's unrenamed write
                left.unlink()
            doc = self.alias_doc(alias)
            version = choose(doc)
            self.version_dir(version)
            doc = core.move(doc, alias, version, action, who(), now_utc(), reason)
            (self.root / "aliases" / f"{alias}.json").write_text(json.dumps(doc, indent=1) + "\n")
        log.info("registry: %s -> %s (%s)", alias, version, action)
        return doc

    def promote(self, selector: str, alias: str = "champion", reason: str = "") -> dict[str, Any]:
        """Point ``alias`` at a version (``v<N>`` or another alias's version)."""
        return self._move(alias, "promote", reason, lambda doc: self.resolve(selector))

    def rollback(self, alias: str = "champion", reason: str = "") -> dict[str, Any]:
        """Point ``alias`` back at the version it had before its current one was promoted."""
        return self._move(alias, "rollback", reason, lambda doc: core.rollback_target(doc, alias))

    def history(self) -> list[dict[str, Any]]:
        """Every alias move, oldest first."""
        moves = [{"alias": a, **m} for a, doc in self.aliases().items() for m in doc.get("history", [])]
        return sorted(moves, key=lambda m: (m["at"], m["alias"]))
