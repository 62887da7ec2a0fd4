"""Checkpoint storage: a local directory or an S3 prefix, written atomically, read by name.

Every file goes through :mod:`ctr_pipeline.storage`: locally a temporary name renamed into place, on
S3 one put (atomic by itself), so a reader never sees half a checkpoint. The store is picklable (its
location carries only the URI and the AWS region/endpoint), so XGBoost's rank 0 writes checkpoints
from the Spark task that trains, on any host that can reach the location.
"""
from __future__ import annotations

from typing import Optional, Union

from ctr_pipeline.storage import Location

from .core import checkpoint_name, newest_checkpoint


class CheckpointStore:
    def __init__(self, where: Union[str, Location]):
        if not isinstance(where, Location) and "://" in str(where) and \
                not str(where).startswith(("file://", "s3://", "s3a://")):
            raise ValueError(f"checkpoint location {where!r}: use a local path or s3://bucket/prefix")
        self.root = Location.of(where)
        self.uri = self.root.uri

    def put(self, rounds: int, data: bytes) -> str:
        name = checkpoint_name(rounds)
        (self.root / name).write_bytes(data)
        return name

    def names(self) -> list[str]:
        return [child.name for child in self.root.iterdir()]

    def get(self, name: str) -> bytes:
        return (self.root / name).read_bytes()

    def newest(self) -> Optional[tuple[int, bytes]]:
        """(rounds, booster bytes) of the newest checkpoint, or None."""
        found = newest_checkpoint(self.names())
        return None if found is None else (found[0], self.get(found[1]))

    def clear(self) -> None:
        for child in self.root.iterdir():
            child.unlink()
