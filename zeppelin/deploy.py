"""Push the notes to a Zeppelin server through its REST API (Zeppelin 0.11, as on EMR 7).

Zeppelin's import refuses a path that already holds a note (HTTP 500 "Note '/x' existed"), so a note
already at one of our paths is deleted first (``DELETE /api/notebook/{id}``, which is permanent) and the
new one imported (``POST /api/notebook/import?notePath=...``). With a user, ``POST /api/login`` first
(form-encoded ``userName`` / ``password``); its session cookie goes with every later call.

:func:`plan` is the pure part; :class:`ZeppelinClient` the thin HTTP adapter (standard library only).
"""
from __future__ import annotations

import http.cookiejar
import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

from ctr_pipeline.errors import RunFailed, UserError


@dataclass(frozen=True)
class Action:
    kind: str               # "delete" or "import"
    path: str               # the note's path in Zeppelin, e.g. /ctr-pipeline/Run overview
    note_id: Optional[str] = None


def plan(existing: Sequence[Mapping[str, Any]], paths: Sequence[str]) -> list[Action]:
    """What to do for ``paths`` given the server's notes (``[{"id", "path"}]``), note by note: delete
    what is now at the path (trash copies under ``/~Trash`` are other paths, left alone), then import.
    A failure part way leaves every other note whole."""
    actions = []
    for path in paths:
        actions += [Action("delete", path, n["id"]) for n in existing if n.get("path") == path]
        actions.append(Action("import", path))
    return actions


class ZeppelinClient:
    def __init__(self, url: str, timeout: float = 30.0):
        parsed = urllib.parse.urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise UserError(f"--zeppelin {url!r}: expected http(s)://HOST:PORT, e.g. http://localhost:8890")
        self.base = url.rstrip("/")
        self.timeout = timeout
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def call(self, method: str, path: str, body: Optional[bytes] = None, content_type: str = "application/json") -> Any:
        """One REST call; returns the ``body`` of Zeppelin's ``{"status", "message", "body"}`` envelope."""
        req = urllib.request.Request(self.base + path, data=body, method=method)
        if body is not None:
            req.add_header("Content-Type", content_type)
        try:
            with self.opener.open(req, timeout=self.timeout) as resp:
                text = resp.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")
            try:
                detail = json.loads(detail).get("message") or detail
            except ValueError:
                pass
            if exc.code in (401, 403):
                raise UserError(f"{self.base}: {method} {path} was refused (HTTP {exc.code}); give --user and the "
                                "password in ZEPPELIN_PASSWORD, or a user allowed to write notes") from None
            raise RunFailed(f"{self.base}: {method} {path} failed with HTTP {exc.code}: {detail[:300]}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise RunFailed(f"{self.base}: cannot reach Zeppelin ({reason}); is it up, and the port open "
                            "(on EMR: an SSH tunnel to the primary node's port 8890)?") from None
        try:
            doc = json.loads(text) if text.strip() else {}
        except ValueError:
            raise RunFailed(f"{self.base}: {method} {path} answered with something that is not Zeppelin's JSON: "
                            f"{text[:200]!r}") from None
        if isinstance(doc, dict) and doc.get("status") not in (None, "OK", "CREATED"):
            raise RunFailed(f"{self.base}: {method} {path}: {doc.get('status')} {doc.get('message', '')}")
        return doc.get("body") if isinstance(doc, dict) else doc

    def login(self, user: str, password: str) -> None:
        form = urllib.parse.urlencode({"userName": user, "password": password}).encode()
        self.call("POST", "/api/login", form, "application/x-www-form-urlencoded")

    def notes(self) -> list[dict[str, Any]]:
        return list(self.call("GET", "/api/notebook") or [])

    def delete(self, note_id: str) -> None:
        self.call("DELETE", f"/api/notebook/{urllib.parse.quote(note_id, safe='')}")

    def import_note(self, path: str, text: str) -> str:
        query = "notePath=" + urllib.parse.quote(path, safe="/")
        return str(self.call("POST", f"/api/notebook/import?{query}", text.encode("utf-8")))


def deploy(client: ZeppelinClient, notes: Mapping[str, str], user: Optional[str] = None,
           password: Optional[str] = None, echo=print) -> list[tuple[str, str]]:
    """Log in if a user is given, then replace every note of ``notes`` (path -> .zpln text).
    Returns (path, new note id) per imported note."""
    if user:
        if password is None:
            raise UserError("--user given but ZEPPELIN_PASSWORD is not set in the environment")
        client.login(user, password)
    done = []
    for action in plan(client.notes(), list(notes)):
        if action.kind == "delete":
            client.delete(action.note_id)
            echo(f"notes: deleted the older {action.path} ({action.note_id})")
        else:
            new_id = client.import_note(action.path, notes[action.path])
            echo(f"notes: imported {action.path} as {new_id}")
            done.append((action.path, new_id))
    return done
