"""The refresh's rules, pure: a window's identity, the promotion rule and the decision record's words."""
from __future__ import annotations

import hashlib
import json
from typing import Any, Iterable, Optional

KINDS = {"refresh": "refresh", "continuation": "continuation", "retrain": "full_train"}   # candidate -> lineage method


def window_key(files: Iterable[tuple[str, int]]) -> str:
    """The identity of an input window: its files and their sizes (the same files again are a no-op)."""
    text = json.dumps(sorted((str(path), int(size)) for path, size in files))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def window_problem(window_ctr: float, champion_ctr: Optional[float], max_ratio: float) -> Optional[str]:
    """Why a window looks broken rather than drifted (its click rate far off the champion's), or None."""
    if not champion_ctr:
        return None
    if window_ctr <= 0.0 or not 1.0 / max_ratio <= window_ctr / champion_ctr <= max_ratio:
        return (f"its train set's click rate {window_ctr:.3%} is more than {max_ratio:g}x off the champion's train "
                f"click rate {champion_ctr:.3%} (refresh.max_ctr_ratio): clicks missing or mislabelled?")
    return None


def decide(champion: dict[str, Any], candidates: dict[str, dict[str, Any]], margin: float,
           band: float) -> dict[str, Any]:
    """Which challenger, if any, replaces the champion.

    ``candidates``: name -> holdout metrics (``mxe``, ``calibration``) and ``improvement``, the paired
    bootstrap of the relative MXE improvement over the champion (``interval``: [low, high]). The best
    challenger is the one with the lowest holdout MXE; it is promoted only if the low end of its interval
    exceeds ``margin`` and its calibration lies within 1 +- ``band``. Otherwise the champion stays.
    """
    rule = (f"promote the lowest-MXE challenger if the low end of its bootstrap interval of relative MXE "
            f"improvement exceeds {margin:+.2%} and its calibration is within 1 +- {band:g}")
    if not candidates:
        return {"action": "keep", "winner": None, "rule": rule, "reason": "no challenger was built"}
    best = min(candidates, key=lambda n: candidates[n]["mxe"])
    c = candidates[best]
    low, high = c["improvement"]["interval"]
    problems = []
    if not low > margin:
        problems.append(f"its MXE improvement interval [{low:+.2%}, {high:+.2%}] does not lie above {margin:+.2%}")
    if not abs(c["calibration"] - 1.0) <= band:
        problems.append(f"its calibration {c['calibration']:.3f} is outside 1 +- {band:g}")
    if problems:
        return {"action": "keep", "winner": None, "best": best, "rule": rule,
                "reason": f"best challenger '{best}' not promoted: " + "; ".join(problems)}
    return {"action": "promote", "winner": best, "best": best, "rule": rule,
            "reason": f"'{best}' improves holdout MXE by [{low:+.2%}, {high:+.2%}] (bootstrap interval) over the "
                      f"champion's {champion['mxe']:.5f}, calibration {c['calibration']:.3f}"}


def summary_line(record: dict[str, Any]) -> str:
    """One line for the cron's mail / log: what was compared and what was decided."""
    parts = [f"champion {record['champion']['version']} MXE {record['champion']['holdout']['mxe']:.5f}"]
    for name, c in record["candidates"].items():
        low, high = c["improvement"]["interval"]
        parts.append(f"{name} {c['mxe']:.5f} ({c['relative_mxe_improvement']:+.2%} [{low:+.2%}, {high:+.2%}])")
    d = record["decision"]
    verdict = (f"promoted {d['winner']} as {d['version']}" if d["action"] == "promote"
               else f"kept {record['champion']['version']}: {d['reason']}")
    return f"refresh {record['window']['key']}: " + "; ".join(parts) + f" -> {verdict}"


def drift(champion_train: Optional[dict[str, Any]], holdout: dict[str, Any],
          vocabulary: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The window against what the champion was trained on: click rate, and per vocabulary column the
    share of values the champion never saw (highest first)."""
    out: dict[str, Any] = {"window_ctr": holdout.get("base_rate")}
    if champion_train:
        out["champion_train_ctr"] = champion_train.get("ctr")
    shares = sorted(((v["oov_share"] or 0.0, c) for c, v in vocabulary.items()), reverse=True)
    out["oov_share"] = {c: s for s, c in shares}
    return out
