"""The analysis notes: built from their one source, valid for Zeppelin, every paragraph run as Zeppelin
would run it against real finished runs (and a registry with a refresh), every Jupyter notebook run by a
real kernel; and the deploy command against a small Zeppelin REST server."""
from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import shutil

import pytest

from ctr_pipeline.config import Layer, build_config, flag_layer, parse_set_option
from ctr_pipeline.pipeline import run_stages
from ctr_pipeline.refresh.cli import refresh_registry
from ctr_pipeline.registry.bundle import from_run
from ctr_pipeline.registry.store import Registry
from ctr_pipeline.runs import STAGES, RunDir
from zeppelin import render
from zeppelin.notes import NOTES

from .conftest import REPO
from .zeppelin_harness import NoteError, fake_zeppelin, parse_note, parse_text, png_images, resolve, run_note

HERE = REPO / "zeppelin"
SETTINGS = ["sampling.stratify_by=label", "training.n_estimators=12", "evaluation.bootstrap=40", "training.search_space={max_depth: [3, 5]}",
            "training.search_folds=2", "training.search_budget=null", "training.checkpoint_every=0"]
BAD_LINES = ["garbage\twith\ttoo few fields", "x" * 10]


# ---------------------------------------------------------------------------------------------- pure

def test_the_files_are_built_from_the_one_source():
    assert render.stale(HERE) == [], "run 'ctr-pipeline notes build' and commit the result"
    slugs = {n.slug for n in NOTES}
    assert {p.stem for p in (HERE / render.ZEPPELIN_DIR).glob("*.zpln")} == slugs
    assert {p.stem for p in (HERE / render.JUPYTER_DIR).glob("*.ipynb")} == slugs
    for note in NOTES:   # the same Python in both: every paragraph's code is in its notebook
        cells = json.loads((HERE / render.JUPYTER_DIR / f"{note.slug}.ipynb").read_text())["cells"]
        text = "\n".join("".join(c["source"]) for c in cells)
        assert all(p.text in text for p in note.paras), note.slug


def test_every_note_is_what_zeppelin_loads():
    for path in sorted((HERE / render.ZEPPELIN_DIR).glob("*.zpln")):
        doc, paragraphs = parse_note(path.read_text())
        assert doc["name"].startswith("ctr-pipeline/") and len(paragraphs) >= 4, path
        assert {p.name for p in paragraphs} <= {"pyspark", "sql", "md"}
        assert paragraphs[0].name == "md" and any(p.title == "Setup" for p in paragraphs)
        for form in ("RUN", "REGISTRY"):
            setup = next(p for p in paragraphs if p.title == "Setup").script
            if f"{form} = " in setup:
                assert f"z.textbox({form!r}" in setup


def test_the_harness_rejects_what_zeppelin_would_not_run():
    assert parse_text("%spark.sql(limit=10, title=\"a,b\")\nSELECT 1") == ("spark.sql", "\nSELECT 1",
                                                                             {"limit": "10", "title": "a,b"})
    assert parse_text("  \n%md # x") == ("md", "# x", {})
    assert resolve("", "spark") == ("spark", "spark")                   # no prefix: Scala
    assert resolve("pyspark", "spark") == ("spark", "pyspark") and resolve("md", "spark") == ("md", "md")
    with pytest.raises(NoteError, match="No such interpreter"):
        resolve("spark.nothing", "spark")
    good = json.loads((HERE / render.ZEPPELIN_DIR / "model.zpln").read_text())
    for change, message in ((lambda d: d["paragraphs"][1].update(text="print(1)"), "no interpreter prefix"),
                            (lambda d: d["paragraphs"][1].update(text="%spark\nprintln(1)"), "resolves to spark.spark"),
                            (lambda d: d["paragraphs"][1]["config"].update(colWidth="12"), "'colWidth' is str"),
                            (lambda d: d["paragraphs"][1].update(results={}), "run state stored"),
                            (lambda d: d.pop("angularObjects"), "missing key 'angularObjects'")):
        doc = json.loads(json.dumps(good))
        change(doc)
        with pytest.raises(NoteError, match=message):
            parse_note(json.dumps(doc))


def test_z_show_renders_a_table_as_zeppelin_and_caps_it():
    import pandas as pd

    from .zeppelin_harness import FakeZeppelinContext, split_output

    buf = io.StringIO()
    frame = pd.DataFrame({"a\tb": range(1500), "text": ["x\ny"] * 1500})
    with contextlib.redirect_stdout(buf):
        FakeZeppelinContext(None).show(frame)
        print("\n%html <b>after</b>")
    out = split_output(buf.getvalue())
    [table] = out.of("TABLE")
    lines = table.split("\n")
    assert lines[0] == "a b\ttext" and lines[1] == "0\tx y" and len(lines) == 1 + 1000
    assert "Results are limited by 1000" in out.of("HTML")[0] and out.of("HTML")[1] == "<b>after</b>"


def test_wilson_interval():
    from zeppelin.analysis import wilson

    low, high = wilson([0, 5], [10, 0])
    z2 = 1.959963984540054 ** 2
    assert low[0] == 0.0 and abs(high[0] - z2 / (10 + z2)) < 1e-12          # 0 of n: [0, z^2 / (n + z^2)]
    assert high[1] != high[1]                                               # no rows: NaN, not an error


def test_the_model_table_names_the_shipped_model():
    from zeppelin.analysis import model_table

    body = {"rows": 10, "positives": 1, "base_rate": 0.1, "mxe": 0.3, "ne": 0.9, "auc": 0.7, "pr_auc": 0.2,
            "calibration": 1.0}
    m = {"model": "gbdt_lr", "test": body, "baselines": {"trees": {"test": {**body, "mxe": 0.29}}}}
    assert model_table(m)["model"].tolist() == ["GBDT leaves + LR (this run)", "its trees alone (XGBoost)"]
    del m["model"]                                      # metrics.json before training.model existed
    assert model_table(m)["model"].tolist()[0] == "XGBoost (this run)"


def test_parameter_defaults(tmp_path, monkeypatch):
    from zeppelin.display import param

    (tmp_path / "checkout" / "runs" / "demo").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")                     # as Jupyter starts in zeppelin/notebooks/
    monkeypatch.delenv("CTR_NOTES_RUN", raising=False)
    assert param("RUN", "runs/demo", tmp_path / "checkout") == str(tmp_path / "checkout" / "runs" / "demo")
    assert param("RUN", "runs/other", tmp_path / "checkout") == "runs/other"      # left as given: a clear error later
    monkeypatch.setenv("CTR_NOTES_RUN", "s3://bucket/runs/x")
    assert param("RUN", "runs/demo", tmp_path / "checkout") == "s3://bucket/runs/x"


def test_a_failing_paragraph_is_named(spark, tmp_path):
    doc = json.loads((HERE / render.ZEPPELIN_DIR / "run_overview.zpln").read_text())
    with pytest.raises(NoteError, match="paragraph 2 'Open the run' failed: UserError: .*no manifest.json"):
        run_note(json.dumps(doc), spark, {"RUN": str(tmp_path / "nothing")})


# ---------------------------------------------------------------------------------------------- on Spark

@pytest.fixture(scope="module")
def runs(spark, demo_tsv, tmp_path_factory):
    """A run on demo rows with two bad lines (quarantine) and a 2-candidate search; a second run on the
    same sets with smaller trees (for the comparison); a registry whose champion was refreshed once."""
    from ctr_pipeline.demo_data import generate

    base = tmp_path_factory.mktemp("notes")
    data = base / "input.tsv.gz"
    lines = gzip.open(demo_tsv, "rt").read().splitlines()
    with gzip.open(data, "wt") as f:
        f.write("\n".join(lines[:100] + BAD_LINES + lines[100:]) + "\n")
    first, second = RunDir(base / "first"), RunDir(base / "second")
    layers = [parse_set_option(s) for s in SETTINGS] + [flag_layer("--input", "input.path", str(data))]
    run_stages(STAGES, build_config(layers), first, lambda: spark)
    shutil.copytree(first.root.path, second.root.path)
    smaller = build_config([parse_set_option(s) for s in ("training.n_estimators=12", "training.max_depth=2",
                                                          "training.checkpoint_every=0", "evaluation.baselines=[]",
                                                          "evaluation.bootstrap=0")]
                           + [flag_layer("--input", "input.path", str(data))])
    run_stages(("train", "evaluate"), smaller, second, lambda: spark, force=True)

    window = base / "day2.tsv.gz"
    generate(4_000, window, seed=5, day=2, drift=0.4)
    reg = Registry.open(str(base / "registry"), create=True)
    reg.promote(reg.register(from_run(first.root), reason="first run"), reason="first run")
    cfg = build_config([Layer("champion", reg.bundle("champion").config),
                        *[parse_set_option(s) for s in ("refresh.margin=-0.5", "refresh.calibration_band=0.9",
                                                        "refresh.extra_trees=0", "refresh.bootstrap=20")],
                        flag_layer("--input", "input.path", str(window))])
    refresh_registry(spark, cfg, reg, "v1", False, str(base / "refresh.log"))
    return {"first": first, "second": second, "registry": reg, "base": base}


def form_defaults(runs) -> dict[str, str]:
    """CTR_NOTES_<NAME>: the forms' defaults (what a form returns until a user types in it)."""
    return {"CTR_NOTES_RUN": str(runs["first"].root), "CTR_NOTES_COMPARE": str(runs["second"].root),
            "CTR_NOTES_REGISTRY": str(runs["registry"].root)}


def tables(results, title):
    """The %table blocks of the paragraph titled ``title`` as lists of rows (header first)."""
    [out] = [o for p, o in results if p.title == title]
    return [[line.split("\t") for line in block.split("\n")] for block in out.of("TABLE")]


def check_pngs(results, at_least):
    from PIL import Image

    images = [png for _, out in results for png in png_images(out)]
    assert len(images) >= at_least
    for png in images:
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        with Image.open(io.BytesIO(png)) as im:
            im.verify()
            assert im.format == "PNG" and im.size[0] >= 300


def test_zeppelin_notes_run_against_finished_runs(spark, runs, monkeypatch):
    for name, value in form_defaults(runs).items():
        monkeypatch.setenv(name, value)
    typed = {"model": {"RUN": f"{runs['registry'].root}@v1"}}    # a user's form value: the run v1 was trained in
    results = {n.slug: run_note((HERE / render.ZEPPELIN_DIR / f"{n.slug}.zpln").read_text(), spark,
                                typed.get(n.slug)) for n in NOTES}

    overview = results["run_overview"]
    [quarantine] = tables(overview, "Quarantine by reason")
    assert quarantine[0] == ["reason", "field", "rows", "example"]
    assert sum(int(r[2]) for r in quarantine[1:]) == len(BAD_LINES)
    [sample] = tables(overview, "Sample: requested vs obtained per set and stratum")
    head = sample[0]
    assert {r[0] for r in sample[1:]} == {"0", "1", "(all)"} and len(sample) == 1 + 9      # per stratum and set
    assert all(r[head.index("requested")] == r[head.index("obtained")] for r in sample[1:])  # exact sizes
    [stages] = tables(overview, "Stages: time, rows, throughput")
    assert [r[0] for r in stages[1:]] == list(STAGES) and all(r[1] == "complete" for r in stages[1:])

    feats = results["features"]
    [top] = tables(feats, "Top values with CTR and 95% interval")
    h = top[0]
    for r in top[1:]:
        assert float(r[h.index("ctr_low")]) <= float(r[h.index("ctr")]) <= float(r[h.index("ctr_high")])
    [per_set] = tables(feats, "Rows and CTR per set")
    assert sum(int(r[1]) for r in per_set[1:]) == 5_000                     # the SQL paragraph on the same session
    [oov] = tables(feats, "Out-of-vocabulary share by set")
    assert oov[0] == ["column", "train", "validation", "test"] and len(oov) == 27

    model = results["model"]
    [cv] = tables(model, "Cross-validation")
    assert len(cv) == 4                    # header, the two candidates searched and the configured max_depth
    [trees] = tables(model, "Trees kept vs validation MXE")
    assert float(trees[-1][0]) == 12                                        # every tree kept, last

    ev = results["evaluation"]
    [compare] = tables(ev, "Compare runs (paired bootstrap on the first run's test rows)")
    h = compare[0]
    assert len(compare) == 3 and compare[2][h.index("mxe_low")] not in ("", "nan", "None")
    [lift] = tables(ev, "Lift by decile")
    assert len(lift) == 11
    [decile_sql] = tables(ev, "Calibration per score decile (SQL)")
    assert sum(int(r[1]) for r in decile_sql[1:]) == runs["first"].stage_record("sample")["rows"]["test"]

    [decisions] = tables(results["refresh_history"], "Decisions over time")
    assert len(decisions) == 2 and decisions[1][decisions[0].index("champion")] == "v1"
    check_pngs(results["model"], 4)
    check_pngs(results["evaluation"], 1)
    check_pngs(results["refresh_history"], 1)


def test_jupyter_notebooks_run_in_a_real_kernel(spark, runs, tmp_path):
    """All five notebooks, one after the other, in one real IPython kernel (one Spark session in it),
    the namespace reset between notebooks."""
    import nbformat
    from ipykernel.kernelspec import write_kernel_spec
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    kernels = tmp_path / "kernels"
    write_kernel_spec(path=str(kernels / "ctr-notes"))
    km = KernelManager(kernel_name="ctr-notes", kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)]))
    env = {**os.environ, **form_defaults(runs),
           "CTR_NOTES_MASTER": "local[2]", "MPLBACKEND": "Agg"}
    km.start_kernel(env=env, cwd=str(tmp_path))
    try:
        for note in NOTES:
            nb = nbformat.read(HERE / render.JUPYTER_DIR / f"{note.slug}.ipynb", as_version=4)
            nb.cells.insert(0, nbformat.v4.new_code_cell("%reset -f"))
            NotebookClient(nb, km=km, timeout=600, allow_errors=False).execute()
            outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
            assert not [o for o in outputs if o.get("output_type") == "error"], note.slug
            pngs = [o["data"]["image/png"] for o in outputs if "image/png" in o.get("data", {})]
            frames = [o for o in outputs if "text/html" in o.get("data", {})]
            assert frames, note.slug
            if note.slug in ("model", "evaluation", "refresh_history"):
                assert pngs, note.slug
            import base64

            from PIL import Image

            for b64 in pngs:
                with Image.open(io.BytesIO(base64.b64decode(b64))) as im:
                    im.verify()
                    assert im.format == "PNG"
    finally:
        km.shutdown_kernel(now=True)


# ---------------------------------------------------------------------------------------------- deploy

def notes_cli(capsys, monkeypatch, *args, password=None):
    """``ctr-pipeline notes ...`` in this process: (exit code, stdout, stderr)."""
    from ctr_pipeline.cli import main

    if password is None:
        monkeypatch.delenv("ZEPPELIN_PASSWORD", raising=False)
    else:
        monkeypatch.setenv("ZEPPELIN_PASSWORD", password)
    capsys.readouterr()
    code = main(["notes", *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def zeppelin_server():
    with fake_zeppelin({"2OLD00001": "/ctr-pipeline/Model", "2KEEP0001": "/mine"}) as server:
        yield server


def test_deploy_replaces_the_notes_through_the_rest_api(zeppelin_server, capsys, monkeypatch):
    url = f"http://127.0.0.1:{zeppelin_server.server_port}"
    code, out, err = notes_cli(capsys, monkeypatch, "deploy", "--zeppelin", url, "--user", "analyst", password="s3cret")
    assert code == 0, err
    reqs = zeppelin_server.requests
    assert reqs[0][:2] == ("POST", "/api/login") and reqs[0][2] == b"userName=analyst&password=s3cret"
    assert reqs[0][4] == "application/x-www-form-urlencoded"
    assert all(r[3] == "JSESSIONID=abc123" for r in reqs[1:])             # the session cookie goes along
    assert reqs[1][:2] == ("GET", "/api/notebook")
    calls = [(m, p.split("?")[0]) for m, p, *_ in reqs[2:]]
    assert calls.count(("POST", "/api/notebook/import")) == len(NOTES)
    assert ("DELETE", "/api/notebook/2OLD00001") in calls                   # the older note at the same path
    i_delete = calls.index(("DELETE", "/api/notebook/2OLD00001"))
    assert reqs[2 + i_delete + 1][1] == "/api/notebook/import?notePath=/ctr-pipeline/Model"
    imported = {p for m, p, *_ in reqs if p.startswith("/api/notebook/import")}
    assert {f"/api/notebook/import?notePath={render.note_path(n).replace(' ', '%20')}" for n in NOTES} == imported
    for m, p, body, _, ctype in reqs:
        if p.startswith("/api/notebook/import"):
            assert ctype == "application/json"
            parse_note(body.decode())
    assert sorted(zeppelin_server.notes.values()) == sorted(["/mine", *[render.note_path(n) for n in NOTES]])
    assert "5 note(s) deployed" in out

    again = notes_cli(capsys, monkeypatch, "deploy", "--zeppelin", url, "--user", "analyst", password="s3cret")
    assert again[0] == 0 and len(zeppelin_server.notes) == len(NOTES) + 1            # idempotent


def test_deploy_errors_are_one_line(zeppelin_server, capsys, monkeypatch):
    url = f"http://127.0.0.1:{zeppelin_server.server_port}"
    code, _, err = notes_cli(capsys, monkeypatch, "deploy", "--zeppelin", url, "--user", "analyst", password="nope")
    assert code == 2 and "refused (HTTP 403)" in err and len(err.splitlines()) == 1
    code, _, err = notes_cli(capsys, monkeypatch, "deploy", "--zeppelin", url, "--user", "analyst")
    assert code == 2 and "ZEPPELIN_PASSWORD is not set" in err
    code, _, err = notes_cli(capsys, monkeypatch, "deploy", "--zeppelin", url)           # auth on, no user
    assert code == 1 and "HTTP 302" in err and len(err.splitlines()) == 1
    code, _, err = notes_cli(capsys, monkeypatch, "deploy", "--zeppelin", "http://127.0.0.1:9")
    assert code == 1 and "cannot reach Zeppelin" in err and len(err.splitlines()) == 1
    code, _, err = notes_cli(capsys, monkeypatch, "deploy", "--zeppelin", "localhost:8890")
    assert code == 2 and "expected http(s)://HOST:PORT" in err
    assert sorted(zeppelin_server.notes.values()) == ["/ctr-pipeline/Model", "/mine"]    # nothing changed
