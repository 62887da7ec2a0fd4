"""The model registry (local disk and S3 on moto's server) and the lock it writes under."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from ctr_pipeline.cli import main
from ctr_pipeline.errors import UserError
from ctr_pipeline.locks import Holder, Lock, LockHeld, stale
from ctr_pipeline.registry import core
from ctr_pipeline.registry.bundle import ModelBundle, resolve
from ctr_pipeline.registry.store import Registry
from ctr_pipeline.storage import Location

from .conftest import REPO


@pytest.fixture
def where(root):
    return root / "registry"


def fake_bundle(tmp_path, tag: str, mxe: float) -> ModelBundle:
    """A model's files without training one: the registry copies bytes, it does not read boosters."""
    src = Location.of(tmp_path / f"model-{tag}")
    (src / "booster.ubj").write_bytes(f"booster {tag}".encode())
    (src / "feature_map.tsv").write_text("index\tname\n0\tI1\n")
    (src / "transform" / "transform.json").write_text(json.dumps({"tag": tag}))
    (src / "transform" / "tables" / "vocab-0.parquet").write_bytes(b"PAR1 " + tag.encode())
    info = {"config": {"input": {"format": "criteo_dac"}}, "metrics": {"test": {"mxe": mxe, "auc": 0.7}},
            "source_run": f"/runs/{tag}", "data_window": [f"/logs/{tag}.tsv"]}
    return ModelBundle(f"/runs/{tag}", src / "booster.ubj", src / "transform", src / "feature_map.tsv", None, info)


# ---------------------------------------------------------------------------------------------- pure rules

def test_references_and_version_names():
    assert core.parse_reference("s3://b/models@champion") == core.Reference("s3://b/models", "champion")
    assert core.parse_reference("./reg@v12").is_version
    assert core.parse_reference("runs/day1") == core.Reference("runs/day1")
    assert core.parse_reference("/data/a@b/run") == core.Reference("/data/a@b/run")   # '@' inside a path
    with pytest.raises(UserError, match="alias 'Champ!'"):
        core.parse_reference("reg@Champ!")
    assert core.next_version(["v1", "v3", "junk", "v2"]) == "v4" and core.next_version([]) == "v1"


def test_rollback_walks_back_through_promotions():
    doc = None
    for v in ("v1", "v2", "v3"):
        doc = core.move(doc, "champion", v, "promote", "me", "t", "")
    assert doc["version"] == "v3" and [h["previous"] for h in doc["history"]] == [None, "v1", "v2"]
    assert core.rollback_target(doc, "champion") == "v2"
    doc = core.move(doc, "champion", "v2", "rollback", "me", "t", "bad")
    assert core.rollback_target(doc, "champion") == "v1"
    doc = core.move(doc, "champion", "v1", "rollback", "me", "t", "")
    with pytest.raises(UserError, match="no earlier version"):
        core.rollback_target(doc, "champion")


# ---------------------------------------------------------------------------------------------- store

def test_register_promote_rollback_round_trip(where, tmp_path):
    reg = Registry.open(str(where), where.aws, create=True)
    names = [reg.register(fake_bundle(tmp_path, tag, mxe), reason=f"day {i}")
             for i, (tag, mxe) in enumerate([("a", 0.15), ("b", 0.14), ("c", 0.16)], 1)]
    assert names == ["v1", "v2", "v3"]
    versions = reg.versions()
    assert [v["lineage"]["source_run"] for v in versions] == ["/runs/a", "/runs/b", "/runs/c"]
    assert versions[1]["lineage"]["method"] == "full_train" and versions[1]["reason"] == "day 2"
    # the copy is byte for byte, and its digests are recorded
    got = reg.bundle("v2")
    assert got.booster.read_bytes() == b"booster b" and got.label == f"{where}@v2"
    assert (got.transform / "tables" / "vocab-0.parquet").read_bytes() == b"PAR1 b"
    assert set(versions[1]["files"]) == {"booster.ubj", "feature_map.tsv", "transform/transform.json",
                                         "transform/tables/vocab-0.parquet"}

    with pytest.raises(UserError, match="points nowhere yet"):
        reg.bundle("champion")
    reg.promote("v1", reason="first")
    reg.promote("v2", reason="better")
    reg.promote("v3", alias="challenger")
    reg.promote("challenger", reason="took the challenger")       # an alias names its version
    assert reg.resolve("champion") == "v3"
    doc = reg.rollback(reason="v3 misbehaves")
    assert doc["version"] == "v2" and doc["history"][-1]["previous"] == "v3"
    assert resolve(f"{where}@champion", where.aws).booster.read_bytes() == b"booster b"
    history = reg.history()
    assert [(m["alias"], m["action"], m["version"]) for m in history] == [
        ("champion", "promote", "v1"), ("champion", "promote", "v2"), ("challenger", "promote", "v3"),
        ("champion", "promote", "v3"), ("champion", "rollback", "v2")]
    assert all(m["by"] and m["at"] for m in history) and history[-1]["reason"] == "v3 misbehaves"
    # versions are immutable and never deleted by these moves
    assert [v["version"] for v in reg.versions()] == names
    with pytest.raises(UserError, match="no version 'v9'"):
        reg.promote("v9")
    assert not (where / "registry.lock").exists()


def test_a_killed_register_leaves_an_incomplete_version_that_is_never_used(where, tmp_path):
    reg = Registry.open(str(where), where.aws, create=True)
    reg.register(fake_bundle(tmp_path, "a", 0.1))
    (where / "versions" / "v2" / "booster.ubj").write_bytes(b"half")      # no model.json: killed mid-copy
    assert reg.incomplete() == ["v2"] and [v["version"] for v in reg.versions()] == ["v1"]
    with pytest.raises(UserError, match="no version 'v2'"):
        reg.bundle("v2")
    assert reg.register(fake_bundle(tmp_path, "b", 0.1)) == "v3"          # the number is not reused


def test_opening_what_is_not_a_registry_is_one_clear_error(tmp_path):
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "file.txt").write_text("x")
    with pytest.raises(UserError, match="not a model registry"):
        Registry.open(str(tmp_path / "other"))
    with pytest.raises(UserError, match="not empty"):
        Registry.open(str(tmp_path / "other"), create=True)
    with pytest.raises(UserError, match="neither a run directory"):
        resolve(str(tmp_path / "other"))


# ---------------------------------------------------------------------------------------------- locks

def test_a_live_lock_is_refused_naming_its_holder(where):
    lock = where / "registry.lock"
    with Lock(lock, "refresh", heartbeat=0) as me:
        with pytest.raises(LockHeld) as err:
            Lock(lock, "promote").acquire()
        assert f"pid {os.getpid()}" in str(err.value) and "refresh" in str(err.value)
        assert Holder.parse(lock.read_bytes()).token == me.token
    assert not lock.exists()


def test_a_lock_without_heartbeat_is_stale_and_taken_over(where):
    lock = where / "registry.lock"
    old = Holder("t0", "refresh", "cron", "elsewhere", 1, "ctr-pipeline refresh", time.time() - 900,
                 time.time() - 900)
    lock.write_bytes(old.to_bytes())
    assert stale(old, stale_after=600) and not stale(old, stale_after=3600)
    with pytest.raises(LockHeld, match="cron@elsewhere"):
        Lock(lock, "promote", stale_after=3600).acquire()
    with Lock(lock, "promote", stale_after=600, heartbeat=0) as me:
        assert Holder.parse(lock.read_bytes()).token == me.token


def test_a_waiting_writer_gets_the_lock_when_it_is_released(tmp_path):
    import threading

    lock = Location.of(tmp_path / "l.lock")
    first = Lock(lock, "first", heartbeat=0)
    first.acquire()
    threading.Timer(0.5, first.release).start()
    t0 = time.monotonic()
    with Lock(lock, "second", heartbeat=0, wait=10):
        assert 0.4 < time.monotonic() - t0 < 5


def test_heartbeat_keeps_a_long_holder_fresh(tmp_path):
    lock = Location.of(tmp_path / "l.lock")
    with Lock(lock, "long", heartbeat=0.2):
        first = Holder.parse(lock.read_bytes()).heartbeat
        time.sleep(0.7)
        assert Holder.parse(lock.read_bytes()).heartbeat > first


HOLD_AND_WAIT = textwrap.dedent("""
    import sys, time
    from ctr_pipeline.locks import Lock
    from ctr_pipeline.storage import Location
    Lock(Location.of(sys.argv[1]), "refresh", heartbeat=0).acquire()
    print("held", flush=True)
    time.sleep(600)
""")

PROMOTE_FOREVER = textwrap.dedent("""
    import sys
    from ctr_pipeline.registry.store import Registry
    reg = Registry.open(sys.argv[1])
    i = 0
    print("started", flush=True)
    while True:
        reg.promote("v1" if i % 2 else "v2", reason=f"move {i}")
        i += 1
""")


def _spawn(script, *args):
    proc = subprocess.Popen([sys.executable, "-c", script, *args], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() in ("held", "started")
    return proc


def test_a_killed_holder_leaves_a_lock_the_next_writer_takes(tmp_path):
    reg = Registry.open(str(tmp_path / "reg"), create=True)
    reg.register(fake_bundle(tmp_path, "a", 0.1))
    holder = _spawn(HOLD_AND_WAIT, str(tmp_path / "reg" / "registry.lock"))
    reg.lock_wait = 0.5
    try:
        with pytest.raises(LockHeld, match=f"pid {holder.pid}"):
            reg.promote("v1")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert reg.promote("v1")["version"] == "v1"          # same host, process gone: stale


def test_alias_moves_are_atomic_under_kill(tmp_path):
    reg = Registry.open(str(tmp_path / "reg"), create=True)
    reg.register(fake_bundle(tmp_path, "a", 0.1))
    reg.register(fake_bundle(tmp_path, "b", 0.1))
    seen = 0
    for delay in (0.05, 0.2, 0.35, 0.6, 0.9):
        mover = _spawn(PROMOTE_FOREVER, str(tmp_path / "reg"))
        time.sleep(delay)
        mover.send_signal(signal.SIGKILL)
        mover.wait()
        doc = reg.alias_doc("champion")          # whole and consistent whenever the writer died
        if doc is not None:
            assert doc["version"] in ("v1", "v2") and doc["history"][-1]["version"] == doc["version"]
            assert len(doc["history"]) >= seen
            seen = len(doc["history"])
        assert reg.promote("v1", reason="after the kill")["version"] == "v1"   # the next writer gets through
        seen += 1
    assert seen > 10 and not list((tmp_path / "reg" / "aliases").glob("*.tmp"))


# ---------------------------------------------------------------------------------------------- CLI

def test_models_cli_lists_shows_promotes_and_explains_mistakes(tmp_path, capsys):
    reg = Registry.open(str(tmp_path / "reg"), create=True)
    reg.register(fake_bundle(tmp_path, "a", 0.15))
    reg.register(fake_bundle(tmp_path, "b", 0.14))
    at = str(tmp_path / "reg")
    assert main(["models", "promote", at, "v1", "--reason", "first"]) == 0
    assert main(["models", "promote", at, "v2"]) == 0
    assert main(["models", "rollback", at, "--reason", "regression"]) == 0
    capsys.readouterr()
    assert main(["models", "list", at]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing[1].split()[:3] == ["v1", listing[1].split()[1], "full_train"] and "champion" in listing[1]
    assert "0.15000" in listing[1] and "0.14000" in listing[2]
    assert main(["models", "show", f"{at}@champion"]) == 0
    assert json.loads(capsys.readouterr().out)["version"] == "v1"
    assert main(["models", "history", at]) == 0
    out = capsys.readouterr().out
    assert "rollback" in out and "regression" in out and len(out.strip().splitlines()) == 4
    assert main(["models", "show", f"{at}@v7"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no version 'v7'" in err[0]
    assert main(["models", "rollback", at, "--alias", "challenger"]) == 2
    assert "points nowhere yet" in capsys.readouterr().err
