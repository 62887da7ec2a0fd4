"""A trained model as scoring and refreshing need it, wherever it lives: a run directory or a registry
version. Both give the same files: the booster, the fitted feature transform, the feature map, the
train summary of the features (for drift figures) and ``info`` (the run's configuration, the training
metadata, the metrics, the lineage).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Optional

from ..aws import AwsSettings
from ..errors import UserError
from ..storage import Location

BOOSTER = "booster.ubj"
TRANSFORM = "transform"
FEATURE_MAP = "feature_map.tsv"
FEATURES_SUMMARY = "features_summary.json"


@dataclass
class ModelBundle:
    label: str                  # how messages and lineage name it: a run directory or REGISTRY@vN
    booster: Location
    transform: Location
    feature_map: Location
    features_summary: Optional[Location]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def config(self) -> dict[str, Any]:
        """The configuration the model was made with (input layout, features, sampling, training...)."""
        return self.info.get("config", {})

    def load_booster(self):
        import xgboost

        booster = xgboost.Booster()
        booster.load_model(bytearray(self.booster.read_bytes()))
        return booster


def from_run(root: Location) -> ModelBundle:
    """The model of a run directory with complete features and train stages (metrics when evaluated)."""
    from ..runs import RunDir

    run = RunDir(root)
    for stage in ("features", "train"):
        if not run.is_complete(stage):
            raise UserError(f"{root}: no complete '{stage}' stage in this run directory; finish it with "
                            f"'ctr-pipeline run --out {root}' or name a registry version (REGISTRY@champion)")
    manifest = run.manifest()
    feats, model = run.path_of("features"), run.path_of("train")
    sample = manifest["stages"].get("sample", {})
    info = {"config": manifest.get("config", {}),
            "training": json.loads((model / "metadata.json").read_text()),
            "metrics": (manifest["stages"].get("evaluate", {}).get("details", {}).get("metrics", {})
                        if run.is_complete("evaluate") else {}),
            "source_run": root.uri,
            "data_window": [f["path"] for f in sample.get("details", {}).get("input", {}).get("files", [])],
            "tokens": {s: manifest["stages"][s]["token"] for s in ("sample", "features", "train")
                       if s in manifest["stages"]}}
    summary = feats / "summary.json"
    return ModelBundle(root.uri, model / BOOSTER, feats / "transform", feats / FEATURE_MAP,
                       summary if summary.exists() else None, info)


def from_version(directory: Location, label: str) -> ModelBundle:
    """A registry version directory (see :mod:`.store`)."""
    info = json.loads((directory / "model.json").read_text())
    summary = directory / FEATURES_SUMMARY
    return ModelBundle(label, directory / BOOSTER, directory / TRANSFORM, directory / FEATURE_MAP,
                       summary if summary.exists() else None, info)


def resolve(text: str, aws: Optional[AwsSettings] = None) -> ModelBundle:
    """``--model`` as a user gives it: a run directory, ``REGISTRY@vN`` or ``REGISTRY@ALIAS``."""
    from .core import parse_reference
    from .store import Registry

    ref = parse_reference(text)
    if ref.selector is None:
        root = Location.of(ref.where, aws)
        if not (root / "manifest.json").exists():
            hint = " (a registry needs @VERSION or @ALIAS, e.g. @champion)" if Registry.is_registry(root) else ""
            raise UserError(f"--model {text}: neither a run directory (no manifest.json) nor REGISTRY@VERSION"
                            f"{hint}")
        return from_run(root)
    return Registry.open(ref.where, aws).bundle(ref.selector)
