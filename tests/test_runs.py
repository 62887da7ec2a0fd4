"""Run directory: manifest, atomic publish, completeness through upstream tokens."""
import pytest

from ctr_pipeline.errors import StageError
from ctr_pipeline.runs import RunDir


def complete(run, stage, token, upstream=None):
    run.path_of(stage).mkdir(parents=True, exist_ok=True)
    run.record_stage(stage, {"status": "complete", "token": token, "upstream": upstream or {}}, {})


def test_publish_replaces_atomically(tmp_path):
    run = RunDir(tmp_path / "run")
    first = run.new_staging("sample")
    (first / "a").write_text("1")
    run.publish("sample", first)
    second = run.new_staging("sample")
    (second / "b").write_text("2")
    run.publish("sample", second)
    assert sorted(p.name for p in run.path_of("sample").iterdir()) == ["b"]
    assert not first.exists() and not second.exists()
    assert [p.name for p in (run.root / ".staging").iterdir()] == []


def test_complete_requires_current_upstream(tmp_path):
    run = RunDir(tmp_path / "run")
    assert not run.is_complete("sample")
    complete(run, "sample", "s1")
    complete(run, "features", "f1", {"sample": "s1"})
    assert run.is_complete("features")
    complete(run, "sample", "s2")                      # sample redone: features is stale
    assert run.is_complete("sample") and not run.is_complete("features")


def test_manifest_records_versions_and_is_valid_json(tmp_path):
    run = RunDir(tmp_path / "run")
    complete(run, "sample", "s1")
    data = run.manifest()
    assert data["versions"]["pyspark"].startswith("3.5") and "python" in data["versions"]
    assert not list(run.root.glob(".manifest.json.*.tmp"))


def test_unreadable_manifest_and_file_uris(tmp_path):
    run = RunDir(tmp_path)
    (tmp_path / "manifest.json").write_text("{oops")
    with pytest.raises(StageError, match="unreadable run manifest"):
        run.manifest()
    assert RunDir.at(f"file://{tmp_path}").root.path == tmp_path


def test_kill_between_rename_and_record_leaves_the_stage_incomplete(tmp_path, monkeypatch):
    run = RunDir(tmp_path / "run")
    complete(run, "sample", "s1")
    staging = run.new_staging("sample")
    (staging / "new").write_text("2")
    run.publish("sample", staging)                    # killed here: the new record is never written
    assert run.stage_record("sample")["status"] == "replacing" and not run.is_complete("sample")


def test_leftover_staging_of_a_killed_run_is_swept(tmp_path):
    run = RunDir(tmp_path / "run")
    leftover = run.new_staging("train")
    (leftover / "half-written").write_text("x")
    other = run.new_staging("sample")
    fresh = run.new_staging("train")
    assert not leftover.exists() and fresh.exists() and other.exists()
