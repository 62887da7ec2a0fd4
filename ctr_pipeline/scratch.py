"""One scratch directory per process for the JVMs it starts, removed when the process ends.

Java ignores ``TMPDIR``: without this, Spark's ``spark-*``/``blockmgr-*`` directories and the native
libraries lz4-java and snappy-java extract (``liblz4-java-*.so``, ``snappy-*.so``) land in ``/tmp``
and stay there whenever a JVM does not end cleanly. Pointing ``java.io.tmpdir`` of the driver (and,
on this machine, of its executors) at ``<tmp>/ctr-pipeline-<pid>-*`` keeps them in one place that
this process removes at exit; a process killed before it could is swept by the next one (its pid is
gone).
"""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path
from typing import Optional

PREFIX = "ctr-pipeline-"

_DIR: Optional[Path] = None


def process_scratch() -> Path:
    """This process's scratch directory, made (and stale ones swept) on first use."""
    global _DIR
    if _DIR is None or not _DIR.is_dir():
        root = Path(tempfile.gettempdir())
        sweep_stale(root)
        _DIR = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=root))
        atexit.register(remove, _DIR)
    return _DIR


def remove(path: Path) -> None:
    """Stop this process's Spark session (its JVM writes here until then), then remove ``path``."""
    stop_spark()
    shutil.rmtree(path, ignore_errors=True)


def stop_spark() -> None:
    import sys

    if "pyspark" not in sys.modules:
        return
    from pyspark import SparkContext

    if SparkContext._active_spark_context is not None:
        try:
            SparkContext._active_spark_context.stop()
        except Exception:   # noqa: BLE001 - at exit, a JVM already gone must not hide the removal
            pass


def owner_pid(name: str) -> Optional[int]:
    """The pid in a scratch directory's name ``ctr-pipeline-<pid>-<random>``, else None."""
    if not name.startswith(PREFIX):
        return None
    head = name[len(PREFIX):].split("-", 1)[0]
    return int(head) if head.isdigit() else None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # another user's live process
        return True
    return True


def sweep_stale(root: Path) -> list[Path]:
    """Remove scratch directories under ``root`` whose process is gone; returns what was removed."""
    removed = []
    try:
        entries = list(root.iterdir())
    except OSError:
        return removed
    for entry in entries:
        pid = owner_pid(entry.name)
        if pid is None or pid == os.getpid() or alive(pid) or not entry.is_dir():
            continue
        try:
            if entry.stat().st_uid != os.getuid():
                continue
        except OSError:
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    return removed


JVM_LOG = "jvm-errors.log"    # the driver JVM's ERROR lines (ctr_pipeline/log4j2.properties, -Dctr.jvm.log)


def jvm_errors(limit: int = 20_000) -> str:
    """The end of what this process's driver JVM logged at ERROR (empty if nothing, or no JVM)."""
    if _DIR is None:
        return ""
    try:
        with open(_DIR / JVM_LOG, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - limit))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""
