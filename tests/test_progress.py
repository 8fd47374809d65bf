"""The live progress display's model (kernel/progress.py), driven with a clock of our own."""

from __future__ import annotations

from dataclasses import dataclass

from jupyter_spark_openstack.kernel.progress import MIME, CellProgress, Stage, enabled


@dataclass
class StageInfo:   # what PySpark passes to a progress handler (pyspark.sql.connect.shell.progress)
    stage_id: int
    num_tasks: int
    num_completed_tasks: int
    num_bytes_read: int
    done: bool


class Clock:
    t = 100.0

    def __call__(self):
        return self.t


def _cell(kind="connect"):
    shown, clock = [], Clock()
    cell = CellProgress(lambda data, did, update: shown.append((update, data)), kind=kind,
                        ui_base="spark-openstack/ui/app/app-1/", clock=clock)
    return cell, shown, clock


def test_connect_reports_become_a_live_display_then_a_summary():
    cell, shown, clock = _cell()
    cell.connect_update([], 0, "op-config", True)      # a command without a job: nothing shown
    assert shown == []
    for done in (0, 50, 120):
        clock.t += 0.5
        cell.connect_update([StageInfo(3, 200, done, done * 1024, False)], 4, "op-1", False)
    cell.connect_update([StageInfo(3, 200, 200, 200 * 1024, True)], 0, "op-1", True)
    assert [u for u, _ in shown] == [False, True, True, True]
    first, live = shown[0][1][MIME], shown[2][1]
    assert first["operations"][0]["completed"] == 0 and first["done"] is False
    assert live[MIME]["operations"][0] == {
        "key": "op-1", "label": "Operation 1", "done": False, "elapsed_s": 1.0, "tasks": 200,
        "completed": 120, "running": 4, "bytes_read": 120 * 1024,
        "link": "spark-openstack/ui/app/app-1/stages/stage/?id=3&attempt=0",
        "stages": [{"id": 3, "tasks": 200, "completed": 120, "bytes_read": 120 * 1024, "done": False}]}
    assert live["text/plain"] == ("[Spark] Operation 1 (stage 3): 120/200 tasks · 4 running · "
                                  "120.0 KiB read · 1.0 s")
    clock.t += 1
    cell.finish()
    end = shown[-1][1]
    assert end[MIME]["done"] and end["text/plain"] == end[MIME]["summary"]
    # Spark's time: the operation's first report to its end (not the cell's 2.5 s)
    assert end["text/plain"] == "Spark: 1 Spark operation · 200/200 tasks · 200.0 KiB read · 1.0 s"


def test_updates_are_throttled_but_the_end_of_an_operation_is_always_shown():
    cell, shown, clock = _cell()
    for i in range(10):            # ten reports within 0.1 s
        clock.t += 0.01
        cell.connect_update([StageInfo(1, 10, i, 0, False)], 1, "op", False)
    assert len(shown) == 1
    cell.connect_update([StageInfo(1, 10, 10, 0, True)], 0, "op", True)
    assert len(shown) == 2 and shown[-1][1][MIME]["operations"][0]["done"]


def test_classic_jobs_from_the_status_tracker_and_no_display_without_spark_work():
    cell, shown, clock = _cell("classic")
    cell.classic_update([(7, "RUNNING", [Stage(11, 40, 10), Stage(12, 4, 0)], 2)])
    clock.t += 1
    cell.classic_update([(7, "RUNNING", [Stage(11, 40, 10), Stage(12, 4, 0)], 2)])   # unchanged
    assert len(shown) == 1
    cell.classic_update([(7, "SUCCEEDED", [Stage(11, 40, 40, done=True), Stage(12, 4, 4, done=True)], 0)])
    op = shown[-1][1][MIME]["operations"][0]
    assert (op["label"], op["tasks"], op["completed"], op["bytes_read"], op["done"]) == \
        ("Job 7", 44, 44, None, True)
    assert op["link"] == "spark-openstack/ui/app/app-1/jobs/job/?id=7"
    cell.finish()
    assert shown[-1][1]["text/plain"] == "Spark: 1 Spark job · 44/44 tasks · 1.0 s"
    # a cell that ran no Spark job shows nothing at all
    quiet, quiet_shown, _ = _cell("classic")
    quiet.finish()
    assert quiet_shown == []


def test_progress_can_be_turned_off():
    assert enabled({}) and enabled({"SPARK_OPENSTACK_PROGRESS": "1"})
    assert not enabled({"SPARK_OPENSTACK_PROGRESS": "0"}) and not enabled({"SPARK_OPENSTACK_PROGRESS": "off"})


def test_the_summary_of_a_cell_that_succeeded_counts_tasks_the_last_report_missed():
    """Reports come every interval and the result at once: the last report may say 39/40. A
    cell that succeeded ran them all; a failed one keeps the figures where they stopped."""
    for success, expected in ((True, "40/40 tasks"), (False, "39/40 tasks")):
        cell, shown, clock = _cell()
        cell.connect_update([StageInfo(1, 40, 39, 0, False)], 1, "op", False)
        clock.t += 1
        cell.connect_update([StageInfo(1, 40, 39, 0, False)], 0, "op", True)
        clock.t += 1
        cell.finish(success=success)
        assert shown[-1][1]["text/plain"] == f"Spark: 1 Spark operation · {expected} · 1.0 s"
