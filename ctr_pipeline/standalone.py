"""Start and stop a real Spark standalone cluster (one master, one worker) on 127.0.0.1.

pip's pyspark ships ``sbin/spark-daemon.sh`` but not start-master.sh, so the daemons are started
through it directly. Used by the distributed-mode tests and by ``ctr-pipeline cluster start|stop``.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Optional

from .errors import UserError

MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StandaloneCluster:
    """A master and one worker as separate daemon processes; use as a context manager.

    ``workdir`` holds logs, pid files and the worker's scratch space (kept for inspection).
    """

    def __init__(self, workdir: str | Path, cores: int = 2, memory: str = "4g",
                 port: Optional[int] = None, webui_port: Optional[int] = None):
        self.workdir = Path(workdir).resolve()
        self.cores, self.memory = cores, memory
        self.port = port or free_port()
        self.webui_port = webui_port or free_port()
        self.worker_webui_port = free_port()

    @property
    def url(self) -> str:
        return f"spark://127.0.0.1:{self.port}"

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        home = spark_home()
        for name in ("logs", "pids", "work", "tmp"):
            (self.workdir / name).mkdir(parents=True, exist_ok=True)
        # the daemons' temporary files (and the worker's local directories, which default to them) stay
        # in the cluster's directory: Java ignores TMPDIR
        env["SPARK_DAEMON_JAVA_OPTS"] = " ".join(filter(None, [env.get("SPARK_DAEMON_JAVA_OPTS", ""),
                                                               f"-Djava.io.tmpdir={self.workdir / 'tmp'}"]))
        env.update(SPARK_HOME=str(home), SPARK_LOG_DIR=str(self.workdir / "logs"),
                   SPARK_PID_DIR=str(self.workdir / "pids"), SPARK_WORKER_DIR=str(self.workdir / "work"),
                   SPARK_LOCAL_IP="127.0.0.1", SPARK_IDENT_STRING=f"ctr{self.port}")
        return env

    def _daemon(self, action: str, cls: str, *args: str) -> None:
        script = spark_home() / "sbin" / "spark-daemon.sh"
        cmd = ["bash", str(script), action, cls, "1", *args]
        proc = subprocess.run(cmd, env=self._env(), capture_output=True, text=True, timeout=120)
        if proc.returncode != 0 and action == "start":
            raise UserError(f"could not start {cls.rsplit('.', 1)[-1]}: {proc.stdout.strip()} {proc.stderr.strip()}"
                            f" (logs in {self.workdir / 'logs'})")

    def master_state(self) -> Optional[dict]:
        """The master's JSON status page, or None while it is not answering."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.webui_port}/json/", timeout=2) as resp:
                return json.loads(resp.read().decode())
        except OSError:
            return None

    def _wait(self, what: str, ready, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return
            time.sleep(0.5)
        self.stop()
        raise UserError(f"standalone {what} did not come up in {timeout:.0f}s (logs in {self.workdir / 'logs'})")

    def start(self, timeout: float = 90.0) -> "StandaloneCluster":
        self._daemon("start", MASTER_CLASS, "--host", "127.0.0.1", "--port", str(self.port),
                     "--webui-port", str(self.webui_port))
        self._wait("master", lambda: self.master_state() is not None, timeout)
        self._daemon("start", WORKER_CLASS, "--host", "127.0.0.1", "--cores", str(self.cores),
                     "--memory", self.memory, "--webui-port", str(self.worker_webui_port), self.url)
        self._wait("worker", lambda: any(w.get("state") == "ALIVE"
                                         for w in (self.master_state() or {}).get("workers", [])), timeout)
        return self

    def stop(self) -> None:
        self._daemon("stop", WORKER_CLASS)
        self._daemon("stop", MASTER_CLASS)

    def __enter__(self) -> "StandaloneCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
