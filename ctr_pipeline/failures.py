"""One line for a failure that is not a user mistake: what failed and, for known causes, what to do.

Spark reports a failed task as a Py4J error whose text holds the whole Java and Python stack; the line a
user needs is buried in it. :func:`explain` reads that text (pure string work, no Spark) and returns the
cause in a sentence: known causes (a truncated or corrupt compressed file, a missing input file, a full
disk, a Java out-of-memory, an executor lost beyond Spark's retries) by name with the setting or action
to change; anything else as the innermost error line.
"""
from __future__ import annotations

import re
from typing import Callable, Optional

MAX_LINE = 300


def failure_reason(exc: BaseException) -> str:
    """The innermost error line of ``exc``'s text (a Spark task's Python or Java error, if any)."""
    text = str(exc)
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
    m = re.search(r"(?:java\.io\.FileNotFoundException|FileNotFoundError)[:\s]+(?:\[Errno 2\][^']*)?(?:File )?'?(\S+)",
                  text)
    if not m:
        return None
    name = m.group(1).rstrip(".,:;'")
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
    m = re.search(r"Task (\S+) in stage (\S+) failed (\d+) times.*?(ExecutorLostFailure[^\n]*)", text, re.DOTALL)
    if not m:
        return None
    return (f"a Spark executor was lost {m.group(3)} times running one task (stage {m.group(2)}), more than "
            f"Spark retries ({m.group(4)[:160].strip()}): check the workers' logs for a crash or a kill (often "
            "memory: raise spark.conf's spark.executor.memory), then run the same command again")


KNOWN: tuple[Callable[[str], Optional[str]], ...] = (_corrupt, _disk, _memory, _lost, _missing)


def explain(exc: BaseException) -> str:
    """One line saying why ``exc`` happened: a known cause with what to do, else the innermost error."""
    text = str(exc)
    for cause in (exc.__cause__, exc.__context__):
        if cause is not None:
            text += "\n" + str(cause)
    for known in KNOWN:
        line = known(text)
        if line:
            return line
    return failure_reason(exc)
