"""Per invocation: a log file of everything said, and one line on the console for a failure.

``with invocation_log(folder) as path, one_line_failures(path):`` writes every ctr_pipeline log record
(INFO and up) to ``folder/<UTC time>-<pid>.log`` (on S3 written locally and uploaded at the end); a
failure that is not a user mistake leaves its full trace there and reaches the console as a single
:class:`RunFailed` line naming the cause (:func:`ctr_pipeline.failures.explain`) and the log file.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from .errors import RunFailed, UserError
from .failures import explain, jvm_gone
from .redact import RedactSecrets, redact_text
from .scratch import jvm_errors
from .storage import Location

TRACE = "ctr_pipeline.trace"     # records of this logger go to the invocation log only, never the console


_UNWRITABLE: set[str] = set()   # invocation logs that could not be written (a full disk, say)


class _LogFile(logging.FileHandler):
    """A file handler that, when its file cannot be written, says so once and stops (Python's default
    prints every failed record's trace on the console: a 200-line dump per line when the disk is full)."""

    def __init__(self, path: Path, shown_as: str):
        super().__init__(path, encoding="utf-8")
        self.shown_as = shown_as

    def handleError(self, record: logging.LogRecord) -> None:
        if self.shown_as not in _UNWRITABLE:
            _UNWRITABLE.add(self.shown_as)
            logging.getLogger("ctr_pipeline").warning("cannot write the log file %s any more: %s",
                                                      self.shown_as, _current_error())

    def emit(self, record: logging.LogRecord) -> None:
        if self.shown_as not in _UNWRITABLE:
            super().emit(record)


def _current_error() -> str:
    exc = sys.exc_info()[1]
    return f"{type(exc).__name__}: {exc}" if exc else "unknown error"


def _trace_logger() -> logging.Logger:
    logger = logging.getLogger(TRACE)
    logger.propagate = False
    return logger


@contextlib.contextmanager
def invocation_log(folder: Location) -> Iterator[str]:
    """Everything the ctr_pipeline loggers say, at INFO and above, into a file in ``folder`` (local
    directly; on S3 written locally and uploaded at the end). Yields where it will be."""
    name = f"{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%SZ')}-{os.getpid()}.log"
    with contextlib.ExitStack() as stack:
        local = (folder.path if folder.is_local else
                 Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ctr-invocation-log-"))))
        local.mkdir(parents=True, exist_ok=True)
        handler = _LogFile(local / name, str(folder / name))
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        handler.setLevel(logging.INFO)
        handler.addFilter(RedactSecrets())
        logger, trace = logging.getLogger("ctr_pipeline"), _trace_logger()
        old_level = logger.level
        shown = {h: h.level for h in logger.handlers}     # the console keeps showing what it showed (-q)
        for h in shown:
            h.setLevel(max(h.level, old_level))
        logger.addHandler(handler)
        trace.addHandler(handler)
        logger.setLevel(min(old_level or logging.INFO, logging.INFO))
        _UNWRITABLE.discard(handler.shown_as)
        try:
            yield handler.shown_as
        finally:
            logger.removeHandler(handler)
            trace.removeHandler(handler)
            logger.setLevel(old_level)
            for h, level in shown.items():
                h.setLevel(level)
            handler.close()
            if not folder.is_local:
                (folder / name).write_bytes((local / name).read_bytes())


@contextlib.contextmanager
def one_line_failures(log_path: str) -> Iterator[None]:
    """User mistakes and interrupts pass through (their message is the line); anything else is logged
    with its full trace to the invocation log and raised again as one RunFailed line that names it."""
    try:
        yield
    except (UserError, KeyboardInterrupt) as exc:
        _trace_logger().error("stopped: %s", exc or type(exc).__name__)
        raise
    except Exception as exc:
        _trace_logger().error("failed:\n%s", traceback.format_exc())
        jvm_log = jvm_errors()
        if jvm_log and jvm_gone(exc):
            _trace_logger().error("Spark's driver JVM logged before it died:\n%s", jvm_log)
        line = str(exc) if isinstance(exc, RunFailed) else explain(exc, jvm_log)
        if log_path in _UNWRITABLE:       # the trace could not go to the run's log: put it where it can
            log_path = f"{trace_file(exc)}; the run's log {log_path} could not be written"
        raise RunFailed(f"{line} (full trace: {log_path})") from exc


def trace_file(exc: BaseException) -> str:
    """Write ``exc``'s trace to a new file in the system's temporary directory (for a failure outside any
    run directory); returns its path."""
    fd, path = tempfile.mkstemp(prefix="ctr-pipeline-failure-", suffix=".log")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(redact_text("".join(traceback.format_exception(exc))))
    return path
