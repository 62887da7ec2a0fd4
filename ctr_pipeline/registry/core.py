"""The model registry's rules, pure: version names, references, alias documents and their moves.

An alias document (``aliases/<alias>.json``) holds where the alias points now *and* every move it
ever made, so one whole-object write moves the alias and records the move together.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable, Optional

from ..errors import UserError

VERSION_RE = re.compile(r"^v(\d{1,9})$")
ALIAS_RE = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
ALIASES = ("champion", "challenger")
METHODS = ("full_train", "refresh", "continuation")


def version_name(number: int) -> str:
    return f"v{number}"


def version_number(name: str) -> Optional[int]:
    m = VERSION_RE.match(name)
    return int(m.group(1)) if m else None


def next_version(existing: Iterable[str]) -> str:
    """One above every version directory present (complete or not: a killed writer's number is not reused)."""
    numbers = [n for n in (version_number(x) for x in existing) if n is not None]
    return version_name(max(numbers, default=0) + 1)


def check_alias(alias: str) -> str:
    if not ALIAS_RE.match(alias) or VERSION_RE.match(alias):
        raise UserError(f"alias {alias!r}: use lowercase letters, digits, '-' or '_' starting with a letter "
                        f"(not v<N>, which names a version); the usual ones are {', '.join(ALIASES)}")
    return alias


@dataclass(frozen=True)
class Reference:
    """``REGISTRY@selector`` (a version ``v12`` or an alias ``champion``), or a run directory (no selector)."""

    where: str
    selector: Optional[str] = None

    @property
    def is_version(self) -> bool:
        return self.selector is not None and version_number(self.selector) is not None


def parse_reference(text: str) -> Reference:
    """'s3://b/reg@champion' -> (s3://b/reg, champion); 'runs/day1' -> a run directory."""
    head, sep, tail = text.rpartition("@")
    if not sep or "/" in tail:
        return Reference(text)
    if not head:
        raise UserError(f"model reference {text!r}: expected REGISTRY@VERSION or REGISTRY@ALIAS, e.g. "
                        "s3://bucket/models@champion or ./registry@v3")
    if version_number(tail) is None:
        check_alias(tail)
    return Reference(head, tail)


def move(doc: Optional[dict[str, Any]], alias: str, version: str, action: str, who: str, when: str,
         reason: str) -> dict[str, Any]:
    """The alias document after pointing ``alias`` at ``version`` (the move appended to its history)."""
    history = list((doc or {}).get("history", []))
    previous = (doc or {}).get("version")
    history.append({"action": action, "version": version, "previous": previous, "at": when, "by": who,
                    "reason": reason})
    return {"alias": alias, "version": version, "history": history}


def rollback_target(doc: Optional[dict[str, Any]], alias: str) -> str:
    """Where a rollback takes ``alias``: the version it pointed to before the newest promotion to its
    current version (repeated rollbacks walk further back)."""
    if not doc or not doc.get("version"):
        raise UserError(f"alias {alias!r} points nowhere yet: nothing to roll back")
    current = doc["version"]
    for entry in reversed(doc.get("history", [])):
        if entry["action"] == "promote" and entry["version"] == current:
            if entry.get("previous"):
                return entry["previous"]
            break
    raise UserError(f"alias {alias!r} ({current}) has no earlier version to roll back to; use 'models promote' "
                    "to point it at a version")
