"""A Spark standalone cluster made of local processes: one master and N workers.

This is the library behind ``jupyter-spark-openstack cluster start|status|stop`` and the
``local`` provisioner. Its state lives in a run directory (``state.json`` + logs), so a later
process (``cluster stop``, a restarted hub) can find and stop what an earlier one started.
Optionally it also runs a Spark Connect server (one driver shared by Connect kernels) against
the master, see :meth:`LocalCluster.start_connect`.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from . import connectserver, safefs
from .errors import ClusterError
from .models import parse_memory, parse_positive_int
from .spark import connect as spark_connect
from .spark import daemons
from .spark.master_client import fetch_master_state, wait_for_master, wait_for_workers
from .spark.ports import free_ports, master_url, webui_url


def default_run_dir(name: str = "local-cluster") -> Path:
    """``$JUPYTER_RUNTIME_DIR/spark-openstack/<name>`` (jupyter_core's runtime dir)."""
    from jupyter_core.paths import jupyter_runtime_dir  # noqa: PLC0415

    return Path(jupyter_runtime_dir()) / "spark-openstack" / name


def auth_properties(secret: str | None) -> dict[str, str]:
    if not secret:
        return {}
    return {"spark.authenticate": "true", "spark.authenticate.secret": secret}


class LocalCluster:
    """Master + workers as local processes, recorded in ``run_dir/state.json``."""

    def __init__(self, run_dir: str | os.PathLike | None = None):
        self.run_dir = Path(run_dir) if run_dir else default_run_dir()

    # ---- state -------------------------------------------------------------------------
    @property
    def state_file(self) -> Path:
        return self.run_dir / "state.json"

    def load_state(self) -> dict | None:
        try:
            return safefs.read_json(self.state_file)
        except (ValueError, safefs.UnsafePathError):
            return None

    def _save_state(self, state: dict) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        safefs.write_json_atomic(self.state_file, state)

    def is_running(self) -> bool:
        state = self.load_state()
        return bool(state) and bool(state.get("master")) and daemons.is_running(state["master"])

    # ---- lifecycle ---------------------------------------------------------------------
    def start_master(self, *, host: str = "127.0.0.1", secret: str | None = None,
                     timeout: float = 90.0, port: int | None = None,
                     webui_port: int | None = None, nice: int = 0,
                     user: daemons.DaemonUser | None = None, ui_host: str | None = None,
                     properties: dict[str, str] | None = None,
                     ui_token: str | None = None) -> dict:
        """Start the master only (workers come from :meth:`add_worker` or a provisioner), see
        :func:`start_master_process`. The master is recorded in ``state.json`` before its
        process exists."""
        if self.is_running():
            raise ClusterError(f"a cluster is already running from {self.run_dir}: stop it first")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.run_dir, 0o700)
        try:
            state = start_master_process(
                self.run_dir, host=host, secret=secret, timeout=timeout, port=port,
                webui_port=webui_port, nice=nice, user=user, ui_host=ui_host,
                properties=properties, ui_token=ui_token,
                record=lambda st: self._save_state({**st, "workers": []}))
        except BaseException:
            self.stop()   # its master is stopped already: this removes the state file
            raise
        return {**state, "workers": []}   # as its last record() saved it

    def add_worker(self, *, cores: int, memory: str, name: str | None = None,
                   secret: str | None = None, extra_env: dict[str, str] | None = None) -> dict:
        """Start one worker joining this cluster's master; recorded before it is started."""
        state = self.load_state()
        if not state:
            raise ClusterError(f"no cluster in {self.run_dir}")
        idx = len(state["workers"]) + 1
        name = name or f"worker-{idx}"
        (webui,) = free_ports(1, state["host"])
        rec = daemons.start_worker(self.run_dir, master_url=state["master_url"],
                                   host=state["host"], cores=cores, memory=memory,
                                   webui_port=webui, name=name,
                                   properties=auth_properties(secret), extra_env=extra_env)
        state = self.load_state() or state
        state["workers"].append(rec)
        self._save_state(state)
        return rec

    def remove_worker(self, name: str) -> bool:
        state = self.load_state()
        if not state:
            return False
        for rec in list(state["workers"]):
            if rec.get("name") == name:
                daemons.stop_daemon(rec)
                state["workers"].remove(rec)
                self._save_state(state)
                return True
        return False

    def start(self, workers: int = 2, worker_cores: int = 1, worker_memory: str = "1g", *,
              host: str = "127.0.0.1", secret: str | None = None, timeout: float = 120.0,
              connect: bool = False, connect_options: dict | None = None) -> dict:
        """Start a master and ``workers`` workers; return once all are ALIVE on the master.

        ``connect=True`` also starts a Spark Connect server (in parallel with the workers;
        ``connect_options`` go to :meth:`start_connect`) and returns once it answers too."""
        workers = parse_positive_int("workers", workers, maximum=64)
        worker_cores = parse_positive_int("worker_cores", worker_cores, maximum=256)
        worker_memory = parse_memory("worker_memory", worker_memory)
        if connect:  # refuse bad Connect options before any process starts
            spark_connect.parse_connect_host("host", host)
            spark_connect.parse_connect_options(connect_options or {})
        state = self.start_master(host=host, secret=secret, timeout=timeout)
        try:
            for _ in range(workers):
                self.add_worker(cores=worker_cores, memory=worker_memory, secret=secret)
            if connect:
                self.start_connect(secret=secret, wait=False, **(connect_options or {}))
            state = self.load_state()
            wait_for_workers(state["webui_url"], workers, timeout,
                             is_alive=lambda: all(daemons.is_running(r) for r in state["workers"]))
            if connect:
                self.wait_connect(timeout)
        except BaseException as e:
            tails = "\n".join(log_tail(r["log"]) for r in (self.load_state() or {}).get("workers", []))
            self.stop()
            if isinstance(e, ClusterError):
                raise ClusterError(f"{e}\n{tails}") from None
            raise
        return self.load_state()

    # ---- Spark Connect -----------------------------------------------------------------
    @property
    def connect_token_file(self) -> Path:
        return self.run_dir / spark_connect.TOKEN_FILE_NAME

    def start_connect(self, *, token: str | None = None, secret: str | None = None,
                      driver_memory: object = None, conf=None, python: str | None = None,
                      port: int | None = None, wait: bool = True, timeout: float = 120.0) -> dict:
        """Start a Spark Connect server against this cluster's master, bound to loopback.

        Its token (``token`` or a fresh one) is written to :attr:`connect_token_file` (0600),
        never to ``state.json``; ``secret`` is the cluster's ``spark.authenticate`` secret.
        With ``wait`` it returns once the server answers an authenticated RPC; a server that
        fails to start is stopped and forgotten. Returns the server's record."""
        state = self.load_state()
        if not state or not self.is_running():
            raise ClusterError(f"no cluster running in {self.run_dir}: start it first")
        if spark_connect.is_running(state.get("connect")):
            raise ClusterError(f"a Spark Connect server is already running for {self.run_dir} "
                               f"on {state['connect']['url']}")
        opts = spark_connect.parse_connect_options(
            {"driver_memory": driver_memory, "conf": conf, "port": port})

        def record(rec: dict) -> None:   # before the process exists (found by its marker)
            self._save_state({**(self.load_state() or state), "connect": rec})

        try:
            rec = connectserver.start_server(
                self.run_dir, self.connect_token_file, master_url=state["master_url"],
                token=token, host=state["host"], secret=secret, python=python, record=record,
                **opts)
        except BaseException:
            self.stop_connect()   # forgets the record of a server that did not start
            raise
        record(rec)
        if wait:
            self.wait_connect(timeout)
        return rec

    def wait_connect(self, timeout: float = 120.0) -> dict:
        """Wait for the recorded Connect server to answer; stop and forget it if it cannot."""
        state = self.load_state() or {}
        rec = state.get("connect")
        if not rec:
            raise ClusterError(f"no Spark Connect server recorded in {self.run_dir}")
        try:
            rec = connectserver.wait_ready(rec, timeout)
        except BaseException:
            self.stop_connect()
            raise
        state["connect"] = rec
        self._save_state(state)
        return rec

    def stop_connect(self) -> int | None:
        """Stop the Connect server if one is recorded; returns its pid. Idempotent."""
        state = self.load_state()
        rec = (state or {}).get("connect")
        if not rec:
            return None
        connectserver.stop_server({"token_file": str(self.connect_token_file), **rec})
        state = self.load_state() or state
        state.pop("connect", None)
        self._save_state(state)
        return rec["pid"]

    def status(self) -> dict:
        """``{"running", "master_url", "webui_url", "workers": [...], "apps": [...]}``."""
        state = self.load_state()
        if not state:
            return {"running": False, "master_url": None, "webui_url": None, "workers": [],
                    "connect": None, "run_dir": str(self.run_dir)}
        running = self.is_running()
        ms = fetch_master_state(state["webui_url"], timeout=3.0) if running else None
        crec = state.get("connect")
        return {
            "running": running,
            "master_url": state["master_url"],
            "connect": ({"url": crec["url"], "port": crec["port"], "pid": crec["pid"],
                         "running": spark_connect.is_running(crec), "log": crec["log"],
                         "token_file": crec.get("token_file")} if crec else None),
            "webui_url": state["webui_url"],
            "run_dir": str(self.run_dir),
            "reachable": bool(ms and ms.reachable),
            "workers": [
                {"id": w.id, "host": w.host, "state": w.state, "cores": w.cores,
                 "cores_used": w.cores_used, "memory_mb": w.memory_mb,
                 "memory_used_mb": w.memory_used_mb}
                for w in (ms.workers if ms and ms.reachable else [])
            ],
            "apps": [
                {"id": a.id, "name": a.name, "cores": a.cores,
                 "memory_per_executor_mb": a.memory_per_executor_mb, "state": a.state}
                for a in (ms.active_apps if ms and ms.reachable else [])
            ],
            "processes": [
                {"role": r["role"], "name": r.get("name", "master"), "pid": r["pid"],
                 "running": daemons.is_running(r), "log": r["log"]}
                for r in [*([state["master"]] if state.get("master") else []), *state["workers"],
                          *([crec] if crec else [])]
            ],
        }

    def stop(self, *, remove_state: bool = True) -> list[int]:
        """Stop workers then master; returns the pids stopped. Idempotent."""
        state = self.load_state()
        if not state:
            return []
        pids = []
        errors = []
        if state.get("connect"):
            try:
                pids.append(self.stop_connect())
            except ClusterError as e:
                errors.append(str(e))
        for rec in [*state.get("workers", []), *([state["master"]] if state.get("master") else [])]:
            try:
                daemons.stop_daemon(rec)
                pids.append(rec["pid"])
            except ClusterError as e:
                errors.append(str(e))
        if errors:
            raise ClusterError("; ".join(errors))
        if remove_state:
            self.state_file.unlink(missing_ok=True)
            shutil.rmtree(self.run_dir / "work", ignore_errors=True)
            for p in self.run_dir.glob("*.properties"):
                p.unlink(missing_ok=True)
        return pids


def start_master_process(run_dir: str | os.PathLike, *, host: str = "127.0.0.1",
                         secret: str | None = None, timeout: float = 90.0,
                         port: int | None = None, webui_port: int | None = None, nice: int = 0,
                         user: daemons.DaemonUser | None = None, ui_host: str | None = None,
                         properties: dict[str, str] | None = None, ui_token: str | None = None,
                         record: Callable[[dict], None] | None = None) -> dict:
    """Start a Spark master with its logs under ``run_dir`` and wait until it answers;
    returns ``{"master": <its process record>, "host", "master_url", "webui_url",
    "authenticate"}``. ``nice`` > 0 runs it at lower CPU priority; ``user``: who it runs as;
    ``ui_host``: where its web UI binds (default ``host``); ``properties``: more Spark
    properties; ``ui_token``: the UI guard's token, if its properties put one in front of the
    UI. ``record`` is called with that dict (``master`` the record of a process about to
    start) before the process exists, so the caller's store can find it if this one dies,
    and last with the dict this returns, once the process runs.
    A master that does not come up is stopped and the error carries its log's last lines."""
    fixed = bool(port or webui_port)
    for attempt in range(1 if fixed else 3):
        p, w = free_ports(2, host)
        p, w = port or p, webui_port or w
        uhost = ui_host or host
        state = {"master": None, "host": host,
                 "master_url": master_url(host, p), "webui_url": webui_url(uhost, w),
                 "authenticate": bool(secret)}
        rec = daemons.start_master(
            Path(run_dir), host=host, port=p, webui_port=w,
            properties={**auth_properties(secret),
                        # a taken port fails the start (retried below) instead of moving
                        # silently to +1
                        "spark.port.maxRetries": "0", **(properties or {})},
            nice=nice, user=user, ui_host=ui_host,
            record=(lambda r, state=state: record({**state, "master": r})) if record else None)
        state["master"] = rec
        if record:
            record(dict(state))
        try:
            wait_for_master(state["webui_url"], timeout, ui_token=ui_token,
                            is_alive=lambda rec=rec: daemons.is_running(rec))
            return state
        except ClusterError as e:
            how = daemons.exit_status(rec)   # collected before stop_daemon reaps it
            tail = (f"(the master process: {how})\n" if how else "") + log_tail(rec["log"])
            daemons.stop_daemon(rec)
            # ports are chosen free, then bound by the JVM seconds later: another process may
            # take one in between on a busy host; choose new ones and try again
            if attempt < 2 and not fixed and ("Address already in use" in tail or "BindException" in tail):
                continue
            raise ClusterError(f"{e}\n{tail}") from None
    raise AssertionError("unreachable")


def log_tail(path: str, lines: int = 15) -> str:
    try:
        with open(path, errors="replace") as f:
            data = f.readlines()[-lines:]
        return f"--- last lines of {path} ---\n" + "".join(data)
    except OSError:
        return ""
