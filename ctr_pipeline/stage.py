"""What a stage receives and returns. Stage adapters import only this from the orchestration."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from .runs import RunDir
from .schema import Config
from .storage import Location


@dataclass
class StageContext:
    """``out`` is the stage's private staging directory (a local path or an S3 prefix): write
    everything there, Spark through ``str(out / name)``, other files through the
    :class:`~ctr_pipeline.storage.Location` methods; it is published whole."""

    spark: Any
    cfg: Config
    run: RunDir
    out: Location
    options: dict[str, Any] = field(default_factory=dict)  # per-invocation switches, e.g. resume
    final: Optional[Location] = None  # where ``out`` will be once published (for messages); default ``out``

    def __post_init__(self) -> None:
        if self.final is None:
            self.final = self.out

    def upstream_details(self, stage: str) -> dict[str, Any]:
        """``details`` recorded by a finished upstream stage (e.g. the sample stage's num_features)."""
        rec = self.run.stage_record(stage) or {}
        return rec.get("details", {})


@dataclass
class StageResult:
    """Row counts per output (rows) and anything worth recording in the manifest (details)."""

    rows: dict[str, int] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    summary: list[str] = field(default_factory=list)  # lines printed at the end of a run


def json_default(value: Any) -> Any:
    """``json.dumps(default=...)`` for numpy scalars in stage outputs (metrics, fitted tables)."""
    item = getattr(value, "item", None)
    if callable(item) and type(value).__module__ == "numpy":
        return item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
