"""Checkpoint storage: a local directory or an S3 prefix, written atomically, read by name.

Local writes go to a temporary name and are renamed into place (readers never see half a file); an S3
``put_object`` is atomic by itself. The store is picklable (only the URI travels), so XGBoost's rank 0
writes checkpoints from the Spark task that trains, on any host that can reach the URI.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Optional
from urllib.parse import urlparse

from .core import checkpoint_name, newest_checkpoint


class CheckpointStore:
    def __init__(self, uri: str):
        self.uri = uri.rstrip("/")
        parsed = urlparse(self.uri)
        self.s3 = parsed.scheme in ("s3", "s3a")
        if self.s3:
            self.bucket, self.prefix = parsed.netloc, parsed.path.lstrip("/")
        elif parsed.scheme not in ("", "file"):
            raise ValueError(f"checkpoint location {uri!r}: use a local path or s3://bucket/prefix")
        else:
            self.root = Path(parsed.path if parsed.scheme == "file" else self.uri)

    def _client(self):
        import boto3  # endpoint from AWS_ENDPOINT_URL when set (moto in tests)

        return boto3.client("s3")

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def put(self, rounds: int, data: bytes) -> str:
        name = checkpoint_name(rounds)
        if self.s3:
            self._client().put_object(Bucket=self.bucket, Key=self._key(name), Body=data)
            return name
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=self.root)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.root / name)
        return name

    def names(self) -> list[str]:
        if self.s3:
            pages = self._client().get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self._key(""))
            return [o["Key"].rsplit("/", 1)[-1] for page in pages for o in page.get("Contents", [])]
        return sorted(p.name for p in self.root.iterdir()) if self.root.is_dir() else []

    def get(self, name: str) -> bytes:
        if self.s3:
            return self._client().get_object(Bucket=self.bucket, Key=self._key(name))["Body"].read()
        return (self.root / name).read_bytes()

    def newest(self) -> Optional[tuple[int, bytes]]:
        """(rounds, booster bytes) of the newest checkpoint, or None."""
        found = newest_checkpoint(self.names())
        return None if found is None else (found[0], self.get(found[1]))

    def clear(self) -> None:
        for name in self.names():
            if self.s3:
                self._client().delete_object(Bucket=self.bucket, Key=self._key(name))
            else:
                (self.root / name).unlink()
