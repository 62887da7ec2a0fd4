"""One line for a failure that is not a user mistake: what failed and, for known causes, what to do.

Spark reports a failed task as a Py4J error whose text holds the whole Java and Python stack; the line a
user needs is buried in it. :func:`explain` reads that text (pure string work, no Spark) and returns the
cause in a sentence: known causes (a truncated or corrupt compressed file, a missing input file, a full
disk, a Java out-of-memory, an executor lost beyond Spark's retries) by name with the setting or action
to change; anything else as the innermost error line.
"""
from __future__ import annotations

import re
import traceback
from typing import Callable, Optional

MAX_LINE = 300


class _Unreadable(str):
    """The text of an exception whose ``str`` failed (py4j asks the JVM for it, and the JVM may be gone)."""


def text_of(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception as inner:   # noqa: BLE001 - any failure to read the text is itself the finding
        return _Unreadable(f"{type(exc).__name__} (its text could not be read: {type(inner).__name__}: {inner})")


def failure_reason(exc: BaseException) -> str:
    """The innermost error line of ``exc``'s text (a Spark task's Python or Java error, if any)."""
    text = text_of(exc)
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line and ("Error:" in line or "Exception:" in line) and not line.startswith("at "):
            return line[:MAX_LINE]
    return (text.strip().splitlines() or [type(exc).__name__])[0][:MAX_LINE]


def _file_in(text: str) -> Optional[str]:
    """The file Spark says it was reading when the task failed."""
    m = re.search(r"error while reading file (\S+?)\.?(?:\s|$)", text, re.IGNORECASE)
    if m:
        return m.group(1)
    m = re.search(r"\b((?:file|s3a?|hdfs):/\S+?\.(?:gz|bz2|zst|zstd|snappy|lz4|deflate))\b", text)
    return m.group(1) if m else None


_CORRUPT = re.compile(r"Unexpected end of input stream|Compressed file ended before the end-of-stream marker|"
                      r"Not in GZIP format|incorrect header check|invalid stored block lengths|"
                      r"invalid distance too far back|Corrupt GZIP trailer|invalid block type|"
                      r"end of stream|unexpected end of file", re.IGNORECASE)


def corrupt_compressed(text: str) -> bool:
    """Whether an error's text says a compressed stream ended early or is damaged."""
    return bool(_CORRUPT.search(text)) and bool(re.search(r"EOFException|ZipException|gzip|IOException|codec",
                                                          text, re.IGNORECASE))


def _corrupt(text: str) -> Optional[str]:
    if not corrupt_compressed(text):
        return None
    where = _file_in(text)
    what = f"input file {where}" if where else "a compressed input file"
    return (f"{what} is truncated or corrupt ({_CORRUPT.search(text).group(0)}); the run stopped rather "
            "than drop its rows: fetch the file again, or move it out of the input and run again")


def _missing(text: str) -> Optional[str]:
    m = re.search(r"(?:java\.io\.FileNotFoundException|SparkFileNotFoundException|FileNotFoundError)[:\s]+"
                  r"(?:\[Errno 2\][^']*)?(?:File )?'?(\S+)", text)
    if not m:
        return None
    name = m.group(1).rstrip(".,:;'")
    name = name[len("file:"):] if name.startswith("file:/") else name
    return (f"file {name} went missing or became unreadable while the run read it: check that nothing "
            "moves or deletes the input (or the run directory) during a run, then run the same command again")


def _disk(text: str) -> Optional[str]:
    if "No space left on device" not in text:
        return None
    return ("out of disk space (No space left on device) in the run directory or in Spark's scratch space: "
            "free space, or point spark.conf's spark.local.dir (or SPARK_LOCAL_DIRS) at a larger disk, then run "
            "the same command again (finished stages are kept)")


def _memory(text: str) -> Optional[str]:
    m = re.search(r"java\.lang\.OutOfMemoryError: ?([^\n]*)", text)
    if not m:
        return None
    return (f"Java ran out of memory (OutOfMemoryError: {m.group(1).strip() or 'heap'}): raise "
            "spark.driver_memory (local master) or spark.conf's spark.executor.memory (cluster), then run the "
            "same command again")


def _lost(text: str) -> Optional[str]:
    removed = re.search(r"Master removed our application: (\w+)", text)
    if removed:
        return (f"the cluster's master removed the application ({removed.group(1)}) after its executors kept "
                "failing (spark.deploy.maxExecutorRetries): check the workers' logs for a crash or a kill (often "
                "memory: raise spark.conf's spark.executor.memory), then run the same command again")
    m = re.search(r"Task (\S+) in stage (\S+) failed (\d+) times.*?(ExecutorLostFailure[^\n]*)", text, re.DOTALL)
    if not m:
        return None
    return (f"a Spark executor was lost {m.group(3)} times running one task (stage {m.group(2)}), more than "
            f"Spark retries ({m.group(4)[:160].strip()}): check the workers' logs for a crash or a kill (often "
            "memory: raise spark.conf's spark.executor.memory), then run the same command again")


KNOWN: tuple[Callable[[str], Optional[str]], ...] = (_corrupt, _disk, _memory, _lost, _missing)


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


def jvm_gone(exc: BaseException) -> bool:
    """Whether ``exc`` is py4j finding Spark's JVM gone (it died: an OutOfMemoryError, a kill)."""
    for e in _chain(exc):
        text = text_of(e)
        if ("Answer from Java side is empty" in text or type(e).__name__ == "Py4JNetworkError"
                or (isinstance(text, _Unreadable) and "ConnectionRefusedError" in text)):
            return True
        if isinstance(e, ConnectionError) and any("py4j" in frame.filename
                                                  for frame in traceback.extract_tb(e.__traceback__)):
            return True
    return False


def _last_error(log: str) -> Optional[str]:
    """The first line of the last ERROR record, and the exception line that follows it, in a JVM log."""
    lines = log.splitlines()
    for i in range(len(lines) - 1, -1, -1):
        if " ERROR " in lines[i]:
            detail = next((line.strip() for line in lines[i + 1:i + 3] if "Exception" in line or "Error" in line), "")
            return f"{lines[i].split(' ERROR ', 1)[1].strip()} {detail}".strip()[:MAX_LINE]
    return None


def explain(exc: BaseException, jvm_log: str = "") -> str:
    """One line saying why ``exc`` happened: a known cause with what to do, else the innermost error.

    ``jvm_log`` is what the driver JVM logged at ERROR (:func:`ctr_pipeline.scratch.jvm_errors`): when
    py4j finds the JVM gone, the cause is there, not in ``exc``.
    """
    text = "\n".join(text_of(e) for e in _chain(exc))
    if jvm_gone(exc):
        for known in KNOWN:
            line = known(jvm_log)
            if line:
                return f"Spark's driver JVM died: {line}"
        last = _last_error(jvm_log)
        return ("Spark's driver JVM died" + (f" after logging: {last}" if last else
                " without logging an error (killed from outside? the kernel's out-of-memory killer, for one: "
                "see dmesg; raise the machine's memory or lower spark.driver_memory)")
                + "; run the same command again once fixed (finished stages are kept)")
    for known in KNOWN:
        line = known(text)
        if line:
            return line
    return failure_reason(exc)
