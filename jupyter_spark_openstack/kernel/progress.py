"""Live Spark progress under the running cell, for both kernels, with no extra JAR.

While a cell runs, each Spark operation (Connect) or job (classic) it starts is one row of a
live display: its stages, tasks done/total and running, bytes read, elapsed time, and a link to
its page in the Spark UI through the server extension's proxy. When the cell ends the display is
replaced by a one-line summary. The display is display data of our own MIME type
(:data:`MIME`), which the lab extension renders, with a ``text/plain`` fallback that classic
Notebook 7 and nbconvert show.

Where the figures come from:

* Connect kernel: ``SparkSession.registerProgressHandler``. The server sends
  ``ExecutionProgress`` every ``spark.connect.progress.reportInterval`` (ours run with 500ms:
  ``core.spark.connect.CONNECT_DEFAULTS``); PySpark calls each handler with the keyword arguments
  ``stages`` (``StageInfo``: ``stage_id``, ``num_tasks``, ``num_completed_tasks``,
  ``num_bytes_read``, ``done``), ``inflight_tasks``, ``operation_id`` and ``done``, on the
  thread that runs the query.
* Classic kernel: the driver's ``statusTracker()``, polled every :data:`POLL_INTERVAL` s by a
  thread of ours while a cell runs (never the main thread). The status tracker has no bytes
  read: the classic rows show none.

``SPARK_OPENSTACK_PROGRESS=0`` in the kernel's environment turns the display off.
"""

from __future__ import annotations

import contextvars
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

MIME = "application/vnd.jupyter-spark-openstack.progress+json"
ENV_PROGRESS = "SPARK_OPENSTACK_PROGRESS"
#: how often the classic kernel's thread reads the status tracker, in seconds
POLL_INTERVAL = 0.5
#: the display is published at most this often while figures change, in seconds
MIN_UPDATE_INTERVAL = 0.25
PAYLOAD_VERSION = 1


def enabled(env=None) -> bool:
    env = os.environ if env is None else env
    return str(env.get(ENV_PROGRESS, "1")).strip().lower() not in ("0", "false", "no", "off")


def human_bytes(n: int | None) -> str:
    if n is None:
        return ""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


@dataclass
class Stage:
    id: int
    tasks: int = 0
    completed: int = 0
    bytes_read: int | None = None
    done: bool = False


@dataclass
class Operation:
    """One Spark operation (Connect) or job (classic) started by the cell."""

    key: str
    label: str
    started: float
    stages: dict[int, Stage] = field(default_factory=dict)
    running: int = 0
    done: bool = False
    ended: float | None = None
    #: the page of it in the Spark UI, relative to the server's base URL
    link: str | None = None

    @property
    def tasks(self) -> int:
        return sum(s.tasks for s in self.stages.values())

    @property
    def completed(self) -> int:
        return sum(s.completed for s in self.stages.values())

    @property
    def bytes_read(self) -> int | None:
        known = [s.bytes_read for s in self.stages.values() if s.bytes_read is not None]
        return sum(known) if known else None

    def elapsed(self, now: float) -> float:
        return (self.ended or now) - self.started


class CellProgress:
    """The Spark work of one cell, and its display (published through ``publish(data,
    display_id, update)``). Thread-safe: the classic poller updates it from its thread."""

    def __init__(self, publish: Callable[[dict, str, bool], None], *, kind: str,
                 ui_base: str | None = None, clock: Callable[[], float] = time.monotonic):
        self.publish = publish
        self.kind = kind
        self.ui_base = ui_base
        self.clock = clock
        self.started = clock()
        self.display_id = uuid.uuid4().hex
        self.ops: dict[str, Operation] = {}
        #: classic: the status tracker's job ids this cell has seen (read again at its end)
        self.jobs_seen: set[int] = set()
        self._lock = threading.Lock()
        self._shown = False
        self._last = 0.0
        self._finished = False

    # ---- updates -------------------------------------------------------------------------
    def _op(self, key: str, label: str) -> Operation:
        op = self.ops.get(key)
        if op is None:
            op = self.ops[key] = Operation(key, label, self.clock())
        return op

    def connect_update(self, stages: Iterable, inflight_tasks: int, operation_id: str | None,
                       done: bool) -> None:
        """A Connect progress report (the handler's keyword arguments)."""
        stages = list(stages or ())
        with self._lock:
            key = operation_id or "operation"
            if key not in self.ops and not stages:
                return   # a command that ran no Spark job: nothing to show
            op = self._op(key, f"Operation {len(self.ops) + (key not in self.ops)}")
            for s in stages:
                op.stages[s.stage_id] = Stage(s.stage_id, s.num_tasks, s.num_completed_tasks,
                                              s.num_bytes_read, s.done)
            op.running = 0 if done else inflight_tasks
            latest = max(op.stages) if op.stages else None
            if self.ui_base and latest is not None:
                op.link = f"{self.ui_base}stages/stage/?id={latest}&attempt=0"
            if done and not op.done:
                op.done, op.ended = True, self.clock()
        self._show(force=done)

    def classic_update(self, jobs: list[tuple[int, str, list[Stage], int]]) -> None:
        """``[(job_id, status, stages, running_tasks)]`` from the status tracker."""
        changed = False
        with self._lock:
            for job_id, status, stages, running in jobs:
                op = self._op(f"job-{job_id}", f"Job {job_id}")
                before = (op.completed, op.tasks, op.running, op.done)
                for s in stages:
                    op.stages[s.id] = s
                op.running = running
                if self.ui_base:
                    op.link = f"{self.ui_base}jobs/job/?id={job_id}"
                if status in ("SUCCEEDED", "FAILED") and not op.done:
                    op.done, op.ended, op.running = True, self.clock(), 0
                changed |= before != (op.completed, op.tasks, op.running, op.done)
        if changed:
            self._show()

    # ---- the display ---------------------------------------------------------------------
    def payload(self) -> dict:
        now = self.clock()
        ops = list(self.ops.values())
        return {
            "version": PAYLOAD_VERSION, "kernel": self.kind, "done": self._finished,
            "elapsed_s": round(now - self.started, 1), "ui": self.ui_base,
            "operations": [{
                "key": op.key, "label": op.label, "done": op.done,
                "elapsed_s": round(op.elapsed(now), 1), "tasks": op.tasks,
                "completed": op.completed, "running": op.running, "bytes_read": op.bytes_read,
                "link": op.link,
                "stages": [{"id": s.id, "tasks": s.tasks, "completed": s.completed,
                            "bytes_read": s.bytes_read, "done": s.done}
                           for s in sorted(op.stages.values(), key=lambda s: s.id)],
            } for op in ops],
            "summary": self.summary(now),
        }

    def summary(self, now: float | None = None) -> str:
        now = self.clock() if now is None else now
        ops = list(self.ops.values())
        what = "operation" if self.kind == "connect" else "job"
        tasks = sum(op.tasks for op in ops)
        done = sum(op.completed for op in ops)
        read = sum(op.bytes_read or 0 for op in ops)
        parts = [f"{len(ops)} Spark {what}{'s' if len(ops) != 1 else ''}",
                 f"{done}/{tasks} tasks"]
        if read:
            parts.append(f"{human_bytes(read)} read")
        # Spark's own time, first operation's start to last one's end (not the cell's, which
        # may include waiting for the session)
        span = (max(op.ended or now for op in ops) - min(op.started for op in ops)) if ops else 0.0
        parts.append(f"{span:.1f} s")
        return "Spark: " + " · ".join(parts)

    def text(self) -> str:
        if self._finished:
            return self.summary()
        now = self.clock()
        lines = []
        for op in self.ops.values():
            stage = max(op.stages) if op.stages else None
            bits = [f"{op.completed}/{op.tasks} tasks"]
            if op.running:
                bits.append(f"{op.running} running")
            if op.bytes_read:
                bits.append(f"{human_bytes(op.bytes_read)} read")
            bits.append(f"{op.elapsed(now):.1f} s")
            state = "done" if op.done else (f"stage {stage}" if stage is not None else "starting")
            lines.append(f"[Spark] {op.label} ({state}): " + " · ".join(bits))
        return "\n".join(lines)

    def _show(self, force: bool = False) -> None:
        now = self.clock()
        with self._lock:
            if not self.ops or (not force and self._shown and now - self._last < MIN_UPDATE_INTERVAL):
                return
            data = {MIME: self.payload(), "text/plain": self.text()}
            update, self._shown, self._last = self._shown, True, now
        try:
            self.publish(data, self.display_id, update)
        except Exception:  # noqa: BLE001 - progress must never break a cell
            log.debug("publishing Spark progress failed", exc_info=True)

    def finish(self, success: bool = True) -> None:
        """The cell ended: the display becomes its one-line summary (nothing if no Spark work).
        A cell that succeeded ran its operations to the end: the server's last report may be
        older than their last tasks (reports come every interval, the result at once), so their
        stages count as complete. A failed cell keeps the figures where they stopped."""
        with self._lock:
            if self._finished:
                return
            self._finished = True
            for op in self.ops.values():
                if not op.done:
                    op.done, op.ended, op.running = True, self.clock(), 0
                if success:
                    for st in op.stages.values():
                        if not st.done:
                            st.completed, st.done = st.tasks, True
        if self.ops:
            self._show(force=True)


def ipython_publisher(data: dict, display_id: str, update: bool) -> None:
    from IPython.display import display, update_display  # noqa: PLC0415

    if update:
        update_display(data, raw=True, display_id=display_id)
    else:
        display(data, raw=True, display_id=display_id)


def read_status_tracker(sc, seen: set[int]) -> list[tuple[int, str, list[Stage], int]]:
    """The jobs the status tracker knows that are running now or were seen running by this
    cell: ``[(job_id, status, stages, running_tasks)]``."""
    tracker = sc.statusTracker()
    ids = set(tracker.getActiveJobsIds()) | seen
    out = []
    for job_id in sorted(ids):
        info = tracker.getJobInfo(job_id)
        if info is None:
            continue
        seen.add(job_id)
        stages, running = [], 0
        for sid in info.stageIds:
            si = tracker.getStageInfo(sid)
            if si is None:
                continue
            stages.append(Stage(sid, si.numTasks, si.numCompletedTasks, None,
                                si.numCompletedTasks >= si.numTasks > 0))
            running += si.numActiveTasks
        out.append((job_id, str(info.status), stages, running))
    return out


class ProgressTracker:
    """Wires :class:`CellProgress` into a kernel: a display per cell (IPython's
    ``pre_run_cell``/``post_run_cell`` events), fed by the Connect progress handler or the
    classic poller. ``session()`` returns ``(spark, sc)`` once the session is ready, else None."""

    def __init__(self, session: Callable[[], tuple | None], *, env=None,
                 publish: Callable[[dict, str, bool], None] = ipython_publisher,
                 poll_interval: float = POLL_INTERVAL):
        self.session = session
        self.env = os.environ if env is None else env
        self.publish = publish
        self.poll_interval = poll_interval
        self.cell: CellProgress | None = None
        self._attached = None
        self._ui_base: str | None = None
        self._ui_asked = False
        self._poller: threading.Thread | None = None
        self._stop = threading.Event()

    def install(self, shell) -> None:
        if not enabled(self.env):
            return
        shell.events.register("pre_run_cell", self.pre_run_cell)
        shell.events.register("post_run_cell", self.post_run_cell)

    # ---- the session ---------------------------------------------------------------------
    @staticmethod
    def is_connect(spark) -> bool:
        return type(spark).__module__.startswith("pyspark.sql.connect")

    def _attach(self) -> tuple | None:
        """The session, with our handler registered once (Connect) and its UI link known."""
        ses = self.session()
        if ses is None:
            return None
        spark, sc = ses
        if self._attached is not spark:
            self._attached, self._ui_base, self._ui_asked = spark, None, False
            if self.is_connect(spark):
                spark.registerProgressHandler(self._on_connect)
            else:   # the driver is in this kernel: no RPC
                self._set_ui_base(sc.applicationId)
        return ses

    def _set_ui_base(self, app_id) -> None:
        self._ui_base = f"spark-openstack/ui/app/{app_id}/" if app_id else None

    def _on_connect(self, stages=None, inflight_tasks=0, operation_id=None, done=False, **_):
        cell = self.cell
        if cell is None:
            return
        if not self._ui_asked and self._attached is not None:
            # asked once, while the server is known to answer (it is reporting progress)
            self._ui_asked = True
            try:
                self._set_ui_base(self._attached.conf.get("spark.app.id"))
            except Exception:  # noqa: BLE001 - no link then
                log.debug("reading spark.app.id failed", exc_info=True)
            cell.ui_base = self._ui_base
        cell.connect_update(stages or (), inflight_tasks, operation_id, done)

    # ---- cells ---------------------------------------------------------------------------
    def pre_run_cell(self, info=None) -> None:
        self.post_run_cell()
        ses = self._attach()
        kind = "connect" if ses is not None and self.is_connect(ses[0]) else "classic"
        self.cell = CellProgress(self.publish, kind=kind, ui_base=self._ui_base)
        if kind == "classic":
            # the poller runs in this cell's context: its displays go under this cell
            self._stop = threading.Event()
            ctx = contextvars.copy_context()
            self._poller = threading.Thread(target=ctx.run, args=(self._poll, self.cell, self._stop),
                                            name="spark-progress", daemon=True)
            self._poller.start()

    def _poll(self, cell: CellProgress, stop: threading.Event) -> None:
        while not stop.wait(self.poll_interval):
            ses = self._attach()
            if ses is None:
                continue
            spark, sc = ses
            if self.is_connect(spark):   # the session came up as Connect: the handler reports
                cell.kind = "connect"
                return
            cell.ui_base = cell.ui_base or self._ui_base
            try:
                cell.classic_update(read_status_tracker(sc, cell.jobs_seen))
            except Exception:  # noqa: BLE001 - e.g. the driver stopped meanwhile
                log.debug("reading the status tracker failed", exc_info=True)

    def post_run_cell(self, result=None) -> None:
        cell, self.cell = self.cell, None
        poller, self._poller = self._poller, None
        if poller is not None:
            self._stop.set()
            poller.join(timeout=2 * self.poll_interval + 1)
            # the last figures of jobs that ended between two polls
            ses = self.session()
            if cell is not None and ses is not None and not self.is_connect(ses[0]):
                try:
                    cell.classic_update(read_status_tracker(ses[1], cell.jobs_seen))
                except Exception:  # noqa: BLE001
                    pass
        if cell is not None:
            cell.finish(success=bool(getattr(result, "success", True)))
