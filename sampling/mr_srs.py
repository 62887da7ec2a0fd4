"""ScalableSRS as an mrjob MapReduce job: the same core (:mod:`sampling.srs`) as the Spark sampler.

Input: JSON lines, each with ``row_id`` (and the ``--stratify-by`` field when stratified). Three phases,
each a run of this job chosen by ``--phase``:

- ``count``: rows per stratum (mapper + combiner + reducer);
- ``regions``: with ``--plan``, rows per key region and the waitlisted (key, row_id) pairs per stratum;
- ``assign``: with ``--plan`` holding the cuts, a map-only pass emitting ``SET<TAB>line`` for sampled rows.

:func:`run_srs` drives the phases with any runner (``inline``, ``local``, ``spark``, or ``emr`` with an
mrjob.conf generated from the cluster definition, see :mod:`emr_configs.mrjob_conf`) and resolves the
cuts in between, retrying with a derived seed like the Spark sampler. On EMR the inputs are s3:// URIs,
mrjob uploads the job and each plan file to the conf's cloud tmp dir, and the phases share one pooled
cluster.
Run one phase by hand: ``python -m sampling.mr_srs -r local --phase count rows.jsonl``.
"""
from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Any, Iterable, Optional

from mrjob.job import MRJob
from mrjob.protocol import JSONProtocol, RawProtocol, RawValueProtocol
from mrjob.step import MRStep

from ctr_pipeline.errors import UserError
from sampling import srs
from sampling.core import ALL_STRATA, NULL_STRATUM


def stratum_of(record: dict, field: Optional[str]) -> str:
    """The stratum label of a record, as the Spark sampler spells it (str of the value)."""
    if not field:
        return ALL_STRATA
    value = record.get(field)
    if value is None:
        return NULL_STRATUM
    return str(value).lower() if isinstance(value, bool) else str(value)


class MRScalableSRS(MRJob):
    INPUT_PROTOCOL = RawValueProtocol

    def configure_args(self):
        super().configure_args()
        self.add_passthru_arg("--phase", choices=["count", "regions", "assign"], required=True)
        self.add_passthru_arg("--stratify-by", default=None)
        self.add_file_arg("--plan", help="JSON plan written by run_srs (regions and assign phases)")

    def output_protocol(self):
        return RawProtocol() if self.options.phase == "assign" else JSONProtocol()

    def steps(self):
        phase = self.options.phase
        if phase == "count":
            return [MRStep(mapper=self.count_mapper, combiner=self.sum_counts, reducer=self.sum_counts)]
        if phase == "regions":
            return [MRStep(mapper_init=self.load_plan, mapper=self.region_mapper, combiner=self.merge_regions,
                           reducer=self.merge_regions)]
        return [MRStep(mapper_init=self.load_plan, mapper=self.assign_mapper)]

    # ---------------------------------------------------------------------------------- phases
    def count_mapper(self, _, line):
        yield stratum_of(json.loads(line), self.options.stratify_by), 1

    def sum_counts(self, stratum, counts):
        yield stratum, sum(counts)

    def load_plan(self):
        with open(self.options.plan, encoding="utf-8") as fh:
            data = json.load(fh)
        self.seed = data["seed"]
        self.plans = {s: srs.StratumPlan(s, p["n"], tuple(p["sets"]), tuple(p["targets"]), tuple(p["boundaries"]))
                      for s, p in data["plans"].items()}
        self.cuts = {s: [tuple(c) for c in cuts] for s, cuts in data.get("cuts", {}).items()}

    def region_mapper(self, _, line):
        record = json.loads(line)
        stratum = stratum_of(record, self.options.stratify_by)
        plan = self.plans[stratum]
        k = srs.key(self.seed, record["row_id"])
        region = plan.region(k)
        # a string key: mrjob's spark harness groups keys in Python, and JSON lists are unhashable
        yield f"{region}|{stratum}", [1, [[k, record["row_id"]]] if plan.is_waitlist(region) else []]

    def merge_regions(self, key, values):
        count, items = 0, []
        for n, more in values:
            count += n
            items += more
        yield key, [count, items]

    def assign_mapper(self, _, line):
        record = json.loads(line)
        stratum = stratum_of(record, self.options.stratify_by)
        name = srs.assign(self.cuts[stratum], self.plans[stratum].sets, srs.key(self.seed, record["row_id"]),
                          record["row_id"])
        if name is not None:
            yield name, line


# -------------------------------------------------------------------------------------- driver

def _run_phase(phase: str, inputs: list[str], runner: str, stratify_by: Optional[str],
               plan: Optional[Path] = None, output_dir: Optional[Path] = None,
               extra: Iterable[str] = (), conf_path: Optional[str] = None) -> list[tuple[Any, Any]]:
    conf = ["-c", conf_path] if conf_path else ["--no-conf"]
    args = [*conf, "-r", runner, "--phase", phase, *extra]
    if stratify_by:
        args += ["--stratify-by", stratify_by]
    if plan is not None:
        args += ["--plan", str(plan)]
    job = MRScalableSRS(args=[*args, *inputs])
    with job.make_runner() as run:
        try:
            run.run()
            if output_dir is None:
                return list(job.parse_output(run.cat_output()))
            # streamed into our own file: the spark runner's harness fails on an explicit --output-dir
            output_dir.mkdir(parents=True, exist_ok=True)
            with open(output_dir / "part-00000", "wb") as fh:
                for chunk in run.cat_output():
                    fh.write(chunk)
            return []
        finally:   # the setup wrapper's lock file, which mrjob puts in /tmp and never removes
            Path(f"/tmp/wrapper.lock.{run.get_job_key()}").unlink(missing_ok=True)


def runner_args(runner: str, tmp: Path) -> list[str]:
    """Options a runner needs on this machine: mrjob's scratch files under ``tmp`` (the caller's work
    directory, not the system's temporary directory); tasks use this interpreter (where ctr-pipeline is
    installed); the spark runner also uses this environment's spark-submit and ``tmp`` for its output."""
    args = ["--local-tmp-dir", str(tmp)]
    if runner not in ("local", "spark"):
        return args
    args += ["--python-bin", sys.executable]
    submit = Path(sys.executable).parent / "spark-submit"
    if runner == "spark":
        # spark-submit's JVM (driver and local executors) keeps its temporary files (spark-*, the native
        # libraries lz4-java and snappy-java extract) in ``tmp`` too: Java ignores TMPDIR
        args += ["--spark-tmp-dir", str(tmp), f"--spark-args=--driver-java-options=-Djava.io.tmpdir={tmp}"]
        if submit.exists():
            args += ["--spark-submit-bin", str(submit)]
    return args


def run_srs(inputs: list[str], workdir: Path, targets_for, seed: int, delta: float, runner: str = "inline",
            stratify_by: Optional[str] = None, max_attempts: int = 5, log=None,
            conf_path: Optional[str] = None) -> dict:
    """All phases. ``targets_for(counts)`` maps {stratum: rows} to {stratum: {set: rows}} (the same
    planning as the Spark sampler). Sampled rows land in ``workdir/assigned/`` as ``SET<TAB>line``
    (``workdir`` is local: the plans are uploaded by mrjob). ``conf_path`` is an mrjob.conf (the EMR
    runner's, generated from the cluster definition by :func:`emr_configs.mrjob_conf.mrjob_conf`);
    without it mrjob reads none. The ``emr`` runner needs ``conf_path`` and s3:// ``inputs``.

    Returns counts, targets, the seed used, attempts and waitlist sizes per stratum.
    """
    if runner == "emr":
        _check_emr(inputs, conf_path)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "mrjob-tmp").mkdir(exist_ok=True)
    extra = runner_args(runner, workdir / "mrjob-tmp")
    phase = functools.partial(_run_phase, runner=runner, stratify_by=stratify_by, extra=extra, conf_path=conf_path)
    counts = {s: n for s, n in phase("count", inputs)}
    targets = targets_for(counts)
    plans = {s: srs.plan_stratum(s, counts[s], targets[s], delta) for s in counts}
    used = seed
    for attempt in range(1, max_attempts + 1):
        plan_file = workdir / f"plan-{attempt}.json"
        _write_plan(plan_file, used, plans)
        rows = phase("regions", inputs, plan=plan_file)
        region_counts: dict = {s: {} for s in plans}
        waitlists: dict = {s: [] for s in plans}
        for key, (count, items) in rows:
            region, stratum = key.split("|", 1)
            region_counts[stratum][int(region)] = count
            waitlists[stratum] += [tuple(i) for i in items]
        try:
            cuts = {s: srs.resolve(p, region_counts[s], waitlists[s]) for s, p in plans.items()}
        except srs.ShortWaitlist as short:
            if attempt == max_attempts:
                raise
            used = srs.derived_seed(seed, attempt)
            if log:
                log(f"{short} (probability <= 2*delta); retrying with derived seed {used}")
            continue
        final = workdir / "plan-final.json"
        _write_plan(final, used, plans, cuts)
        phase("assign", inputs, plan=final, output_dir=workdir / "assigned")
        return {"counts": counts, "targets": targets, "seed_used": used, "attempts": attempt,
                "waitlists": {s: len(w) for s, w in waitlists.items()}}
    raise srs.ShortWaitlist(f"no exact sample after {max_attempts} attempts")


def _check_emr(inputs: list[str], conf_path: Optional[str]) -> None:
    if not conf_path:
        raise UserError("mr_srs: runner 'emr' needs conf_path, an mrjob.conf generated from the cluster definition "
                        "(emr_configs.mrjob_conf); without one mrjob would make a cluster of its own defaults")
    for uri in inputs:
        if not str(uri).startswith("s3://"):
            raise UserError(f"mr_srs: runner 'emr' reads its input from S3: {str(uri)!r} is not an s3:// URI; "
                            "put the input under the run directory on S3")


def _write_plan(path: Path, seed: int, plans: dict, cuts: Optional[dict] = None) -> None:
    data = {"seed": seed, "plans": {s: {"n": p.n, "sets": list(p.sets), "targets": list(p.targets),
                                        "boundaries": list(p.boundaries)} for s, p in plans.items()}}
    if cuts is not None:
        data["cuts"] = {s: [list(c) for c in cs] for s, cs in cuts.items()}
    path.write_text(json.dumps(data), encoding="utf-8")


if __name__ == "__main__":
    MRScalableSRS.run()
