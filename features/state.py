"""The fitted feature transform: layout of the vector and the tables fitted on train (pure).

Vector layout, in index order: one slot per numeric column, per time feature, per count feature, per
target-encoded column; then per vocabulary column its values and one out-of-vocabulary index; then the
shared hash block; then the shared cross block.

Saved as a directory: ``transform.json`` (class, format version, library versions, spec and its hash,
the layout and small tables) plus ``tables/*.parquet`` for vocabularies, counts and target tables, so a
vocabulary of millions of values is not a JSON document.
"""
from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pandas as pd

from ctr_pipeline.errors import InputDataError
from ctr_pipeline.stage import json_default
from ctr_pipeline.storage import Location

from .spec import FeatureSpec

log = logging.getLogger("ctr_pipeline.features")
FORMAT_VERSION = 1
CLASS_NAME = "features.state.FittedTransform"


@dataclass(frozen=True)
class Slot:
    """A one-index feature: ``kind`` is numeric:raw|log1p|quantile, time:hour|weekday, count or ctr."""

    index: int
    name: str
    kind: str
    source: str


@dataclass(frozen=True)
class Totals:
    """Train rows and clicks overall and per target-encoding fold (for out-of-fold priors)."""

    rows: int
    clicks: int
    fold_rows: tuple[int, ...] = ()
    fold_clicks: tuple[int, ...] = ()

    @property
    def ctr(self) -> float:
        return self.clicks / self.rows if self.rows else 0.0


@dataclass
class FittedTransform:
    spec: FeatureSpec
    width: int
    slots: list[Slot]
    totals: Totals
    quantiles: dict[str, list[float]] = field(default_factory=dict)
    vocab_offsets: dict[str, int] = field(default_factory=dict)
    vocab: dict[str, pd.Index] = field(default_factory=dict)      # column -> values (index order)
    counts: dict[str, pd.Series] = field(default_factory=dict)    # column -> count, indexed by value
    target: dict[str, pd.DataFrame] = field(default_factory=dict)  # column -> n, clicks, n0.., c0.. by value
    hash_offset: Optional[int] = None
    cross_offset: Optional[int] = None
    meta: dict[str, Any] = field(default_factory=dict)

    def oov_index(self, column: str) -> int:
        return self.vocab_offsets[column] + len(self.vocab[column])

    # ------------------------------------------------------------------------------------ persistence

    def save(self, path: "str | Path | Location") -> None:
        """Write ``transform.json`` and ``tables/*.parquet`` below ``path`` (a local path or S3 URI)."""
        path = Location.of(path)
        tables = {}
        for i, (col, values) in enumerate(self.vocab.items()):
            tables[f"vocab:{col}"] = _write(path, f"vocab-{i}", pd.DataFrame({"value": values.astype(object)}))
        for i, (col, series) in enumerate(self.counts.items()):
            tables[f"counts:{col}"] = _write(path, f"counts-{i}",
                                             pd.DataFrame({"value": series.index.astype(object), "n": series.values}))
        for i, (col, frame) in enumerate(self.target.items()):
            tables[f"target:{col}"] = _write(path, f"target-{i}", frame.reset_index(names="value"))
        doc = {"class": CLASS_NAME, "format_version": FORMAT_VERSION, "meta": self.meta,
               "spec": self.spec.to_dict(), "spec_hash": self.spec.digest(), "width": self.width,
               "slots": [vars(s) for s in self.slots], "totals": vars(self.totals),
               "quantiles": self.quantiles, "vocab_offsets": self.vocab_offsets,
               "hash_offset": self.hash_offset, "cross_offset": self.cross_offset, "tables": tables}
        (path / "transform.json").write_text(json.dumps(doc, indent=1, default=json_default))

    @classmethod
    def load(cls, path: "str | Path | Location") -> "FittedTransform":
        path = Location.of(path)
        doc_path = path / "transform.json"
        if not doc_path.is_file():
            raise InputDataError(f"{path}: no fitted feature transform here (transform.json is missing); "
                                 "run the features stage first")
        doc = json.loads(doc_path.read_text())
        if doc.get("class") != CLASS_NAME or doc.get("format_version") != FORMAT_VERSION:
            raise InputDataError(f"{doc_path}: a {doc.get('class')} format {doc.get('format_version')} transform; "
                                 f"this version reads {CLASS_NAME} format {FORMAT_VERSION}: refit the features")
        spec = FeatureSpec.from_dict(doc["spec"])
        if spec.digest() != doc["spec_hash"]:
            raise InputDataError(f"{doc_path}: spec_hash does not match the spec it stores (edited by hand?); "
                                 "refit the features")
        saved = doc.get("meta", {}).get("pandas")
        if saved and saved.split(".")[:2] != pd.__version__.split(".")[:2]:
            log.warning("%s was fitted with pandas %s, this is pandas %s: hash buckets come from pandas' hash "
                        "function; tests/test_features_core.py pins known buckets, run it if in doubt",
                        doc_path, saved, pd.__version__)
        tables = {k: pd.read_parquet(io.BytesIO((path / "tables" / v).read_bytes())) for k, v in doc["tables"].items()}
        totals = doc["totals"]
        return cls(
            spec=spec, width=doc["width"], slots=[Slot(**s) for s in doc["slots"]],
            totals=Totals(totals["rows"], totals["clicks"], tuple(totals["fold_rows"]), tuple(totals["fold_clicks"])),
            quantiles=doc["quantiles"], vocab_offsets=doc["vocab_offsets"],
            vocab={k.split(":", 1)[1]: pd.Index(t["value"].astype(object)) for k, t in tables.items()
                   if k.startswith("vocab:")},
            counts={k.split(":", 1)[1]: pd.Series(t["n"].to_numpy(), index=pd.Index(t["value"].astype(object)))
                    for k, t in tables.items() if k.startswith("counts:")},
            target={k.split(":", 1)[1]: t.set_index("value") for k, t in tables.items() if k.startswith("target:")},
            hash_offset=doc["hash_offset"], cross_offset=doc["cross_offset"], meta=doc["meta"])


def _write(path: Location, name: str, frame: pd.DataFrame) -> str:
    file = f"{name}.parquet"
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    (path / "tables" / file).write_bytes(buf.getvalue())
    return file

