"""One storage layer for every driver-side file: local paths and ``s3://`` URIs, chosen by URI.

:class:`Location` reads like :class:`pathlib.Path` (``/`` joins, ``name``, ``parent``, ``read_text``,
``iterdir``...) and ``str(location)`` is the URI Spark reads and writes (on EMR ``s3://`` is EMRFS;
locally the S3A connector, see :func:`ctr_pipeline.aws.spark_s3_conf`). Local locations are plain
paths (``os.fspath`` works, so libraries that want a file name get one); S3 goes through pyarrow's S3
file system, created in :mod:`ctr_pipeline.aws`.

Writes are whole-object: locally to a temporary name then renamed, on S3 one put (atomic by
itself). S3 has no rename: :meth:`Location.move_tree` copies then deletes and is for private staging
areas only; publishing relies on a record written last (see :mod:`ctr_pipeline.runs`).
"""
from __future__ import annotations

import contextlib
import fnmatch
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Iterator, Optional, Union

from .aws import AwsSettings, client, s3_filesystem
from .errors import UserError

S3_SCHEMES = ("s3", "s3a", "s3n")
PathLike = Union[str, os.PathLike, "Location"]


def is_remote(uri: Any) -> bool:
    """True for an object-store URI (``s3://``, ``s3a://``), false for local paths and ``file://``."""
    text = str(uri)
    return "://" in text and not text.startswith("file://")


def private_copy(path: Path, data: bytes) -> Path:
    """``data`` written and synced to a new hidden file beside ``path`` (``.<name>.<id>.tmp``), to be
    renamed or linked onto ``path`` by the caller, who removes it in any case."""
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}.tmp"
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    return tmp


@dataclass(frozen=True, order=True)
class Location:
    """A file or directory: ``local`` is an absolute path, else ``bucket``/``key`` on S3."""

    uri: str
    aws: AwsSettings = field(default_factory=AwsSettings, compare=False)

    # ------------------------------------------------------------------------------ construction
    @classmethod
    def of(cls, where: PathLike, aws: Optional[AwsSettings] = None) -> "Location":
        """A Location for a path, a ``file://`` or ``s3://`` URI, or another Location."""
        if isinstance(where, Location):
            return where if aws is None or where.is_local else Location(where.uri, aws)
        text = os.fspath(where) if isinstance(where, os.PathLike) else str(where)
        scheme, sep, rest = text.partition("://")
        if not sep:
            return cls(str(Path(text).expanduser().resolve()))
        if scheme == "file":
            return cls(str(Path(rest).resolve()))
        if scheme not in S3_SCHEMES:
            raise UserError(f"{text}: unsupported storage scheme {scheme!r}; use a local path or s3://bucket/prefix")
        bucket, _, key = rest.partition("/")
        if not bucket:
            raise UserError(f"{text}: no bucket name; use s3://bucket/prefix")
        key = "/".join(part for part in key.split("/") if part)
        return cls(f"s3://{bucket}/{key}" if key else f"s3://{bucket}", aws or AwsSettings.from_env())

    @property
    def is_local(self) -> bool:
        return not self.uri.startswith("s3://")

    @property
    def path(self) -> Path:
        """The local path (only for local locations)."""
        if not self.is_local:
            raise TypeError(f"{self.uri} is not a local path")
        return Path(self.uri)

    def __fspath__(self) -> str:
        return os.fspath(self.path)

    def __str__(self) -> str:
        return self.uri

    def __truediv__(self, name: str) -> "Location":
        name = str(name).strip("/")
        if self.is_local:
            return Location(str(self.path / name), self.aws)
        return Location(f"{self.uri}/{name}" if name else self.uri, self.aws)

    @property
    def name(self) -> str:
        return self.uri.rstrip("/").rsplit("/", 1)[-1]

    @property
    def parent(self) -> "Location":
        if self.is_local:
            return Location(str(self.path.parent), self.aws)
        head = self.uri[len("s3://"):].rsplit("/", 1)
        return Location("s3://" + head[0], self.aws) if len(head) == 2 else self

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.name).suffix

    @property
    def stem(self) -> str:
        return PurePosixPath(self.name).stem

    # ------------------------------------------------------------------------------ S3 plumbing
    def _fs_path(self) -> tuple[Any, str]:
        return s3_filesystem(self.aws), self.uri[len("s3://"):]

    def _info(self) -> Any:
        from pyarrow import fs as pafs

        filesystem, key = self._fs_path()
        info = filesystem.get_file_info(key)
        return info, pafs.FileType

    # ------------------------------------------------------------------------------ queries
    def exists(self) -> bool:
        if self.is_local:
            return self.path.exists()
        info, kinds = self._info()
        return info.type != kinds.NotFound

    def is_dir(self) -> bool:
        if self.is_local:
            return self.path.is_dir()
        info, kinds = self._info()
        return info.type == kinds.Directory

    def is_file(self) -> bool:
        if self.is_local:
            return self.path.is_file()
        info, kinds = self._info()
        return info.type == kinds.File

    def iterdir(self) -> list["Location"]:
        """Direct children (files and directories), sorted by name; [] when absent."""
        if self.is_local:
            return [Location(str(p), self.aws) for p in sorted(self.path.iterdir())] if self.path.is_dir() else []
        from pyarrow import fs as pafs

        filesystem, key = self._fs_path()
        try:
            infos = filesystem.get_file_info(pafs.FileSelector(key, recursive=False, allow_not_found=True))
        except FileNotFoundError:
            return []
        return sorted((Location("s3://" + i.path.rstrip("/"), self.aws) for i in infos), key=lambda loc: loc.uri)

    def glob(self, pattern: str) -> list["Location"]:
        """Direct children whose name matches a shell pattern (``part-*``)."""
        return [c for c in self.iterdir() if fnmatch.fnmatchcase(c.name, pattern)]

    def parquet_parts(self) -> list["Location"]:
        """The Parquet part files below this directory, as Spark or the driver wrote them (not _SUCCESS, .crc
        or other files)."""
        return [f for f in self.files() if f.name.endswith(".parquet") and not f.name.startswith((".", "_"))]

    def files(self) -> list["Location"]:
        """Every file below this directory, recursively, sorted."""
        if self.is_local:
            return [Location(str(p), self.aws) for p in sorted(self.path.rglob("*")) if p.is_file()]
        from pyarrow import fs as pafs

        filesystem, key = self._fs_path()
        infos = filesystem.get_file_info(pafs.FileSelector(key, recursive=True, allow_not_found=True))
        return sorted((Location("s3://" + i.path, self.aws) for i in infos if i.type == pafs.FileType.File),
                      key=lambda loc: loc.uri)

    # ------------------------------------------------------------------------------ read / write
    def read_bytes(self) -> bytes:
        """The whole file. On S3 one GET, so a concurrent rewrite is seen whole or not at all (pyarrow's
        streams read in ranges, which could stitch two versions together)."""
        if self.is_local:
            return self.path.read_bytes()
        from botocore.exceptions import ClientError

        bucket, _, key = self.uri[len("s3://"):].partition("/")
        try:
            return client("s3", self.aws).get_object(Bucket=bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                raise FileNotFoundError(self.uri) from None
            raise

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    def write_bytes(self, data: bytes) -> None:
        """Write the whole file atomically: a reader sees the old content or the new, never a part."""
        if self.is_local:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = private_copy(self.path, data)
            try:
                os.replace(tmp, self.path)
            finally:
                tmp.unlink(missing_ok=True)
            return
        filesystem, key = self._fs_path()
        with filesystem.open_output_stream(key) as fh:
            fh.write(data)

    def write_text(self, text: str, encoding: str = "utf-8") -> None:
        self.write_bytes(text.encode(encoding))

    def mkdir(self, parents: bool = True, exist_ok: bool = True) -> None:
        """Create a local directory; a no-op on S3, where directories are key prefixes."""
        if self.is_local:
            self.path.mkdir(parents=parents, exist_ok=exist_ok)

    # ------------------------------------------------------------------------------ delete / move
    def unlink(self, missing_ok: bool = True) -> None:
        if self.is_local:
            self.path.unlink(missing_ok=missing_ok)
            return
        filesystem, key = self._fs_path()
        try:
            filesystem.delete_file(key)
        except FileNotFoundError:
            if not missing_ok:
                raise

    def rmtree(self) -> None:
        """Remove a directory and everything below it (nothing happens when it is absent)."""
        if self.is_local:
            shutil.rmtree(self.path, ignore_errors=True)
            return
        filesystem, key = self._fs_path()
        filesystem.delete_dir_contents(key, missing_dir_ok=True)
        with contextlib.suppress(FileNotFoundError, OSError):  # a directory marker object, if any
            filesystem.delete_dir(key)

    def move_to(self, dest: "Location") -> None:
        """Move one file or directory: a rename locally; on S3 a server-side copy and delete per object
        (not atomic: for private staging areas only)."""
        if self.is_local != dest.is_local:
            raise ValueError(f"cannot move {self.uri} to {dest.uri}: both must be local or both on S3")
        if self.is_local:
            dest.path.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.path, dest.path)
            return
        filesystem, _ = self._fs_path()
        sources = self.files() or [self]
        for src in sources:
            target = dest if src is self else dest / src.uri[len(self.uri) + 1:]
            filesystem.move(src._fs_path()[1], target._fs_path()[1])
        if sources[0] is not self:
            self.rmtree()

    def touch(self) -> None:
        """Create an empty file (replacing any content)."""
        self.write_bytes(b"")

    # ------------------------------------------------------------------------------ local bridges
    @contextlib.contextmanager
    def local_path(self) -> Iterator[Path]:
        """A local copy of this file or directory for a library that wants a path (read only)."""
        if self.is_local:
            yield self.path
            return
        with tempfile.TemporaryDirectory(prefix="ctr-storage-") as tmp:
            target = Path(tmp) / (self.name or "root")
            files = self.files()
            if files:
                for src in files:
                    out = target / src.uri[len(self.uri) + 1:]
                    out.parent.mkdir(parents=True, exist_ok=True)
                    out.write_bytes(src.read_bytes())
            else:
                target.write_bytes(self.read_bytes())
            yield target

    def upload_tree(self, local_dir: Union[str, Path]) -> None:
        """Copy a local directory's files below this location (file by file, each one atomic)."""
        base = Path(local_dir)
        for path in sorted(base.rglob("*")):
            if path.is_file():
                (self / path.relative_to(base).as_posix()).write_bytes(path.read_bytes())
