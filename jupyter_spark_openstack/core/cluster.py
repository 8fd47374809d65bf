"""The lifecycle of one user's Spark cluster: master, workers, (Connect server), kernelspecs.

:class:`SparkCluster` is driven by the spawner but knows nothing of JupyterHub. Its whole
state is a JSON-able dict (:meth:`SparkCluster.get_state`) that is saved the moment anything
is created (``on_change`` callback), so a hub that restarts can still find and delete
everything (:meth:`SparkCluster.from_state`). Progress goes to an ``emit(percent, message)``
callback a person can follow.

Order of start: secret -> master -> capacity check -> workers requested in parallel (each record
saved as soon as the backend returns its id) -> wait until every worker is registered with the
master (a failed worker fails the start at once, with its log) -> done. Any failure deletes
everything already created before the error is raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ClusterError, ProvisionerError, ValidationError
from .localcluster import LocalCluster
from .models import parse_master_url
from .options import ClusterOptions
from .provisioners.base import Provisioner, WorkerRecord, WorkerSpec
from .spark import daemons
from .spark.master_client import afetch_master_state

log = logging.getLogger(__name__)

Emit = Callable[[int, str], None]


def safe_id(*parts: str) -> str:
    """``("hub", "Alice@x", "")`` -> ``"hub-alice-x"``: usable in paths, VM names, tags."""
    text = "-".join(p for p in parts if p)
    text = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    return re.sub(r"-{2,}", "-", text)[:63] or "cluster"


@dataclass
class ClusterConfig:
    """Hub-wide settings of the lifecycle (the spawner fills it from its traitlets)."""

    hub_id: str = "jupyterhub"
    master_mode: str = "per-user"            # or "shared"
    master_host: str = "127.0.0.1"           # the interface per-user masters bind to
    shared_master_url: str | None = None
    shared_master_webui_url: str | None = None
    start_timeout: float = 300.0             # master + all workers registered
    patience_interval: float = 15.0          # "still waiting" message every N seconds
    authenticate: bool = True                # per-user spark.authenticate secret
    connect_server: bool = True              # a per-user Spark Connect server (one driver)
    connect_driver_memory: str = "1g"
    connect_conf: dict = field(default_factory=dict)
    connect_python: str | None = None        # executors' Python for UDFs (default: this one)
    daemon_nice: int = 0                     # niceness of the per-user master + Connect server
    master_start_slots: int = 0              # per-user masters starting at once (0: no limit)
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        daemons.check_nice(self.daemon_nice, "spark_daemon_nice")
        if isinstance(self.master_start_slots, bool) or not isinstance(self.master_start_slots, int) \
                or self.master_start_slots < 0:
            raise ValidationError("master_start_slots", self.master_start_slots,
                                  "an integer >= 0 (0: no limit)")
        if self.master_mode not in ("per-user", "shared"):
            raise ValidationError("master_mode", self.master_mode, "'per-user' or 'shared'")
        if self.master_mode == "shared":
            if not self.shared_master_url:
                raise ValidationError("shared_master_url", self.shared_master_url,
                                      "a spark://host:port URL when master_mode is 'shared'")
            parse_master_url("shared_master_url", self.shared_master_url)
            if not self.shared_master_webui_url:
                raise ValidationError("shared_master_webui_url", self.shared_master_webui_url,
                                      "the shared master's web UI URL (http://host:8080) when master_mode is 'shared'")


_START_GATES: dict[tuple[int, int], asyncio.Semaphore] = {}


def _start_gate(slots: int) -> asyncio.Semaphore | None:
    """The semaphore shared by every cluster of this process (and event loop) that starts a
    per-user master: ``slots`` JVMs booting at once on a 2-core host finish sooner one group
    after another than all together, and leave the hub some CPU."""
    if slots <= 0:
        return None
    key = (id(asyncio.get_running_loop()), slots)
    gate = _START_GATES.get(key)
    if gate is None:
        gate = _START_GATES[key] = asyncio.Semaphore(slots)
    return gate


class SparkCluster:
    """One user's cluster. Create with :meth:`new` (to start) or :meth:`from_state` (to find
    and stop one a previous hub process started)."""

    def __init__(self, config: ClusterConfig, provisioner: Provisioner, state: dict, *,
                 emit: Emit | None = None, on_change: Callable[[], None] | None = None,
                 logger: logging.Logger | None = None):
        self.log = logger or log
        self.config = config
        self.provisioner = provisioner
        self.state = state
        self.emit: Emit = emit or (lambda p, m: None)
        self.on_change = on_change or (lambda: None)

    # ---- construction ------------------------------------------------------------------
    @classmethod
    def new(cls, config: ClusterConfig, provisioner: Provisioner, *, owner: str,
            options: ClusterOptions, run_dir: str | os.PathLike, server_name: str = "",
            **kw) -> SparkCluster:
        state = {
            "cluster_id": safe_id(config.hub_id, owner, server_name),
            "owner": owner, "server_name": server_name, "hub_id": config.hub_id,
            "provisioner": provisioner.name, "run_dir": str(run_dir),
            "options": options.to_dict(),
            "size": {"name": options.size.name, "cores": options.size.cores,
                     "memory": options.size.memory, "flavor": options.size.flavor},
            "workers": options.workers, "cores": options.total_cores,
            "memory_mb": options.total_memory_mb,
            "master": None, "records": [], "started_at": None, "phase": "new",
        }
        return cls(config, provisioner, state, **kw)

    @classmethod
    def from_state(cls, config: ClusterConfig, provisioner: Provisioner, state: dict,
                   **kw) -> SparkCluster:
        return cls(config, provisioner, dict(state), **kw)

    def get_state(self) -> dict:
        return dict(self.state)

    # ---- accessors ---------------------------------------------------------------------
    @property
    def run_dir(self) -> Path:
        return Path(self.state["run_dir"])

    @property
    def cluster_id(self) -> str:
        return self.state["cluster_id"]

    @property
    def master_url(self) -> str | None:
        m = self.state.get("master")
        return m and m.get("master_url")

    @property
    def webui_url(self) -> str | None:
        m = self.state.get("master")
        return m and m.get("webui_url")

    @property
    def secret_file(self) -> str | None:
        return self.state.get("secret_file")

    @property
    def records(self) -> list[WorkerRecord]:
        return [WorkerRecord.from_dict(r) for r in self.state.get("records", [])]

    def _save(self, **changes) -> None:
        """Record a change: in ``<run_dir>/cluster.json`` (found by the reconciler even if the
        hub's database never got it) and through ``on_change`` (the hub's database)."""
        self.state.update(changes)
        try:
            if self.run_dir.exists():
                tmp = self.run_dir / "cluster.json.tmp"
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w") as f:
                    json.dump(self.state, f)
                os.replace(tmp, self.run_dir / "cluster.json")
            self.on_change()
        except Exception:  # persisting must never break the lifecycle
            self.log.exception("saving cluster state failed")

    # ---- start -------------------------------------------------------------------------
    async def start(self) -> dict:
        """Start master and workers; returns the state once every worker is registered."""
        t0 = time.monotonic()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.run_dir, 0o700)
        try:
            secret = self._make_secret() if self.config.authenticate and self.config.master_mode == "per-user" else None
            await self._start_master(secret)
            if self.config.connect_server:
                await self._start_connect(secret)
            await self._start_workers(secret, t0)
            if self.config.connect_server:
                await self._wait_connect(t0)
        except BaseException as e:
            self.emit(95, f"Spawn failed, cleaning up: {e}")
            try:
                await self.stop()
            except Exception:
                log.exception("cleanup after a failed start of %s failed", self.cluster_id)
            if isinstance(e, ProvisionerError | ValidationError | ClusterError):
                raise
            if isinstance(e, asyncio.CancelledError | KeyboardInterrupt):
                raise
            raise ClusterError(f"{type(e).__name__}: {e}") from e
        self._save(started_at=time.time(), phase="running")
        return self.get_state()

    def _make_secret(self) -> str:
        secret = secrets.token_urlsafe(32)
        path = self.run_dir / "spark-secret"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secret)
        self._save(secret_file=str(path))
        return secret

    def read_secret(self) -> str | None:
        if not self.secret_file:
            return None
        try:
            return Path(self.secret_file).read_text().strip()
        except OSError:
            return None

    async def _start_master(self, secret: str | None) -> None:
        if self.config.master_mode == "shared":
            self._save(master={"mode": "shared", "master_url": self.config.shared_master_url,
                               "webui_url": self.config.shared_master_webui_url}, phase="master")
            self.emit(10, f"Using the shared Spark master {self.config.shared_master_url}")
            return
        gate = _start_gate(self.config.master_start_slots)
        if gate is not None and gate.locked():
            self.emit(3, f"Waiting to start the Spark master: {self.config.master_start_slots} "
                         "other users' masters are starting on this host")
        async with gate if gate is not None else contextlib.nullcontext():
            self.emit(5, "Starting Spark master")
            lc = LocalCluster(self.run_dir / "master")
            self._save(master={"mode": "per-user", "run_dir": str(lc.run_dir)}, phase="master")
            st = await asyncio.to_thread(lc.start_master, host=self.config.master_host,
                                         secret=secret, timeout=min(120.0, self.config.start_timeout),
                                         nice=self.config.daemon_nice)
        self._save(master={"mode": "per-user", "run_dir": str(lc.run_dir),
                           "master_url": st["master_url"], "webui_url": st["webui_url"],
                           "process": st["master"]})
        self.emit(20, f"Spark master ready at {st['master_url']}")

    def connect_defaults(self) -> dict[str, str]:
        """The Connect server is the user's one long-lived driver. It starts one executor per
        worker at once (the first query is fast) and gives them back after 60 s idle (dynamic
        allocation, shuffle tracking), so a classic kernel of the same user gets cores too.
        Admins override any of these with ``connect_conf``."""
        size = self.state["size"]
        return {
            "spark.executor.memory": size["memory"],
            "spark.executor.cores": str(size["cores"]),
            "spark.cores.max": str(self.state["cores"]),
            "spark.dynamicAllocation.enabled": "true",
            "spark.dynamicAllocation.shuffleTracking.enabled": "true",
            "spark.dynamicAllocation.minExecutors": "0",
            "spark.dynamicAllocation.initialExecutors": str(self.state["workers"]),
            "spark.dynamicAllocation.executorIdleTimeout": "60s",
            "spark.dynamicAllocation.shuffleTracking.timeout": "60s",
        }

    async def _start_connect(self, secret: str | None) -> None:
        """Start the user's Spark Connect server now; it becomes ready while workers boot."""
        from .spark import connect  # noqa: PLC0415

        self.emit(22, "Starting Spark Connect server")
        token = connect.generate_token()
        token_file = connect.write_token_file(self.run_dir / "connect.token", token)
        conf = {**self.connect_defaults(), **self.config.connect_conf}
        rec = await asyncio.to_thread(
            connect.start_connect_server, self.run_dir / "connect", master_url=self.master_url,
            token=token, host="127.0.0.1", driver_memory=self.config.connect_driver_memory,
            conf=conf, secret=secret, python=self.config.connect_python,
            app_name=f"spark-connect-{self.state['owner']}", nice=self.config.daemon_nice)
        rec["token_file"] = token_file
        self._save(connect=rec)  # recorded the moment the process exists

    async def _wait_connect(self, t0: float) -> None:
        from .spark import connect  # noqa: PLC0415

        rec = self.state["connect"]
        token = connect.read_token_file(rec["token_file"])
        left = max(30.0, self.config.start_timeout - (time.monotonic() - t0))
        version = await asyncio.to_thread(connect.wait_connect_ready, rec, token, left)
        self._save(connect={**rec, "spark_version": version})
        self.emit(93, f"Spark Connect server ready at {rec['url']}")

    async def _stop_connect(self) -> None:
        from .spark import connect  # noqa: PLC0415

        rec = self.state.get("connect")
        if not rec:
            return
        await asyncio.to_thread(connect.stop_connect_server, rec)
        if rec.get("token_file"):
            Path(rec["token_file"]).unlink(missing_ok=True)
        self._save(connect=None)

    def _specs(self, secret: str | None) -> list[WorkerSpec]:
        s = self.state
        size = s["size"]
        return [
            WorkerSpec(hub_id=s["hub_id"], owner=s["owner"], cluster_id=s["cluster_id"],
                       name=f"{s['cluster_id']}-w{i}", index=i, cores=size["cores"],
                       memory=size["memory"], master_url=self.master_url, secret=secret,
                       size=size["name"], flavor=size.get("flavor"),
                       server_name=s["server_name"])
            for i in range(1, s["workers"] + 1)
        ]

    async def _start_workers(self, secret: str | None, t0: float) -> None:
        specs = self._specs(secret)
        n = len(specs)
        await self.provisioner.check_capacity(specs)
        self.emit(25, f"Requested {n} worker{'s' if n != 1 else ''} "
                      f"({self.state['size']['name']}: {self.state['size']['cores']} cores, "
                      f"{self.state['size']['memory']} each)")
        self._save(phase="workers")

        async def request(spec: WorkerSpec) -> WorkerRecord:
            rec = await self.provisioner.request_worker(spec)
            # recorded the moment the backend gave us an id
            self._save(records=[*self.state["records"], rec.to_dict()])
            return rec

        results = await asyncio.gather(*(request(s) for s in specs), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]
        await self._wait_registered(n, t0)

    def _matches(self, worker, records: list[WorkerRecord], hosts: set[str] = frozenset()) -> bool:
        """Is this worker (from the master's /json/) one of ours? Always on a per-user master;
        on a shared master by its web UI port (local workers) or by the host the provisioner
        reports for our workers (VMs: one address each)."""
        if self.config.master_mode == "per-user":
            return True
        if worker.host and worker.host in hosts:
            return True
        for r in records:
            d = r.data or {}
            if d.get("webui_port") and worker.webui and worker.webui.endswith(f":{d['webui_port']}"):
                return True
            if d.get("worker_host") and worker.host == d["worker_host"]:
                return True
        return False

    async def _wait_registered(self, n: int, t0: float) -> None:
        """Poll the master until ``n`` workers of ours are ALIVE, and the backend for failed
        workers. Both intervals grow the longer the wait (master 0.5 s -> 2 s, backend 2 s ->
        10 s): the first workers are noticed at once, and a hub where many users spawn at
        once (each waiting minutes on a busy cloud) is not kept busy polling."""
        deadline = t0 + self.config.start_timeout
        registered = 0
        last_msg = time.monotonic()
        last_status = 0.0
        poll, status_every = 0.5, 2.0
        unknown: dict[str, str] = {}
        hosts: dict[str, str] = {}
        while True:
            ms = await afetch_master_state(self.webui_url, timeout=3.0)
            records = self.records
            if ms.reachable:
                alive = [w for w in ms.alive_workers if self._matches(w, records, set(hosts.values()))]
                now = len(alive)
                for k in range(registered + 1, min(now, n) + 1):
                    self.emit(25 + int(65 * k / n), f"Worker {k}/{n} registered")
                    last_msg = time.monotonic()
                registered = max(registered, min(now, n))
                if registered >= n:
                    return
            if time.monotonic() - last_status > status_every:
                last_status = time.monotonic()
                status_every = min(status_every * 1.5, 10.0)
                for rec in records:
                    try:
                        st = await self.provisioner.worker_status(rec)
                    except ProvisionerError as e:
                        unknown[rec.name] = str(e)  # unknown, not gone: keep waiting
                        continue
                    unknown.pop(rec.name, None)
                    if st.host and not (rec.data or {}).get("webui_port"):
                        hosts[rec.name] = st.host  # no port to tell ours apart: by address
                    if st.state in ("failed", "gone"):
                        detail = st.message or ""
                        if not detail:
                            detail = await self.provisioner.worker_log(rec)
                        raise ClusterError(f"Spark worker {rec.name} {st.state}: {detail}".strip())
            elapsed = time.monotonic() - t0
            if time.monotonic() > deadline:
                hint = f" (backend errors: {'; '.join(sorted(set(unknown.values())))})" if unknown else ""
                raise ClusterError(
                    f"Timed out after {elapsed:.0f}s: {registered}/{n} Spark workers registered "
                    f"with {self.master_url}{hint}")
            if time.monotonic() - last_msg > self.config.patience_interval:
                self.emit(25 + int(65 * registered / n),
                          f"Still waiting for Spark workers: {registered}/{n} registered after {elapsed:.0f}s")
                last_msg = time.monotonic()
            await asyncio.sleep(poll)
            poll = min(poll * 1.2, 2.0)

    # ---- status ------------------------------------------------------------------------
    async def poll(self) -> str:
        """``running``, ``degraded`` (some worker failed), ``stopped`` or ``unknown``."""
        m = self.state.get("master") or {}
        if m.get("mode") == "per-user":
            proc = m.get("process")
            if not proc or not daemons.is_running(proc):
                return "stopped"
        states = []
        for rec in self.records:
            try:
                states.append((await self.provisioner.worker_status(rec)).state)
            except ProvisionerError:
                states.append("unknown")
        if "unknown" in states:
            return "unknown"
        if any(s in ("failed", "gone") for s in states):
            return "degraded"
        return "running"

    # ---- stop --------------------------------------------------------------------------
    async def stop(self, *, retries: int = 3) -> None:
        """Delete every worker (in parallel), stop the master, verify nothing remains."""
        self._save(phase="stopping")
        records = self.records
        self.log.info("stopping cluster %s: %d worker(s), master %s", self.cluster_id,
                      len(records), self.master_url)
        if records:
            self.emit(96, f"Deleting {len(records)} worker(s)")
        remaining = await self._delete_all(records, retries)
        self._save(records=[r.to_dict() for r in remaining])
        await self._stop_connect()
        m = self.state.get("master") or {}
        if m.get("mode") == "per-user" and m.get("run_dir"):
            pids = await asyncio.to_thread(LocalCluster(m["run_dir"]).stop)
            self.log.info("stopped the Spark master of %s (pids %s)", self.cluster_id, pids)
        # verify: nothing of ours is listed by the backend any more
        try:
            left = [r for r in await self.provisioner.list_workers(
                hub_id=self.state["hub_id"], owner=self.state["owner"])
                if r.cluster_id == self.cluster_id]
        except ProvisionerError as e:
            raise ClusterError(f"could not verify that {self.cluster_id}'s workers are gone: {e}") from e
        if left:
            remaining = await self._delete_all(left, retries)
            if remaining:
                self._save(records=[r.to_dict() for r in remaining])
                raise ClusterError(f"{len(remaining)} worker(s) of {self.cluster_id} could not be deleted: "
                                   + ", ".join(r.id for r in remaining))
        if remaining:
            raise ClusterError(f"{len(remaining)} worker(s) of {self.cluster_id} could not be deleted: "
                               + ", ".join(r.id for r in remaining))
        if self.secret_file:
            Path(self.secret_file).unlink(missing_ok=True)
        self._save(records=[], master=None, phase="stopped", secret_file=None)
        shutil.rmtree(self.run_dir / "master", ignore_errors=True)
        shutil.rmtree(self.run_dir / "connect", ignore_errors=True)
        (self.run_dir / "cluster.json").unlink(missing_ok=True)

    async def _delete_all(self, records: list[WorkerRecord], retries: int) -> list[WorkerRecord]:
        async def delete(rec: WorkerRecord) -> WorkerRecord | None:
            delay = 1.0
            for attempt in range(retries + 1):
                try:
                    await self.provisioner.delete_worker(rec)
                    return None
                except ProvisionerError as e:
                    log.warning("deleting worker %s (%s) failed (attempt %d): %s",
                                rec.name, rec.id, attempt + 1, e)
                    if attempt < retries:
                        await asyncio.sleep(delay)
                        delay *= 2
            return rec

        results = await asyncio.gather(*(delete(r) for r in records))
        return [r for r in results if r is not None]


async def stop_orphan_clusters(base_dir: str | os.PathLike, config: ClusterConfig,
                               provisioner: Provisioner, known: set[str], *,
                               grace: float = 300.0, logger: logging.Logger | None = None) -> list[str]:
    """Stop clusters recorded under ``base_dir/*/cluster.json`` that belong to this hub but to
    no running or pending server (``known`` cluster ids), once older than ``grace`` seconds.

    This covers what lives on the hub host (per-user master, Connect server) and their
    workers, for a hub killed mid-spawn whose database never saw the cluster."""
    logger = logger or log
    stopped = []
    for path in sorted(Path(base_dir).glob("*/cluster.json")):
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if state.get("hub_id") != config.hub_id or state.get("cluster_id") in known:
            continue
        if state.get("phase") == "stopped" or time.time() - path.stat().st_mtime < grace:
            continue
        logger.warning("reconciler: stopping orphan cluster %s of user %s (no running or "
                       "pending server owns it)", state.get("cluster_id"), state.get("owner"))
        try:
            await SparkCluster.from_state(config, provisioner, state, logger=logger).stop()
            stopped.append(state["cluster_id"])
        except Exception as e:  # noqa: BLE001 - next round tries again
            logger.error("reconciler: could not stop orphan cluster %s: %s", state.get("cluster_id"), e)
    return stopped
