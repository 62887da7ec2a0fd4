"""Check for Java 17+ before any Spark work, with one line that says how to install it."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from typing import Optional

from .errors import UserError

INSTALL_HINT = ("install Java 17 (e.g. 'apt-get install openjdk-17-jre-headless' or 'brew install openjdk@17') "
                "and put it on PATH or set JAVA_HOME")


def java_binary() -> Optional[str]:
    """The java that Spark will use: $JAVA_HOME/bin/java if set, else java on PATH."""
    home = os.environ.get("JAVA_HOME")
    if home and os.access(os.path.join(home, "bin", "java"), os.X_OK):
        return os.path.join(home, "bin", "java")
    return shutil.which("java")


def parse_java_major(version_output: str) -> Optional[int]:
    """Major version from ``java -version`` output: '1.8.0_392' -> 8, '17.0.15' -> 17."""
    match = re.search(r'version "([^"]+)"', version_output)
    if not match:
        return None
    parts = match.group(1).split(".")
    major = parts[1] if parts[0] == "1" and len(parts) > 1 else parts[0]
    digits = re.match(r"\d+", major)
    return int(digits.group(0)) if digits else None


def check_java(minimum: int = 17) -> int:
    """Return the Java major version, or raise UserError in one line when missing or too old."""
    binary = java_binary()
    if binary is None:
        raise UserError(f"java not found; {INSTALL_HINT}")
    try:
        out = subprocess.run([binary, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UserError(f"{binary} -version failed ({exc}); {INSTALL_HINT}") from None
    major = parse_java_major(out.stderr + out.stdout)
    if major is None or major < minimum:
        raise UserError(f"java {major if major else 'of unknown version'} found at {binary}, need {minimum} or "
                        f"newer; {INSTALL_HINT}")
    return major
