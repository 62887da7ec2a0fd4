"""One writer at a time: a lock file at a storage location (local path or S3), with a stale-lock rule.

The lock is a small JSON document naming its holder (user, host, pid, command, purpose, when it was
taken, its last heartbeat). It is created only if absent, whole: locally a hard link of a fully written
private file (the link fails if the lock exists), on S3 a conditional put (``If-None-Match: *``), so of
two processes racing exactly one wins. While held, a thread
rewrites the heartbeat every ``heartbeat`` seconds (only if the lock is still this holder's).

Stale rule: a lock whose heartbeat is older than ``stale_after`` seconds, or whose holder ran on this
host under a process id that no longer exists, was left by a killed process; the next taker removes it
(locally by renaming that exact file aside, on S3 by a delete conditional on its ETag, so a lock taken
in between by someone else is never removed) and takes the lock. Anything else raises
:class:`LockHeld`, whose message names the holder.
"""
from __future__ import annotations

import contextlib
import getpass
import json
import logging
import os
import socket
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any, Optional

from .errors import UserError
from .redact import redact_text
from .storage import Location, private_copy

log = logging.getLogger("ctr_pipeline.locks")


class LockHeld(UserError):
    """Another live process holds the lock; the message says who, since when and what to do."""


@dataclass(frozen=True)
class Holder:
    token: str
    purpose: str
    user: str
    host: str
    pid: int
    command: str
    acquired: float
    heartbeat: float

    @classmethod
    def me(cls, purpose: str) -> "Holder":
        now = time.time()
        command = redact_text(" ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv)))
        return cls(uuid.uuid4().hex, purpose, user_name(), socket.gethostname(), os.getpid(), command[:300], now, now)

    def describe(self) -> str:
        taken = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(self.acquired))
        return (f"{self.user}@{self.host} pid {self.pid} ({self.purpose}, since {taken}, heartbeat "
                f"{time.time() - self.heartbeat:.0f}s ago: {self.command!r})")

    def to_bytes(self) -> bytes:
        return (json.dumps(asdict(self), indent=1) + "\n").encode()

    @classmethod
    def parse(cls, raw: bytes) -> Optional["Holder"]:
        try:
            return cls(**json.loads(raw))
        except (ValueError, TypeError):
            return None


def user_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def stale(holder: Optional[Holder], stale_after: float, now: Optional[float] = None) -> bool:
    """True when the lock was left behind: unreadable, heartbeat too old, or its process gone from this host."""
    if holder is None:
        return True
    if (now if now is not None else time.time()) - holder.heartbeat > stale_after:
        return True
    if holder.host == socket.gethostname():
        try:
            os.kill(holder.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:   # alive, another user's
            return False
    return False


# ---------------------------------------------------------------------------------------------- backends

class _LocalFile:
    def __init__(self, where: Location):
        self.path = where.path

    def create(self, data: bytes) -> Optional[str]:
        """Write the holder to a private file, then hard-link it to the lock name: the link fails if the
        lock exists, and a lock file never exists half-written (a kill leaves the private file only)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = private_copy(self.path, data)
        try:
            os.link(tmp, self.path)
        except FileExistsError:
            return None
        finally:
            tmp.unlink(missing_ok=True)
        return "local"

    def read(self) -> tuple[Optional[bytes], Optional[str]]:
        try:
            return self.path.read_bytes(), "local"
        except FileNotFoundError:
            return None, None

    def replace(self, data: bytes, tag: str, token: str) -> Optional[str]:
        raw, _ = self.read()
        holder = Holder.parse(raw) if raw is not None else None
        if holder is None or holder.token != token:
            return None
        Location(str(self.path)).write_bytes(data)
        return "local"

    def remove(self, tag: str, token: str) -> bool:
        """Remove the lock only if it is still ``token``'s: rename it aside, check, put back otherwise."""
        aside = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex[:8]}.removed")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return False
        holder = Holder.parse(aside.read_bytes())
        if holder is not None and holder.token != token:
            with contextlib.suppress(OSError):   # someone else's fresh lock: put it back unless replaced again
                os.link(aside, self.path)
            aside.unlink(missing_ok=True)
            return False
        aside.unlink(missing_ok=True)
        return True


class _S3Object:
    def __init__(self, where: Location):
        from .aws import client

        self.s3 = client("s3", where.aws)
        self.bucket, _, self.key = where.uri[len("s3://"):].partition("/")

    def _failed(self, exc: Exception) -> bool:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code")
        return code in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409", "NoSuchKey", "404")

    def create(self, data: bytes) -> Optional[str]:
        from botocore.exceptions import ClientError

        try:
            return self.s3.put_object(Bucket=self.bucket, Key=self.key, Body=data, IfNoneMatch="*")["ETag"]
        except ClientError as exc:
            if self._failed(exc):
                return None
            raise

    def read(self) -> tuple[Optional[bytes], Optional[str]]:
        from botocore.exceptions import ClientError

        try:
            got = self.s3.get_object(Bucket=self.bucket, Key=self.key)
        except ClientError as exc:
            if self._failed(exc):
                return None, None
            raise
        return got["Body"].read(), got["ETag"]

    def replace(self, data: bytes, tag: str, token: str) -> Optional[str]:
        from botocore.exceptions import ClientError

        try:
            return self.s3.put_object(Bucket=self.bucket, Key=self.key, Body=data, IfMatch=tag)["ETag"]
        except ClientError as exc:
            if self._failed(exc):
                return None
            raise

    def remove(self, tag: str, token: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.s3.delete_object(Bucket=self.bucket, Key=self.key, IfMatch=tag)
        except ClientError as exc:
            if self._failed(exc):
                return False
            raise
        return True


# ---------------------------------------------------------------------------------------------- the lock

class Lock:
    """``with Lock(location, "refresh"):`` holds the lock for the block (see the module docstring)."""

    def __init__(self, where: Location, purpose: str, stale_after: float = 600.0, heartbeat: float = 30.0,
                 what: str = "", wait: float = 0.0):
        self.where, self.purpose, self.what = where, purpose, what or str(where.parent)
        self.stale_after, self.heartbeat, self.wait = stale_after, heartbeat, wait
        self.backend = _LocalFile(where) if where.is_local else _S3Object(where)
        self.holder: Optional[Holder] = None
        self._tag: Optional[str] = None
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._guard = threading.Lock()

    def acquire(self) -> Holder:
        """Take the lock; while a live holder has it, retry for up to ``wait`` seconds, then raise LockHeld."""
        deadline = time.monotonic() + self.wait
        while True:
            try:
                return self._try()
            except LockHeld:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))

    def _try(self) -> Holder:
        me = Holder.me(self.purpose)
        for _ in range(3):
            tag = self.backend.create(me.to_bytes())
            if tag is not None:
                self.holder, self._tag = me, tag
                self._start_heartbeat()
                return me
            raw, tag = self.backend.read()
            if raw is None:
                continue   # released between our create and read: try again
            other = Holder.parse(raw)
            if not stale(other, self.stale_after):
                raise LockHeld(f"{self.what} is locked by {other.describe()}; wait for it to finish, or remove "
                               f"{self.where} if that process is gone (it counts as stale after "
                               f"{self.stale_after:.0f}s without a heartbeat)")
            log.warning("lock: removing a stale lock %s left by %s", self.where,
                        other.describe() if other else "an unreadable holder")
            self.backend.remove(tag, other.token if other else "")
        raise LockHeld(f"{self.where}: could not take the lock (others keep taking it); try again")

    def _start_heartbeat(self) -> None:
        if self.heartbeat <= 0:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name=f"lock-heartbeat-{self.purpose}", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat):
            with self._guard:
                if self.holder is None:
                    return
                fresh = Holder(**{**asdict(self.holder), "heartbeat": time.time()})
                tag = self.backend.replace(fresh.to_bytes(), self._tag, self.holder.token)
                if tag is None:
                    log.warning("lock: %s is no longer ours (removed as stale?)", self.where)
                    return
                self.holder, self._tag = fresh, tag

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._guard:
            if self.holder is not None:
                self.backend.remove(self._tag, self.holder.token)
                self.holder = None

    def __enter__(self) -> Holder:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()

