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


def tree_rss(proc: psutil.Process) -> int:
    """Resident bytes of a process and all its descendants (JVM and Python workers included)."""
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total


def run_measured(cmd: Sequence[str], cwd: Optional[Path] = None, interval: float = 0.25) -> dict:
    """Run ``cmd``; return wall seconds, exit code, peak summed RSS of its process tree (bytes), output."""
    start = time.perf_counter()
    proc = subprocess.Popen(list(cmd), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ps = psutil.Process(proc.pid)
    peak = [0]

    def sample():
        while proc.poll() is None:
            try:
                peak[0] = max(peak[0], tree_rss(ps))
            except psutil.NoSuchProcess:
                return
            time.sleep(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    sampler.join()
    return {"seconds": time.perf_counter() - start, "returncode": proc.returncode, "peak_rss_bytes": peak[0],
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
