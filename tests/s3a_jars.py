"""Test-only: the Hadoop S3A connector jars that let local Spark read and write ``s3://`` on moto.

pip's pyspark has no S3A connector and Maven is out of reach here; the PyPI sdist
``sagemaker-pyspark==1.4.5`` carries ``hadoop-aws-3.3.1.jar`` (matching pyspark 3.5's Hadoop 3.3) and
``aws-java-sdk-bundle-1.11.901.jar``. They are fetched once with pip into ``.cache/s3a-jars/`` (ignored
by git) and never become a runtime dependency: on EMR, ``s3://`` is EMRFS.
"""
from __future__ import annotations

import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / ".cache" / "s3a-jars"
SDIST = "sagemaker-pyspark==1.4.5"
JARS = ("hadoop-aws-3.3.1.jar", "aws-java-sdk-bundle-1.11.901.jar")


def s3a_jars(cache: Path = CACHE) -> list[Path]:
    """Paths of the two jars, downloading and extracting them on first use (about 180 MB, seconds)."""
    paths = [cache / name for name in JARS]
    if all(p.is_file() for p in paths):
        return paths
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="s3a-jars-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
               "--no-build-isolation", SDIST, "-d", tmp]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            raise RuntimeError(f"could not fetch {SDIST} for the S3A jars: {done.stderr.strip()[-2000:]}")
        sdist = next(Path(tmp).glob("sagemaker_pyspark-*.tar.gz"))
        with tarfile.open(sdist) as tar:
            for member in tar.getmembers():
                name = member.name.rsplit("/", 1)[-1]
                if name in JARS:
                    source = tar.extractfile(member)
                    part = cache / f".{name}.part"
                    part.write_bytes(source.read())
                    part.replace(cache / name)
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise RuntimeError(f"{SDIST} no longer carries {', '.join(missing)}")
    return paths
