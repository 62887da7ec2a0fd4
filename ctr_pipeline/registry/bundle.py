"""A trained model as scoring and refreshing need it, wherever it lives: a run directory or a registry
version. Both give the same files: the booster, the fitted feature transform, the feature map, the
train summary of the features (for drift figures), for a GBDT-leaf + LR model (``training.model:
gbdt_lr``) its logistic regression, and ``info`` (the run's configuration, the training metadata, the
metrics, the lineage).
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
LINEAR = "gbdt_lr.npz"   # a gbdt_lr model's logistic regression, beside the booster in a run and a version


@dataclass
class ModelBundle:
    label: str                  # how messages and lineage name it: a run directory or REGISTRY@vN
    booster: Location
    transform: Location
    feature_map: Location
    features_summary: Optional[Location]
    info: dict[str, Any] = field(default_factory=dict)
    linear: Optional[Location] = None   # a gbdt_lr model's logistic regression over the booster's leaves

    @property
    def config(self) -> dict[str, Any]:
        """The configuration the model was made with (input layout, features, sampling, training...)."""
        return self.info.get("config", {})

    def load_booster(self):
        import xgboost

        booster = xgboost.Booster()
        booster.load_model(bytearray(self.booster.read_bytes()))
        return booster

    def check_refreshable(self, what: str) -> None:
        """UserError when this is a gbdt_lr model: the refresh updater rewrites leaf values, which its
        logistic regression does not read (it reads which leaf a row falls in), so a refresh changes nothing."""
        if self.linear is not None:
            raise UserError(f"{self.label} is a GBDT leaves + LR model (training.model: gbdt_lr): {what} works on "
                            "the booster alone, and refreshing its leaf values would leave the model's predictions "
                            "unchanged (its logistic regression reads which leaf a row falls in, not the leaf's "
                            "value); retrain it with 'ctr-pipeline run' and register that run instead")


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
    linear = model / LINEAR
    return ModelBundle(root.uri, model / BOOSTER, feats / "transform", feats / FEATURE_MAP,
                       summary if summary.exists() else None, info, linear if linear.exists() else None)


def from_version(directory: Location, label: str) -> ModelBundle:
    """A registry version directory (see :mod:`.store`)."""
    info = json.loads((directory / "model.json").read_text())
    summary = directory / FEATURES_SUMMARY
    linear = directory / LINEAR
    return ModelBundle(label, directory / BOOSTER, directory / TRANSFORM, directory / FEATURE_MAP,
                       summary if summary.exists() else None, info, linear if linear.exists() else None)


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
