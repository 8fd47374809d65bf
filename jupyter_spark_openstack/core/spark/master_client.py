"""Reading a Spark standalone master's ``/json/`` into plain, typed data."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field

from .ports import master_json_url


@dataclass
class WorkerInfo:
    id: str
    host: str
    state: str
    cores: int
    cores_used: int
    memory_mb: int
    memory_used_mb: int
    last_heartbeat: int | None = None
    webui: str | None = None


@dataclass
class AppInfo:
    id: str
    name: str
    user: str
    state: str
    cores: int
    memory_per_executor_mb: int
    start_time: int | None
    duration_ms: int | None


@dataclass
class MasterState:
    """What the master says about itself. ``reachable`` False means the rest is empty."""

    webui_url: str
    reachable: bool
    url: str | None = None
    status: str | None = None
    error: str | None = None
    workers: list[WorkerInfo] = field(default_factory=list)
    active_apps: list[AppInfo] = field(default_factory=list)
    completed_apps: list[AppInfo] = field(default_factory=list)
    fetched_at: float = field(default_factory=time.time)

    @property
    def alive_workers(self) -> list[WorkerInfo]:
        return [w for w in self.workers if w.state == "ALIVE"]

    @property
    def cores(self) -> int:
        return sum(w.cores for w in self.alive_workers)

    @property
    def cores_used(self) -> int:
        return sum(w.cores_used for w in self.alive_workers)

    @property
    def memory_mb(self) -> int:
        return sum(w.memory_mb for w in self.alive_workers)

    @property
    def memory_used_mb(self) -> int:
        return sum(w.memory_used_mb for w in self.alive_workers)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(cores=self.cores, cores_used=self.cores_used, memory_mb=self.memory_mb,
                 memory_used_mb=self.memory_used_mb, alive_workers=len(self.alive_workers))
        return d


def _app(a: dict) -> AppInfo:
    return AppInfo(
        id=a.get("id", ""), name=a.get("name", ""), user=a.get("user", ""),
        state=a.get("state", ""), cores=int(a.get("cores", 0) or 0),
        memory_per_executor_mb=int(a.get("memoryperexecutor", a.get("memoryperslave", 0)) or 0),
        start_time=a.get("starttime"), duration_ms=a.get("duration"),
    )


def parse_master_json(webui_url: str, data: dict) -> MasterState:
    workers = [
        WorkerInfo(
            id=w.get("id", ""), host=w.get("host", ""), state=w.get("state", ""),
            cores=int(w.get("cores", 0) or 0), cores_used=int(w.get("coresused", 0) or 0),
            memory_mb=int(w.get("memory", 0) or 0), memory_used_mb=int(w.get("memoryused", 0) or 0),
            last_heartbeat=w.get("lastheartbeat"), webui=w.get("webuiaddress"),
        )
        for w in data.get("workers", [])
    ]
    return MasterState(
        webui_url=webui_url, reachable=True, url=data.get("url"), status=data.get("status"),
        workers=workers,
        active_apps=[_app(a) for a in data.get("activeapps", [])],
        completed_apps=[_app(a) for a in data.get("completedapps", [])],
    )


def http_get(url: str, timeout: float, ui_token: str | None = None) -> str:
    """One blocking GET of a Spark UI page, with the cluster's UI guard token (``ui_token``,
    default: ``$SPARK_OPENSTACK_UI_TOKEN_FILE``'s, see :mod:`.uiguard`); raises like urllib."""
    from . import uiguard  # noqa: PLC0415

    req = urllib.request.Request(url, headers=uiguard.headers(ui_token))
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return resp.read().decode("utf-8", "replace")


def error_text(e: BaseException) -> str:
    """A short reason for a failed read: ``"timed out"``, ``"Connection refused"``, ..."""
    reason = getattr(e, "reason", None)
    if isinstance(reason, BaseException):
        reason = getattr(reason, "strerror", None) or str(reason)
    if isinstance(e, TimeoutError) or "timed out" in str(reason or e):
        return "timed out"
    return str(reason or e) or type(e).__name__


def fetch_master_state(webui_url: str, timeout: float = 5.0,
                       ui_token: str | None = None) -> MasterState:
    """GET ``{webui_url}/json/``; an unreachable master is a state, not an exception.
    ``ui_token``: the cluster's UI guard token (default: ``$SPARK_OPENSTACK_UI_TOKEN_FILE``'s,
    see :mod:`.uiguard`)."""
    try:
        data = json.loads(http_get(master_json_url(webui_url), timeout, ui_token))
    except (urllib.error.URLError, OSError, ValueError) as e:
        return MasterState(webui_url=webui_url, reachable=False, error=error_text(e))
    return parse_master_json(webui_url, data)


async def afetch_master_state(webui_url: str, timeout: float = 5.0,
                              ui_token: str | None = None) -> MasterState:
    return await asyncio.to_thread(fetch_master_state, webui_url, timeout, ui_token)


def wait_for_master(webui_url: str, timeout: float = 60.0, is_alive=None,
                    ui_token: str | None = None) -> MasterState:
    """Poll until the master answers ``/json/`` (``is_alive()`` False aborts early)."""
    deadline = time.monotonic() + timeout
    state = None
    died = False
    while time.monotonic() < deadline:
        state = fetch_master_state(webui_url, timeout=2.0, ui_token=ui_token)
        if state.reachable:
            return state
        if is_alive is not None and not is_alive():
            died = True
            break
        time.sleep(0.25)
    from ..errors import ClusterError  # noqa: PLC0415

    what = "exited before its web UI answered" if died else f"did not answer within {timeout:.0f}s"
    raise ClusterError(f"Spark master at {webui_url} {what}"
                       + (f": {state.error}" if state and state.error else ""))


def wait_for_workers(webui_url: str, n: int, timeout: float = 120.0, is_alive=None) -> MasterState:
    """Poll until ``n`` workers are ALIVE on the master."""
    deadline = time.monotonic() + timeout
    state = None
    while time.monotonic() < deadline:
        state = fetch_master_state(webui_url, timeout=2.0)
        if state.reachable and len(state.alive_workers) >= n:
            return state
        if is_alive is not None and not is_alive():
            break
        time.sleep(0.25)
    from ..errors import ClusterError  # noqa: PLC0415

    have = len(state.alive_workers) if state and state.reachable else 0
    raise ClusterError(f"only {have} of {n} Spark workers registered with {webui_url} within {timeout:.0f}s")
