"""The lifecycle of one user's Spark cluster: master, workers, (Connect server), kernelspecs.

:class:`SparkCluster` is driven by the spawner but knows nothing of JupyterHub. Its whole
state is one typed, versioned :class:`~.state.ClusterState`, written to ``<run_dir>/cluster.json``
(its one store, see :mod:`.state`) the moment anything is created, and then announced to
``on_change`` (the hub saves its reference), so a hub that restarts can still find and delete
everything (:meth:`SparkCluster.load`). Progress goes to an ``emit(percent, message)``
callback a person can follow.

Order of start: secret -> master -> capacity check -> workers requested in parallel (each record
saved as soon as the backend returns its id) -> wait until every worker is registered with the
master (a failed worker fails the start at once, with its log) -> done. Any failure deletes
everything already created before the error is raised.

Where things live (``run_dir`` = ``<base>/<user_key>``, see :mod:`.naming`):

* ``run_dir`` (0711, the hub's): ``cluster.json`` (the state, with the master's and Connect
  server's process records), the secret, and the daemons' logs. Nothing in it is writable by
  the user.
* ``run_dir/session-XXXX`` (0711, the hub's), made fresh at every start: ``conf/`` with each
  daemon's properties file (created new, owned by the user, 0600), the user's kernelspecs and
  her copies of the secret and the Connect token (the spawner writes them), and ``work/``
  (hers, 0700), where her daemons write.
* The daemons run as :attr:`ClusterConfig.daemon_user` (her uid and allow-listed environment).

A state read back (:meth:`SparkCluster.load`, :meth:`SparkCluster.from_state`) is checked
first: every path in it must lie under ``run_dir``, and ``run_dir`` under
:attr:`ClusterConfig.base_dir`; otherwise it is refused (:class:`~.safefs.UnsafePathError`)
and nothing is stopped or deleted from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import secrets
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import connectserver, naming, safefs
from . import state as statemod
from .errors import ClusterError, ProvisionerError, ValidationError
from .localcluster import start_master_process
from .models import parse_master_url
from .options import ClusterOptions
from .provisioners.base import Provisioner, WorkerRecord, WorkerSpec
from .spark import daemons, ports, uiguard
from .spark.master_client import afetch_master_state
from .state import (
    ClusterState,
    ConnectState,
    MasterState,
    StateRef,
    StateVersionError,
    UiGuardState,
)

log = logging.getLogger(__name__)

Emit = Callable[[int, str], None]


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
    #: what a per-user master waits for before it starts: ``master_start_slots`` JVMs booting
    #: at once on a small host finish sooner one group after another than all together, and
    #: leave the hub some CPU. The hub passes its own (one for all its clusters, see
    #: ``spawner.hubstate.HubState.start_gate``); None: one of this config's own (shared by
    #: the clusters started with it), or none without ``master_start_slots``
    start_gate: asyncio.Semaphore | None = field(default=None, compare=False, repr=False)
    #: who the user's daemons run as (uid, gid, allow-listed environment); None: this
    #: process's user and environment
    daemon_user: daemons.DaemonUser | None = None
    #: every cluster's run_dir must lie under this (checked on every state read back)
    base_dir: str | None = None
    #: where the web UIs of the master and the Connect server bind: loopback, reached
    #: through the notebook server's proxy (RPC binds to master_host)
    ui_host: str = "127.0.0.1"
    #: put the UI guard (a per-cluster token, :mod:`.spark.uiguard`) in front of the web UIs
    #: of the cluster's daemons and drivers on this host
    ui_guard: bool = False
    #: where each user's head (master + Connect server) runs: ``hub`` (this host) or
    #: ``cluster`` (a machine of her cluster, reached over TLS); None: the provisioner's default
    head_placement: str | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        naming.parse_hub_id("hub_id", self.hub_id)
        daemons.check_nice(self.daemon_nice, "spark_daemon_nice")
        if isinstance(self.master_start_slots, bool) or not isinstance(self.master_start_slots, int) \
                or self.master_start_slots < 0:
            raise ValidationError("master_start_slots", self.master_start_slots,
                                  "an integer >= 0 (0: no limit)")
        if self.start_gate is None and self.master_start_slots:
            self.start_gate = asyncio.Semaphore(self.master_start_slots)
        if self.head_placement is not None and self.head_placement not in HEAD_PLACEMENTS:
            raise ValidationError("head_placement", self.head_placement,
                                  "'hub' (her master and Connect server on the hub host), 'cluster' "
                                  "(on a head machine of her cluster) or None (the provisioner's default)")
        if self.head_placement == "cluster" and self.master_mode == "shared":
            raise ValidationError("head_placement", self.head_placement,
                                  "'hub' when master_mode is 'shared' (a shared master has no head)")
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


HEAD_PLACEMENTS = ("hub", "cluster")
#: the DNS name the head's certificate carries (each cluster has a CA of its own, so the
#: name need not be unique; clients verify it with ``grpc.ssl_target_name_override``)
HEAD_TLS_NAME = "connect.head.spark-openstack.internal"

class SparkCluster:
    """One user's cluster. Create with :meth:`new` (to start), or with :meth:`load` or
    :meth:`from_state` (to find and stop one a previous hub process started)."""

    def __init__(self, config: ClusterConfig, provisioner: Provisioner, state: ClusterState, *,
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
        state = ClusterState(
            cluster_id=naming.cluster_id(config.hub_id, owner, server_name),
            key=naming.user_key(owner, server_name), owner=owner, server_name=server_name,
            hub_id=config.hub_id, provisioner=provisioner.name, run_dir=str(run_dir),
            options=options.to_dict(),
            size=options.size,
            workers=options.workers, cores=options.total_cores,
            memory_mb=options.total_memory_mb, placement=head_placement(config, provisioner))
        return cls(config, provisioner, state, **kw)

    @classmethod
    def from_state(cls, config: ClusterConfig, provisioner: Provisioner,
                   state: ClusterState | dict, **kw) -> SparkCluster:
        """A cluster from a state (or its JSON form, migrated), once every path in it is
        checked (module docstring): a state naming paths elsewhere raises
        :class:`~.safefs.UnsafePathError`."""
        if isinstance(state, ClusterState):
            state.check_paths(config.base_dir)
        else:
            state = statemod.parse(state, config.base_dir)
        return cls(config, provisioner, state, **kw)

    @classmethod
    def load(cls, config: ClusterConfig, provisioner: Provisioner, ref: StateRef,
             **kw) -> SparkCluster | None:
        """The cluster ``ref`` names, from its ``cluster.json`` (checked as :func:`.state.read`
        does); ``None`` when there is none (it was stopped, and its file removed). Raises
        :class:`~.safefs.UnsafePathError` or :class:`~.state.StateVersionError` for a file
        that is refused, or one of another cluster."""
        try:
            state = statemod.read(ref.path, config.base_dir)
        except FileNotFoundError:
            return None
        except ValueError as e:   # not JSON
            raise StateVersionError(f"{ref.path} is not a cluster state: {e}") from None
        if state.cluster_id != ref.cluster_id:
            raise safefs.UnsafePathError(f"{ref.path} is cluster {state.cluster_id!r}, "
                                         f"not {ref.cluster_id!r}")
        return cls(config, provisioner, state, **kw)

    def get_state(self) -> dict:
        """The state's JSON form (what ``cluster.json`` holds)."""
        return self.state.to_dict()

    # ---- accessors ---------------------------------------------------------------------
    @property
    def run_dir(self) -> Path:
        return Path(self.state.run_dir)

    @property
    def cluster_id(self) -> str:
        return self.state.cluster_id

    @property
    def master_url(self) -> str | None:
        return self.state.master.master_url if self.state.master else None

    @property
    def webui_url(self) -> str | None:
        return self.state.master.webui_url if self.state.master else None

    @property
    def secret_file(self) -> str | None:
        return self.state.secret_file

    @property
    def session_dir(self) -> Path | None:
        """This start's directory of files the user reads (see the module docstring)."""
        return Path(self.state.session_dir) if self.state.session_dir else None

    @property
    def display_owner(self) -> str:
        return naming.printable(self.state.owner)

    @property
    def records(self) -> list[WorkerRecord]:
        """Every machine of the cluster: the workers and (placement ``cluster``) the head."""
        return list(self.state.records)

    @property
    def worker_records(self) -> list[WorkerRecord]:
        return [r for r in self.records if not r.is_head]

    @property
    def placement(self) -> str:
        """``hub`` or ``cluster`` (see :attr:`ClusterConfig.head_placement`)."""
        return self.state.placement

    def _save(self, **changes) -> None:
        """Record a change in the one store, ``<run_dir>/cluster.json`` (:mod:`.state`), then
        tell ``on_change`` (the hub saves its reference and summary). A start whose state
        cannot be written fails (what it made would be unrecorded); a stop goes on and logs."""
        self.state = self.state.evolve(**changes)
        try:
            if self.run_dir.exists():
                statemod.write(self.state)
        except OSError as e:
            if self.state.phase in ("stopping", "stopped"):
                self.log.exception("saving the state of %s failed", self.cluster_id)
            else:
                raise ClusterError(f"could not record the state of {self.cluster_id} in "
                                   f"{self.run_dir / statemod.STATE_FILE}: {e}") from e
        try:
            self.on_change()
        except Exception:  # the hub's reference is a copy: never break the lifecycle for it
            self.log.exception("telling the hub about the state of %s failed", self.cluster_id)

    # ---- start -------------------------------------------------------------------------
    async def start(self) -> dict:
        """Start master and workers; returns the state once every worker is registered."""
        t0 = time.monotonic()
        try:
            self._make_dirs()
            secret = self._make_secret() if self.config.authenticate and self.config.master_mode == "per-user" else None
            if self.placement == "cluster":
                await self._start_head(secret, t0)
            else:
                await self._start_master(secret)
                if self.config.connect_server:
                    await self._start_connect(secret)
            await self._start_workers(secret, t0)
            if self.config.connect_server:
                await (self._wait_head_connect(t0) if self.placement == "cluster"
                       else self._wait_connect(t0))
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

    def _make_dirs(self) -> None:
        """``run_dir`` (the hub's) and a fresh session directory (module docstring)."""
        safefs.make_dirs(self.run_dir.parent, 0o711)
        safefs.make_dir(self.run_dir, 0o711, exist_ok=True)
        for old in self.run_dir.glob("session-*"):  # of earlier starts (a hub that died)
            safefs.remove_tree(old)
        session = Path(tempfile.mkdtemp(prefix="session-", dir=self.run_dir))  # new, 0700
        self._save(session_dir=str(session))  # recorded the moment it exists
        os.chmod(session, 0o711)
        user = self.daemon_user_base
        safefs.make_dir(session / "conf", 0o711)
        safefs.make_dir(session / "work", 0o700, user.owner)
        safefs.make_dir(self.run_dir / "logs", 0o700, exist_ok=True)
        # also with placement 'cluster': a classic kernel's driver UI may be on this host
        if self.config.ui_guard:
            base = Path(self.config.base_dir) if self.config.base_dir else self.run_dir.parent
            classes = uiguard.classes_dir(base, daemons.spark_home_for(user.env))
            token = uiguard.generate_token()
            self._save(ui_guard=UiGuardState(
                classes=str(classes),
                token_file=safefs.write_file(self.run_dir / "ui-token", token, replace=True),
                user_token_file=safefs.write_file(session / "ui-token", token, 0o600,
                                                  user.owner)))

    @property
    def ui_token(self) -> str | None:
        """The token the UI guard asks for (None without the guard)."""
        g = self.state.ui_guard
        return uiguard.read_token(g.token_file if g else None)

    def _ui_guard_conf(self) -> dict[str, str]:
        g = self.state.ui_guard
        if not g:
            return {}
        return {**uiguard.ui_conf(g.user_token_file), "spark.driver.extraClassPath": g.classes}

    @property
    def daemon_user_base(self) -> daemons.DaemonUser:
        return self.config.daemon_user or daemons.DaemonUser(name=self.state.owner,
                                                            env=dict(os.environ))

    @property
    def daemon_user(self) -> daemons.DaemonUser:
        """Who this cluster's daemons run as, with this session's directories (and the UI
        guard's classes on the daemons' classpath)."""
        base = self.daemon_user_base
        env = dict(base.env)
        if self.state.ui_guard:
            env["SPARK_DAEMON_CLASSPATH"] = self.state.ui_guard.classes
        return dataclasses.replace(base, env=env, conf_dir=str(self.session_dir / "conf"),
                                   work_dir=str(self.session_dir / "work"))

    @property
    def spark_conf(self) -> dict[str, str]:
        """Properties every daemon and driver of this cluster on this host runs with: the
        hardening, the UI guard, and network encryption when workers are on other hosts
        (with a secret to key it), and the drivers' address (:attr:`driver_host`)."""
        conf = {**self.worker_conf, **self._ui_guard_conf()}
        if self.provisioner.remote_workers:
            conf["spark.driver.host"] = conf["spark.driver.bindAddress"] = self.driver_host
        return conf

    @property
    def driver_host(self) -> str:
        """Where the drivers of this cluster on this host (the Connect server, a classic
        kernel) listen for their executors: ``master_host`` when the workers are other machines
        (their executors call back), else loopback."""
        return self.config.master_host if self.provisioner.remote_workers else "127.0.0.1"

    @property
    def worker_conf(self) -> dict[str, str]:
        """Properties every worker runs with (``WorkerSpec.spark_conf``): the UI guard only
        for workers on this host (VMs are behind their security group)."""
        conf = dict(daemons.HARDENING)
        if self.provisioner.remote_workers and self.state.secret_file:
            conf["spark.network.crypto.enabled"] = "true"
        if not self.provisioner.remote_workers:
            conf.update(self._ui_guard_conf())
        return conf

    def _make_secret(self) -> str:
        secret = secrets.token_urlsafe(32)
        path = safefs.write_file(self.run_dir / "spark-secret", secret, 0o600, replace=True)
        self._save(secret_file=path)
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
            self._save(master=MasterState("shared", master_url=self.config.shared_master_url,
                                          webui_url=self.config.shared_master_webui_url),
                       phase="master")
            self.emit(10, f"Using the shared Spark master {self.config.shared_master_url}")
            return
        gate = self.config.start_gate
        if gate is not None and gate.locked():
            self.emit(3, f"Waiting to start the Spark master: {self.config.master_start_slots} "
                         "other users' masters are starting on this host")
        async with gate if gate is not None else contextlib.nullcontext():
            self.emit(5, "Starting Spark master")
            run_dir = self.run_dir / "master"
            safefs.make_dir(run_dir, 0o700, exist_ok=True)
            self._save(master=MasterState("per-user", run_dir=str(run_dir)), phase="master")
            record = self._thread_recorder(lambda st: {"master": MasterState(
                "per-user", master_url=st["master_url"], webui_url=st["webui_url"],
                run_dir=str(run_dir), process=st["master"])})
            st = await asyncio.to_thread(
                start_master_process, run_dir, host=self.config.master_host, secret=secret,
                timeout=min(120.0, self.config.start_timeout), nice=self.config.daemon_nice,
                user=self.daemon_user, ui_host=self.config.ui_host, properties=self.spark_conf,
                ui_token=self.ui_token, record=record)   # its last call recorded st
        self.emit(20, f"Spark master ready at {st['master_url']}")

    def _thread_recorder(self, changes: Callable[[dict], dict]) -> Callable[[dict], None]:
        """A ``record`` callback for a daemon started in a worker thread: it saves
        ``changes(record)`` on the event loop (the hub's database is not thread-safe) and
        waits for it, so the process is in the state before it exists."""
        loop = asyncio.get_running_loop()

        async def save(rec: dict) -> None:
            self._save(**changes(rec))

        def record(rec: dict) -> None:
            try:
                asyncio.get_running_loop()
            except RuntimeError:   # a worker thread
                asyncio.run_coroutine_threadsafe(save(rec), loop).result(timeout=60)
            else:
                self._save(**changes(rec))
        return record

    # ---- the head on a machine of her cluster (placement "cluster") ---------------------
    async def _start_head(self, secret: str | None, t0: float) -> None:
        """Boot her head server (master + Connect server behind TLS), wait until it has an
        address and its master answers. The hub host runs no JVM for her."""
        from . import tls as tlsmod  # noqa: PLC0415
        from .provisioners.base import HeadSpec  # noqa: PLC0415
        from .spark import connect  # noqa: PLC0415

        s = self.state
        with_connect = self.config.connect_server
        # the head and the workers must fit before anything is created
        await self.provisioner.check_capacity(self._specs(secret), head=True)
        self.emit(5, "Requesting her cluster's head server (Spark master"
                     + (" and Connect server)" if with_connect else ")"))
        token = connect.generate_token()
        material = await asyncio.to_thread(tlsmod.make_cluster_tls, HEAD_TLS_NAME)
        if with_connect:
            token_file = connect.write_token_file(self.run_dir / connect.TOKEN_FILE_NAME, token)
            ca_file = safefs.write_file(self.run_dir / "connect-ca.pem", material.ca_pem, 0o644,
                                        replace=True)
            self._save(connect=ConnectState(remote=True, token_file=token_file, ca_file=ca_file,
                                            server_name=material.server_name))
        self._save(master=MasterState("head"), phase="head")
        conf = {**self.connect_defaults(), **self.worker_conf, **self.config.connect_conf}
        spec = HeadSpec(hub_id=s.hub_id, owner=s.owner, cluster_id=s.cluster_id,
                        name=f"{s.cluster_id}-head", token=token, tls=material, secret=secret,
                        server_name=s.server_name, connect=with_connect,
                        driver_memory=self.config.connect_driver_memory,
                        connect_conf=conf, master_conf=dict(daemons.HARDENING))
        rec = await self.provisioner.request_head(spec)
        self._save(records=[*self.state.records, rec])   # the moment it exists
        host = await self._wait_head_address(rec, t0)
        self._save(master=MasterState("head", host=host, master_url=ports.master_url(host),
                                      webui_url=ports.webui_url(host)))
        if with_connect:
            self._save(connect=dataclasses.replace(
                self.state.connect, host=host, port=ports.CONNECT_PORT,
                url=ports.connect_url(host, ports.CONNECT_PORT)))
        self.emit(15, f"Head server {rec.name} is up at {host}; waiting for its Spark master")
        await self._wait_head_master(rec, t0)
        self.emit(20, f"Spark master ready on the head at {self.master_url}")

    def _head_deadline_error(self, what: str, t0: float) -> ClusterError:
        return ClusterError(f"Timed out after {time.monotonic() - t0:.0f}s waiting for {what}")

    async def _head_check(self, rec: WorkerRecord) -> str | None:
        """The head's address once it runs; ClusterError when it failed or will not start."""
        st = await self.provisioner.worker_status(rec)
        if st.state in ("failed", "gone"):
            detail = st.message or await self.provisioner.worker_log(rec)
            raise ClusterError(f"the cluster's head {rec.name} {st.state}: {detail}".strip())
        if st.state == "running":
            why = await self.provisioner.boot_failure(rec)
            if why:
                raise ClusterError(f"the cluster's head {rec.name} will not start: {why}")
            return st.host
        return None

    async def _wait_head_address(self, rec: WorkerRecord, t0: float) -> str:
        deadline = t0 + self.config.start_timeout
        poll = 0.5
        while True:
            try:
                host = await self._head_check(rec)
            except ProvisionerError as e:   # unknown, not gone: keep waiting
                self.log.warning("head %s: %s", rec.name, e)
                host = None
            if host:
                return host
            if time.monotonic() > deadline:
                raise self._head_deadline_error(f"the head server {rec.name} to run", t0)
            await asyncio.sleep(poll)
            poll = min(poll * 1.3, 3.0)

    async def _wait_head_master(self, rec: WorkerRecord, t0: float) -> None:
        deadline = t0 + self.config.start_timeout
        poll, last_check = 0.5, 0.0
        while True:
            ms = await afetch_master_state(self.webui_url, timeout=3.0)
            if ms.reachable:
                return
            if time.monotonic() - last_check > 5.0:
                last_check = time.monotonic()
                with contextlib.suppress(ProvisionerError):
                    await self._head_check(rec)
            if time.monotonic() > deadline:
                raise self._head_deadline_error(
                    f"the Spark master on the head ({self.webui_url}: {ms.error or 'no answer'})", t0)
            await asyncio.sleep(poll)
            poll = min(poll * 1.3, 2.0)

    async def _wait_head_connect(self, t0: float) -> None:
        """Her Connect server answers over TLS, verified against the cluster's CA."""
        from .spark import connect  # noqa: PLC0415

        rec = self.state.connect
        token = connect.read_token_file(rec.token_file)
        ca = Path(rec.ca_file).read_bytes()
        deadline = t0 + max(60.0, self.config.start_timeout)
        try:
            version, warm = await asyncio.to_thread(
                connect.wait_answering, rec.url, token, max(1.0, deadline - time.monotonic()),
                ca_pem=ca, server_name=rec.server_name, interval=1.0)
        except (connect.ConnectAuthError, connect.ConnectTLSError):
            raise
        except connect.ConnectError as e:
            raise connect.ConnectError(f"her Spark Connect server on the head was not ready in "
                                       f"time ({e})") from None
        self._save(connect=dataclasses.replace(rec, spark_version=version, warm_up_s=warm))
        self.emit(93, f"Spark Connect server ready on the head at {rec.url} (TLS)")

    def connect_defaults(self) -> dict[str, str]:
        """The Connect server is the user's one long-lived driver. It starts one executor per
        worker at once (the first query is fast) and gives them back after 60 s idle (dynamic
        allocation, shuffle tracking), so a classic kernel of the same user gets cores too.
        Admins override any of these with ``connect_conf``."""
        size = self.state.size
        return {
            "spark.executor.memory": size.memory,
            "spark.executor.cores": str(size.cores),
            "spark.cores.max": str(self.state.cores),
            "spark.dynamicAllocation.enabled": "true",
            "spark.dynamicAllocation.shuffleTracking.enabled": "true",
            "spark.dynamicAllocation.minExecutors": "0",
            "spark.dynamicAllocation.initialExecutors": str(self.state.workers),
            "spark.dynamicAllocation.executorIdleTimeout": "60s",
            "spark.dynamicAllocation.shuffleTracking.timeout": "60s",
        }

    async def _start_connect(self, secret: str | None) -> None:
        """Start the user's Spark Connect server now; it becomes ready while workers boot."""
        from .spark import connect  # noqa: PLC0415

        self.emit(22, "Starting Spark Connect server")
        conf = {**self.connect_defaults(), **self.spark_conf, **self.config.connect_conf}
        # recorded before the process exists (found by its marker if the hub dies)
        record = self._thread_recorder(lambda r: {"connect": ConnectState.from_server_record(r)})
        rec = await asyncio.to_thread(
            connectserver.start_server, self.run_dir / "connect",
            self.run_dir / connect.TOKEN_FILE_NAME,
            master_url=self.master_url, host="127.0.0.1", driver_host=self.driver_host,
            driver_memory=self.config.connect_driver_memory,
            conf=conf, secret=secret,
            python=self.provisioner.executor_python or self.config.connect_python,
            app_name=f"spark-connect-{self.state.key}", nice=self.config.daemon_nice,
            user=self.daemon_user, record=record)
        record(rec)

    async def _wait_connect(self, t0: float) -> None:
        rec = self.state.connect
        left = max(30.0, self.config.start_timeout - (time.monotonic() - t0))
        ready = await asyncio.to_thread(connectserver.wait_ready, rec.server_record(), left)
        self._save(connect=ConnectState.from_server_record(ready))
        self.emit(93, f"Spark Connect server ready at {rec.url}")

    async def _stop_connect(self) -> None:
        rec = self.state.connect
        if not rec:
            return
        if rec.remote:   # on the head: it goes with the head's server
            for path in (rec.token_file, rec.ca_file):
                if path:
                    Path(path).unlink(missing_ok=True)
        else:
            await asyncio.to_thread(connectserver.stop_server, rec.server_record())
        self._save(connect=None)

    def _specs(self, secret: str | None) -> list[WorkerSpec]:
        s = self.state
        return [
            WorkerSpec(hub_id=s.hub_id, owner=s.owner, cluster_id=s.cluster_id,
                       name=f"{s.cluster_id}-w{i}", index=i, cores=s.size.cores,
                       memory=s.size.memory, master_url=self.master_url, secret=secret,
                       size=s.size.name, server_name=s.server_name, spark_conf=self.worker_conf,
                       master_on_head=self.placement == "cluster",
                       daemon_user=self.daemon_user)
            for i in range(1, s.workers + 1)
        ]

    async def _start_workers(self, secret: str | None, t0: float) -> None:
        specs = self._specs(secret)
        n = len(specs)
        await self.provisioner.check_capacity(specs)
        size = self.state.size
        self.emit(25, f"Requested {n} worker{'s' if n != 1 else ''} "
                      f"({size.name}: {size.cores} cores, {size.memory} each)")
        self._save(phase="workers")

        async def request(spec: WorkerSpec) -> WorkerRecord:
            rec = await self.provisioner.request_worker(spec)
            # recorded the moment the backend gave us an id
            self._save(records=[*self.state.records, rec])
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
            ms = await afetch_master_state(self.webui_url, timeout=3.0, ui_token=self.ui_token)
            records = self.worker_records
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
                    if st.state == "running" and registered < n:
                        why = await self.provisioner.boot_failure(rec)
                        if why:
                            raise ClusterError(f"Spark worker {rec.name} will not start: {why}")
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
        m = self.state.master
        if m is not None and m.mode == "per-user":
            if not m.process or not daemons.is_running(m.process):
                return "stopped"
        states = []
        for rec in self.records:
            try:
                st = (await self.provisioner.worker_status(rec)).state
            except ProvisionerError:
                st = "unknown"  # a backend error: unknown, never gone
            if rec.is_head and st in ("failed", "gone"):
                return "stopped"  # her head (master and Connect server) is gone
            states.append(st)
        if "unknown" in states:
            return "unknown"
        if any(s in ("failed", "gone") for s in states):
            return "degraded"
        return "running"

    # ---- stop --------------------------------------------------------------------------
    async def stop(self, *, retries: int = 3) -> None:
        """Delete every worker (in parallel), stop the Connect server and the master, verify
        nothing remains. Raises :class:`ClusterError` naming what is still there (the state
        keeps it, so a later stop, e.g. the reconciler's, tries again)."""
        self._save(phase="stopping")
        records = self.records
        self.log.info("stopping cluster %s of %s: %d worker(s), master %s", self.cluster_id,
                      self.display_owner, len(records), self.master_url)
        if records:
            self.emit(96, f"Deleting {len(records)} worker(s)")
        remaining = await self._delete_all(records, retries)
        self._save(records=remaining)
        left_here: list[str] = []
        try:
            await self._stop_connect()
        except ClusterError as e:
            left_here.append(f"Spark Connect server ({e})")
        m = self.state.master
        if m is not None and m.mode == "per-user" and m.process:
            try:
                await asyncio.to_thread(daemons.stop_daemon, m.process)
                self.log.info("stopped the Spark master of %s (pid %s)", self.cluster_id,
                              m.process.get("pid"))
            except ClusterError as e:
                left_here.append(f"Spark master ({e})")
        # verify: nothing of ours is listed by the backend any more
        try:
            left = [r for r in await self.provisioner.list_workers(
                hub_id=self.state.hub_id, owner=self.state.owner)
                if r.cluster_id == self.cluster_id]
        except ProvisionerError as e:
            raise ClusterError(f"could not verify that {self.cluster_id}'s workers are gone: {e}") from e
        if left:
            known = {r.id for r in remaining}
            remaining += [r for r in await self._delete_all(left, retries) if r.id not in known]
            self._save(records=remaining)
        if remaining or left_here:
            what = [f"worker {r.name} ({r.id})" for r in remaining] + left_here
            raise ClusterError(f"{self.cluster_id} is not fully stopped; still there: "
                               + "; ".join(what))
        if self.secret_file:
            Path(self.secret_file).unlink(missing_ok=True)
        (self.run_dir / "ui-token").unlink(missing_ok=True)
        self._save(records=[], master=None, phase="stopped", secret_file=None, ui_guard=None)
        for d in ("master", "connect"):
            safefs.remove_tree(self.run_dir / d)
        if self.session_dir is not None:
            safefs.remove_tree(self.session_dir)
        statemod.remove(self.state)

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


def head_placement(config: ClusterConfig, provisioner: Provisioner) -> str:
    """Where a new cluster's head runs: the hub's setting, else the provisioner's default;
    ``hub`` whenever the master is shared."""
    if config.master_mode == "shared":
        return "hub"
    return config.head_placement or provisioner.default_head_placement


async def stop_orphan_clusters(base_dir: str | os.PathLike, config: ClusterConfig,
                               provisioner: Provisioner, known: set[str], *,
                               grace: float = 300.0, logger: logging.Logger | None = None,
                               retry_after: Callable[[str], bool] | None = None,
                               on_result: Callable[[str, str | None], None] | None = None
                               ) -> list[str]:
    """Stop clusters recorded under ``base_dir/*/cluster.json`` that belong to this hub but to
    no running or pending server (``known`` cluster ids), once older than ``grace`` seconds.

    This covers what lives on the hub host (per-user master, Connect server) and their
    workers: for a hub killed mid-spawn whose database never saw the cluster, and for a stop
    that failed (it is tried again here). Only a ``cluster.json`` that is a regular file of the
    hub's own, in the directory it names, with every path in it under that directory, is
    acted on; any other is refused and logged. ``retry_after(cluster_id)`` may hold a cluster
    back (backoff); ``on_result(cluster_id, error or None)`` hears every attempt."""
    logger = logger or log
    stopped = []
    for path in sorted(Path(base_dir).glob(f"*/{statemod.STATE_FILE}")):
        try:
            state = statemod.read(path, base_dir)
        except FileNotFoundError:   # removed by a stop meanwhile
            continue
        except (OSError, ValueError, safefs.UnsafePathError, StateVersionError) as e:
            logger.error("reconciler: refusing %s: %s", path, e)
            continue
        cid = state.cluster_id
        if state.hub_id != config.hub_id or cid in known:
            continue
        if state.phase == "stopped" or time.time() - path.stat().st_mtime < grace:
            continue
        if retry_after is not None and not retry_after(cid):
            continue
        logger.warning("reconciler: stopping orphan cluster %s of user %s (no running or "
                       "pending server owns it; phase %s)", cid,
                       naming.printable(state.owner), state.phase)
        try:
            await SparkCluster.from_state(config, provisioner, state, logger=logger).stop()
            stopped.append(cid)
            if on_result is not None:
                on_result(cid, None)
        except Exception as e:  # noqa: BLE001 - next round tries again
            logger.error("reconciler: could not stop orphan cluster %s: %s", cid, e)
            if on_result is not None:
                on_result(cid, str(e))
    return stopped
