"""Shared benchmark plumbing: peak memory of a process tree, demo data cache, JSON results."""
from __future__ import annotations

import json
import platform
import subprocess
import threading
import time
from pathlib import Path
from typing import Optional, Sequence

import psutil

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DATA = ROOT / "data" / "bench"


def resident(p: psutil.Process) -> int:
    """A process's proportional set size (PSS): its private pages plus its share of the pages it shares.

    Summed over a tree, PSS counts each shared page once. RSS would count it once per process: a
    forked child (pyspark's Python workers, or the JVM's fork before it execs `chmod` while Hadoop
    writes a local file) would add all of its parent's pages again. Falls back to RSS where the
    kernel will not show the process's smaps, or on a platform without PSS.
    """
    try:
        return p.memory_full_info().pss
    except (psutil.AccessDenied, AttributeError):
        return p.memory_info().rss


def tree_memory(proc: psutil.Process) -> int:
    """Resident bytes (PSS) of a process and all its descendants (JVM and Python workers included)."""
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += resident(p)
        except psutil.NoSuchProcess:
            continue
    return total


def run_measured(cmd: Sequence[str], cwd: Optional[Path] = None, interval: float = 0.25) -> dict:
    """Run ``cmd``; return wall seconds, exit code, peak summed PSS of its process tree (bytes), output."""
    start = time.perf_counter()
    proc = subprocess.Popen(list(cmd), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ps = psutil.Process(proc.pid)
    peak = [0]

    def sample():
        while proc.poll() is None:
            try:
                peak[0] = max(peak[0], tree_memory(ps))
            except psutil.NoSuchProcess:
                return
            time.sleep(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    sampler.join()
    return {"seconds": time.perf_counter() - start, "returncode": proc.returncode, "peak_memory_bytes": peak[0],
            "stdout": out, "stderr": err}


def demo_file(rows: int, seed: int = 7) -> Path:
    """Demo data of ``rows`` rows, generated once into data/bench/."""
    from ctr_pipeline.demo_data import generate

    path = DATA / f"demo_{rows}_{seed}.tsv.gz"
    if not path.exists():
        generate(rows, path, seed=seed)
    return path


def write_result(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": name, "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "machine": {"cpus": psutil.cpu_count(), "memory_bytes": psutil.virtual_memory().total,
                           "python": platform.python_version()}, **payload}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path
