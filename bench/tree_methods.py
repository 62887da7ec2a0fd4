"""XGBoost tree_method hist against approx: does hist match approx on test MXE within 0.1% (relative)?

    python -m bench.tree_methods [--rows 1000000] [--only demo talkingdata criteo_attribution avazu criteo_dac]
        [--skip-demo] [--skip-real]

Each data set is sampled and featurised once by the CLI into data/bench/tree_run_<name> (reused when its
features stage is already complete); then for each tree method (approx, hist) the CLI trains with
``--force --set training.tree_method=M --set training.num_workers=2`` and evaluates with
``--set evaluation.baselines=[] --set evaluation.bootstrap=0``. Test MXE and AUC come from
RUN/manifest.json (stages.evaluate.details.metrics.test), train seconds from stages.train.seconds.

Data sets:
* ``demo``: ``--rows`` demo rows (Criteo DAC layout), no config file;
* ``talkingdata``: configs/talkingdata.yaml (its input, ../shared/data, 100k rows; early stopping 20);
* ``criteo_attribution``: configs/criteo_attribution.yaml (its input, the 115k-row train file);
* ``avazu``: configs/avazu.yaml (its input, 100 rows);
* ``criteo_dac``: the DeepCTR Criteo sample (200 rows). It is comma-separated with a header
  (label, I1-I13, C1-C26), so the ``criteo_dac`` format (tab-separated, no header) does not fit; it runs
  with no config file and ``--set input.format=csv`` plus the label, numeric and categorical columns.

The 100- and 200-row samples are printed but marked "too small to decide": a test split under 1000 rows
gives an MXE too noisy to settle a 0.1% question. The verdict is "yes" when |hist - approx| / approx
<= 0.1%. Results: bench/results/tree_methods.json.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional

from .harness import DATA, ROOT, demo_file, run_measured, write_result

METHODS = ("approx", "hist")
TOLERANCE = 0.001          # relative test MXE difference (hist - approx) / approx
MIN_TEST_ROWS = 1000       # below this the test MXE is too noisy to decide
SHARED = ROOT.parent / "shared" / "data"
CLI = str(Path(sys.executable).parent / "ctr-pipeline")

DAC_NUMERIC = [f"I{i}" for i in range(1, 14)]
DAC_CATEGORICAL = [f"C{i}" for i in range(1, 27)]

# name -> (label, data file in ../shared/data, config file or None, extra --set values)
REAL = {
    "talkingdata": ("TalkingData", "talkingdata_adtracking_train_sample_100k.csv.gz", "configs/talkingdata.yaml", ()),
    "criteo_attribution": ("Criteo attribution", "criteo_attribution_small_train_115k.csv.gz",
                           "configs/criteo_attribution.yaml", ()),
    "avazu": ("Avazu sample", "deepctr_avazu_sample_100.csv.gz", "configs/avazu.yaml", ()),
    "criteo_dac": ("Criteo DAC sample", "deepctr_criteo_sample_200.csv.gz", None,
                   ("input.format=csv", "input.label=label", f"input.numeric=[{','.join(DAC_NUMERIC)}]",
                    f"input.categorical=[{','.join(DAC_CATEGORICAL)}]")),
}


class StageFailed(Exception):
    pass


def ctr(*args: str) -> dict:
    """One CLI command, measured; raise StageFailed with the tail of its stderr when it fails."""
    out = run_measured([CLI, *args], cwd=ROOT)
    if out["returncode"] != 0:
        tail = (out["stderr"] or out["stdout"])[-2000:]
        raise StageFailed(f"ctr-pipeline {' '.join(args)} exited {out['returncode']}:\n{tail}")
    return out


def manifest(run: Path) -> dict:
    path = run / "manifest.json"
    return json.loads(path.read_text()) if path.exists() else {}


def complete(run: Path, stage: str) -> bool:
    return manifest(run).get("stages", {}).get(stage, {}).get("status") == "complete"


def prepare(run: Path, base: list[str], input_path: Path) -> None:
    """sample + features once into ``run`` (kept when the features stage is already complete)."""
    if complete(run, "sample") and complete(run, "features"):
        print(f"  reusing {run}", flush=True)
        return
    print(f"  sample + features -> {run}", flush=True)
    ctr("sample", *base, "--input", str(input_path), "--out", str(run))
    ctr("features", *base, "--out", str(run))


def one_method(run: Path, base: list[str], method: str) -> dict:
    sets = ["--set", f"training.tree_method={method}", "--set", "training.num_workers=2"]
    fit = ctr("train", *base, "--out", str(run), "--force", *sets)
    ctr("evaluate", *base, "--out", str(run), "--force", "--set", "evaluation.baselines=[]",
        "--set", "evaluation.bootstrap=0")
    stages = manifest(run)["stages"]
    train, evaluate = stages["train"], stages["evaluate"]
    test = evaluate["details"]["metrics"]["test"]
    used = train["details"]["params"].get("tree_method")
    if used != method:
        raise StageFailed(f"train recorded tree_method {used!r}, asked for {method!r}")
    return {"mxe": test["mxe"], "auc": test["auc"], "test_rows": test["rows"], "test_positives": test["positives"],
            "train_seconds": train["seconds"], "train_command_seconds": fit["seconds"],
            "trees": train["details"].get("trees"), "best_iteration": train["details"].get("best_iteration"),
            "params": train["details"]["params"]}


def measure(name: str, label: str, run: Path, base: list[str], input_path: Path) -> dict:
    print(f"{label}: {input_path}", flush=True)
    prepare(run, base, input_path)
    stages = manifest(run)["stages"]
    rows = stages["sample"]["details"]["input"]["rows_good"]
    res: dict = {"data": name, "label": label, "input": str(input_path), "run": str(run),
                 "cli_args": base, "rows": rows, "split_rows": stages["sample"].get("rows"), "methods": {}}
    for method in METHODS:
        r = res["methods"][method] = one_method(run, base, method)
        print(f"  {method:<6} test MXE {r['mxe']:.6f} AUC {r['auc']:.4f}  {r['trees']} trees  train "
              f"{r['train_seconds']:.1f}s", flush=True)
    a, h = res["methods"]["approx"], res["methods"]["hist"]
    res["relative_mxe_difference"] = (h["mxe"] - a["mxe"]) / a["mxe"]
    res["test_rows"] = a["test_rows"]
    res["within_tolerance"] = abs(res["relative_mxe_difference"]) <= TOLERANCE
    res["decidable"] = a["test_rows"] >= MIN_TEST_ROWS
    res["verdict"] = ("yes" if res["within_tolerance"] else "no") if res["decidable"] else "too small to decide"
    return res


def table(results: list[dict]) -> str:
    head = (f"{'data set':<20} {'rows':>9} {'test':>7} {'approx MXE':>11} {'hist MXE':>11} {'rel diff':>9}  "
            f"{'within 0.1%?':<20} {'AUC approx':>10} {'AUC hist':>9} {'train s approx':>14} {'train s hist':>12}")
    lines = [head, "-" * len(head)]
    for r in results:
        if "error" in r:
            lines.append(f"{r['label']:<20} failed: {r['error'].splitlines()[0][:150]}")
            continue
        a, h = r["methods"]["approx"], r["methods"]["hist"]
        lines.append(f"{r['label']:<20} {r['rows']:>9,} {r['test_rows']:>7,} {a['mxe']:>11.6f} {h['mxe']:>11.6f} "
                     f"{r['relative_mxe_difference']:>+9.3%}  {r['verdict']:<20} {a['auc']:>10.4f} {h['auc']:>9.4f} "
                     f"{a['train_seconds']:>14.1f} {h['train_seconds']:>12.1f}")
    return "\n".join(lines)


def run_one(name: str, label: str, run: Path, base: list[str], input_path: Path) -> dict:
    try:
        return measure(name, label, run, base, input_path)
    except (StageFailed, KeyError) as exc:
        msg = str(exc) if isinstance(exc, StageFailed) else f"missing manifest entry {exc}"
        print(f"  {label} FAILED: {msg}", flush=True)
        return {"data": name, "label": label, "input": str(input_path), "run": str(run), "error": msg}


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="demo rows (default 1,000,000)")
    parser.add_argument("--only", nargs="+", choices=["demo", *REAL], help="run only these data sets")
    parser.add_argument("--skip-demo", action="store_true")
    parser.add_argument("--skip-real", action="store_true")
    args = parser.parse_args(argv)
    wanted = set(args.only or ["demo", *REAL])
    if args.skip_demo:
        wanted.discard("demo")
    if args.skip_real:
        wanted -= set(REAL)

    results: list[dict] = []
    skipped: list[dict] = []
    if "demo" in wanted:
        data = demo_file(args.rows)
        results.append(run_one("demo", f"demo {args.rows:,}", DATA / f"tree_run_demo_{args.rows}", [], data))
    for name, (label, file, config, sets) in REAL.items():
        if name not in wanted:
            continue
        path = SHARED / file
        if not path.exists():
            why = f"{SHARED} is absent" if not SHARED.exists() else f"{path} is absent"
            print(f"{label}: skipped ({why})", flush=True)
            skipped.append({"data": name, "label": label, "reason": why})
            continue
        base = (["--config", config] if config else []) + [a for s in sets for a in ("--set", s)]
        results.append(run_one(name, label, DATA / f"tree_run_{name}", base, path))

    print(f"\nhist vs approx, test MXE, tolerance {TOLERANCE:.1%} relative; num_workers 2; 'test' = test rows "
          f"(under {MIN_TEST_ROWS} rows: too small to decide):")
    print(table(results))
    for s in skipped:
        print(f"{s['label']}: skipped ({s['reason']})")
    decided = [r for r in results if r.get("decidable")]
    verdict = ("no decidable data set ran" if not decided else
               "hist matches approx within 0.1% on every decidable data set" if all(r["within_tolerance"] for r in decided)
               else "hist does NOT match approx within 0.1% on: " +
               ", ".join(r["label"] for r in decided if not r["within_tolerance"]))
    print(f"verdict: {verdict}")
    path = write_result("tree_methods", {"tolerance": TOLERANCE, "min_test_rows": MIN_TEST_ROWS, "rows": args.rows,
                                         "methods": list(METHODS), "results": results, "skipped": skipped,
                                         "verdict": verdict})
    print(f"results: {path}")
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
