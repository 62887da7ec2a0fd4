"""Progress lines while Spark works: the pure formatting, and the watcher against a real job."""
import logging
import time

import pytest

from ctr_pipeline.progress import Snapshot, elapsed_text, progress_line, watch


def test_elapsed_text():
    assert [elapsed_text(s) for s in (0, 42.9, 65, 3599, 7380)] == ["0s", "42s", "1m05s", "59m59s", "2h03m"]


def test_progress_line_names_tasks_rows_and_time():
    line = progress_line("sample", Snapshot(1, 3, 8, 1_250_000, 0), 65)
    assert line == "sample: working, 3 of 8 tasks done in 1 Spark stage, 1,250,000 rows read, 1m05s"
    assert progress_line("train", Snapshot(2, 0, 4, 0, 10), 5) == \
        "train: working, 0 of 4 tasks done in 2 Spark stages, 10 rows written, 5s"


@pytest.mark.spark
def test_watcher_logs_while_a_job_runs_and_stops_after(spark, tmp_path, caplog):
    for i in range(4):
        (tmp_path / f"part-{i}.txt").write_text("".join(f"{i},{j}\n" for j in range(1000)))

    def slow(rows):
        time.sleep(1.0)
        return [sum(1 for _ in rows)]

    with caplog.at_level(logging.INFO, logger="ctr_pipeline.progress"):
        with watch(spark, "features", 0.4):
            rows = spark.sparkContext.textFile(str(tmp_path))   # one task per file: four of one second each
            assert rows.getNumPartitions() == 4 and sum(rows.mapPartitions(slow).collect()) == 4000
        lines = [r.getMessage() for r in caplog.records if r.name == "ctr_pipeline.progress"]
        time.sleep(1.0)
        after = [r.getMessage() for r in caplog.records if r.name == "ctr_pipeline.progress"]
    assert lines and all(line.startswith("features: working, ") and " tasks done in " in line for line in lines)
    assert any(" of 4 tasks done" in line for line in lines), lines
    assert any(" rows read" in line for line in lines), lines   # counted as tasks end
    assert after == lines   # nothing once the stage is over


def test_no_line_for_a_spark_job_only_seen_at_the_line_s_time(monkeypatch, caplog):
    """A stage working in the driver that runs a short Spark job just when a line is due gets no line; Spark
    work seen at the look back and at the line's time does."""
    from ctr_pipeline import progress

    calls = []

    def blips(spark):   # Spark stages at every other look: never at the look back and the line's time both
        calls.append(1)
        return Snapshot(1, 0, 1, 0, 0) if len(calls) % 2 == 0 else None

    monkeypatch.setattr(progress, "snapshot", blips)
    with caplog.at_level(logging.INFO, logger="ctr_pipeline.progress"):
        with watch(object(), "train", 0.05):
            time.sleep(0.6)
    assert len(calls) >= 4 and not [r for r in caplog.records if r.name == "ctr_pipeline.progress"]
    monkeypatch.setattr(progress, "snapshot", lambda spark: Snapshot(1, 0, 1, 0, 0))
    with caplog.at_level(logging.INFO, logger="ctr_pipeline.progress"):
        with watch(object(), "train", 0.05):
            time.sleep(0.6)
    assert [r for r in caplog.records if r.name == "ctr_pipeline.progress"]


def test_no_watcher_thread_when_off():
    before = time.perf_counter()
    with watch(object(), "sample", 0):
        pass
    assert time.perf_counter() - before < 1
