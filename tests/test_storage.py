"""The storage layer and the run directory on local disk and on S3 (moto's server over real HTTP)."""
import json
import threading

import pytest

from ctr_pipeline.errors import UserError
from ctr_pipeline.runs import RunDir
from ctr_pipeline.storage import Location, is_remote

from .conftest import BUCKET


def test_uri_parsing_and_joining(tmp_path):
    loc = Location.of("s3a://bucket//a/b/")
    assert str(loc) == "s3://bucket/a/b" and loc.name == "b" and str(loc.parent) == "s3://bucket/a"
    assert str(loc / "c.json") == "s3://bucket/a/b/c.json" and (loc / "c.json").suffix == ".json"
    assert Location.of(f"file://{tmp_path}").path == tmp_path and Location.of(tmp_path).is_local
    assert is_remote("s3://b/k") and not is_remote("file:///x") and not is_remote("/x")
    with pytest.raises(UserError, match="unsupported storage scheme 'hdfs'"):
        Location.of("hdfs://nn/x")
    with pytest.raises(UserError, match="no bucket name"):
        Location.of("s3:///x")


def test_write_read_list_move_delete(root):
    (root / "a" / "one.json").write_text('{"n": 1}')
    (root / "a" / "two.bin").write_bytes(b"\x00\x01")
    (root / "b" / "deep" / "x.txt").write_text("x")
    assert json.loads((root / "a" / "one.json").read_text()) == {"n": 1}
    assert (root / "a" / "two.bin").read_bytes() == b"\x00\x01"
    assert root.exists() and (root / "a").is_dir() and (root / "a" / "one.json").is_file()
    assert not (root / "a").is_file() and not (root / "missing").exists()
    assert [c.name for c in root.iterdir()] == ["a", "b"]
    assert [c.name for c in (root / "a").glob("*.json")] == ["one.json"]
    assert [f.uri[len(root.uri) + 1:] for f in root.files()] == ["a/one.json", "a/two.bin", "b/deep/x.txt"]
    with pytest.raises(FileNotFoundError):
        (root / "missing.json").read_text()
    (root / "b").move_to(root / "c")
    assert not (root / "b").exists() and (root / "c" / "deep" / "x.txt").read_text() == "x"
    (root / "a" / "two.bin").move_to(root / "c" / "two.bin")
    assert (root / "c" / "two.bin").read_bytes() == b"\x00\x01" and not (root / "a" / "two.bin").exists()
    with (root / "c").local_path() as local:
        assert sorted(p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()) == \
            ["deep/x.txt", "two.bin"]
    (root / "a" / "one.json").unlink()
    assert not (root / "a" / "one.json").exists()
    root.rmtree()
    assert not root.exists() and root.iterdir() == []


def test_upload_tree(root, tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "f.txt").write_text("hello")
    (root / "up").upload_tree(src)
    assert (root / "up" / "sub" / "f.txt").read_text() == "hello"


def test_a_reader_during_writes_sees_whole_files_only(root):
    """Many rewrites of one file while another thread reads it: every read is a complete version."""
    target = root / "manifest.json"
    target.write_text(json.dumps({"v": 0, "pad": "x" * 50_000}))
    seen, errors = set(), []

    def reader():
        for _ in range(60):
            try:
                seen.add(json.loads(target.read_text())["v"])
            except Exception as exc:  # noqa: BLE001 - any failure is the finding
                errors.append(repr(exc))

    thread = threading.Thread(target=reader)
    thread.start()
    for v in range(1, 30):
        target.write_text(json.dumps({"v": v, "pad": "x" * 50_000}))
    thread.join()
    assert errors == [] and seen <= set(range(30))


def test_run_directory_publishes_through_the_manifest_on_s3(aws):
    from ctr_pipeline.aws import client

    client("s3", aws).create_bucket(Bucket=BUCKET)
    run = RunDir.at(f"s3://{BUCKET}/runs/r1", aws)
    assert run.manifest() == {"format_version": 1, "stages": {}} and not run.is_complete("sample")
    first = run.new_staging("sample")
    assert first.uri.startswith(f"s3://{BUCKET}/runs/r1/splits/v-")
    (first / "train" / "part-0").write_text("1")
    loc = run.publish("sample", first)
    assert not run.is_complete("sample")                 # written, not yet recorded: invisible
    run.record_stage("sample", {"status": "complete", "token": "s1", "location": loc}, {})
    assert run.is_complete("sample") and run.path_of("sample") == first

    second = run.new_staging("sample")                   # a forced re-run, in progress
    (second / "train" / "part-0").write_text("2")
    assert run.path_of("sample") == first                # readers still see the first version
    assert (run.path_of("sample") / "train" / "part-0").read_text() == "1"
    run.record_stage("sample", {"status": "complete", "token": "s2", "location": run.publish("sample", second)}, {})
    assert (run.path_of("sample") / "train" / "part-0").read_text() == "2"
    assert not first.exists()                            # the replaced version is removed after the commit

    killed = run.new_staging("sample")                   # a run killed mid-write leaves a version behind
    (killed / "train" / "part-0").write_text("half")
    fresh = run.new_staging("sample")                    # the next attempt sweeps it, keeps the current one
    assert not killed.exists() and run.path_of("sample").exists() and fresh != killed
    assert [c.name for c in (run.root / "splits").iterdir()] == [second.name]


def test_cli_mistakes_with_s3_paths_are_one_line(aws, capsys):
    """A missing S3 input or config, or an unsupported scheme, stops before Spark with exit code 2."""
    from ctr_pipeline.aws import client
    from ctr_pipeline.cli import main

    client("s3", aws).create_bucket(Bucket=BUCKET)
    cases = [(["sample", "--input", f"s3://{BUCKET}/nothing/here.tsv", "--out", f"s3://{BUCKET}/runs/x"],
              f"input 's3://{BUCKET}/nothing/here.tsv' does not exist"),
             (["sample", "--config", f"s3://{BUCKET}/missing.yaml", "--out", f"s3://{BUCKET}/runs/x"],
              f"s3://{BUCKET}/missing.yaml: config file not found"),
             (["sample", "--input", "x.tsv", "--out", "hdfs://nn/runs/x"], "unsupported storage scheme 'hdfs'")]
    for argv, message in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
