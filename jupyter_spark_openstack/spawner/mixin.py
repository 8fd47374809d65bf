"""SparkClusterMixin: the Spark part of the spawner, a thin adapter over the core lifecycle.

Everything that matters lives in :mod:`jupyter_spark_openstack.core` (options schema,
lifecycle, provisioners); this module translates JupyterHub's calls (``start``, ``stop``,
``poll``, ``progress``, ``get_state``/``load_state``, the options form) to them.
"""

from __future__ import annotations

import asyncio
import os
import time
import weakref
from pathlib import Path

from tornado import web
from traitlets import Bool, Dict, Float, Int, List, Unicode, default, validate
from traitlets.config import LoggingConfigurable

from ..core.cluster import ClusterConfig, SparkCluster, safe_id, stop_orphan_clusters
from ..core.errors import ClusterError, ProvisionerError, ValidationError
from ..core.models import parse_conf, parse_memory
from ..core.options import DEFAULT_SIZES, Limits, OptionsSchema
from ..core.provisioners import load_provisioner_class
from ..core.reconcile import Reconciler


class SparkClusterMixin(LoggingConfigurable):
    """Gives each user's server a Spark cluster: a per-user master, workers from a provisioner,
    PySpark kernelspecs wired to it. Combine with a spawner:
    ``class MySpawner(SparkClusterMixin, SomeSpawner)``."""

    # ---- provisioner ---------------------------------------------------------------------
    provisioner = Unicode(
        "local", config=True,
        help="Where workers run: the name of a provisioner entry point "
             "(group jupyter_spark_openstack.provisioners): 'local' or 'openstack'.")
    provisioner_config = Dict(
        config=True, help="Settings of the provisioner (see its docs); validated at first use.")

    # ---- options and limits ----------------------------------------------------------------
    worker_sizes = List(
        Dict(), config=True,
        help="Worker sizes offered to users: [{'name': 'small', 'cores': 1, 'memory': '1g', "
             "'flavor': 'm1.small', 'description': '...'}]. 'flavor' is used by openstack.")

    @default("worker_sizes")
    def _default_sizes(self):
        return [{"name": s.name, "cores": s.cores, "memory": s.memory, "description": s.description}
                for s in DEFAULT_SIZES]

    default_workers = Int(2, config=True, help="Workers preselected in the form.")
    default_size = Unicode("", config=True, help="Size preselected in the form (default: the first).")
    max_workers_per_user = Int(4, config=True, help="At most this many workers per user.")
    max_cores_per_user = Int(16, config=True, help="At most this many worker cores per user.")
    max_memory_per_user = Unicode("32g", config=True, help="At most this much worker memory per user (Spark form).")
    max_workers_total = Int(32, config=True, help="At most this many workers on the whole hub.")

    # ---- master ----------------------------------------------------------------------------
    master_mode = Unicode(
        "per-user", config=True,
        help="'per-user': a Spark master process per user on the hub host (own ports, own "
             "spark.authenticate secret). 'shared': every user's workers join shared_master_url "
             "and spark.cores.max bounds each user (the seed recipe's setup; no per-user secret).")
    master_host = Unicode(
        "127.0.0.1", config=True,
        help="Interface the per-user masters bind to; workers must reach it (for OpenStack VMs: "
             "the hub's address on the tenant network).")
    spark_daemon_nice = Int(
        0, config=True,
        help="Niceness (0-19) of the Spark daemons each user gets on the hub host (the per-user "
             "master and Spark Connect server): above 0 they yield the CPU to the hub and the "
             "notebook servers when the host is busy, e.g. while many users spawn at once.")
    master_start_slots = Int(
        help="At most this many per-user Spark masters start at once on the hub host; the "
             "others wait their turn (the spawn page says so). When many users log in at once, "
             "JVMs booting in small groups are each ready sooner than all booting together, and "
             "the hub keeps CPU to answer. 0: no limit. Default: the host's CPU count.",
    ).tag(config=True)

    @default("master_start_slots")
    def _default_master_start_slots(self):
        return os.cpu_count() or 1

    shared_master_url = Unicode("", config=True, help="spark://host:port, with master_mode='shared'.")
    shared_master_webui_url = Unicode("", config=True, help="http://host:8080, with master_mode='shared'.")
    hub_id = Unicode(
        "jupyterhub", config=True,
        help="Names this hub on the backend (tags, metadata, reconciliation); set it when several "
             "hubs share one cloud project.")
    cluster_run_dir = Unicode(
        "", config=True,
        help="Where per-user cluster state, logs and kernelspecs go "
             "(default: <jupyter runtime dir>/spark-openstack/clusters).")
    cluster_start_timeout = Float(
        300.0, config=True,
        help="Seconds for master + all workers to register; keep below start_timeout.")

    # ---- Spark Connect ---------------------------------------------------------------------
    connect_server = Bool(
        True, config=True,
        help="Start a per-user Spark Connect server (one driver JVM per user, on loopback, with "
             "the user's own token); the default 'PySpark' kernel is then a thin Connect client "
             "and 'PySpark classic, RDD API' keeps the RDD API. Needs the notebook server on the "
             "hub host: Connect to another host would need TLS, which is not built yet.")
    connect_driver_memory = Unicode("1g", config=True, help="Driver memory of the Connect server.")
    connect_conf = Dict(config=True, help="Extra spark.* properties of the Connect server.")

    # ---- kernels ---------------------------------------------------------------------------
    kernel_driver_memory = Unicode("1g", config=True, help="spark.driver.memory of classic PySpark kernels.")
    kernel_conf = Dict(config=True, help="Extra spark.* properties for the user's kernels.")

    @default("options_from_form")
    def _default_options_from_form(self):
        # one-element lists -> strings; everything is validated by the options schema at start
        return self._simple_options_from_form

    # ---- reconciliation ----------------------------------------------------------------------
    reconcile_interval = Float(
        300.0, config=True,
        help="Seconds between reconciliation rounds: workers tagged with this hub (and per-user "
             "masters/Connect servers on this host) that belong to no running or pending server "
             "are deleted. 0 disables it.")
    reconcile_grace = Float(
        300.0, config=True,
        help="An unowned worker or cluster is deleted only once it is this old (seconds).")

    # ---- class-level bookkeeping (one hub process) --------------------------------------------
    _provisioner_cache: dict = {}
    _workers_in_use: dict = {}
    _live: weakref.WeakSet = weakref.WeakSet()
    _reconcilers: dict = {}
    #: lifecycle changes within this many seconds go to the hub database in one commit
    #: (each commit blocks the hub's event loop on an fsync; the lifecycle also writes every
    #: change to <run_dir>/cluster.json at once, which the reconciler reads)
    persist_delay = 0.5
    _persist_handle = None
    _stopping = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        SparkClusterMixin._live.add(self)
        try:
            asyncio.get_running_loop().call_soon(self._ensure_reconciler)
        except RuntimeError:  # no loop (e.g. config checks): started on first start()
            pass

    def _known_clusters(self) -> set[str]:
        known = set()
        for sp in list(SparkClusterMixin._live):
            if getattr(sp, "_cluster", None) is not None:
                known.add(sp._cluster.cluster_id)
            if getattr(sp, "user", None) is not None and (sp.active or sp.pending):
                known.add(safe_id(self.hub_id, sp.user.name, sp.name or ""))
        return known

    def _ensure_reconciler(self) -> None:
        """One reconciler task per (provisioner, hub) in this hub process."""
        if self.reconcile_interval <= 0:
            return
        key = (self.provisioner, repr(sorted(self.provisioner_config.items())), self.hub_id)
        task = SparkClusterMixin._reconcilers.get(key)
        if task is not None and not task.done():
            return
        try:
            prov = self._get_provisioner()
            config = self._cluster_config()
        except Exception:
            self.log.exception("reconciler not started: bad configuration")
            return
        base_dir = self._cluster_base_dir
        grace, interval, logger = self.reconcile_grace, self.reconcile_interval, self.log

        async def known() -> set[str]:
            return self._known_clusters()

        reconciler = Reconciler(prov, self.hub_id, known, grace=grace, log=logger)

        async def loop():
            while True:
                try:
                    await stop_orphan_clusters(base_dir, config, prov, self._known_clusters(),
                                               grace=grace, logger=logger)
                    await reconciler.run_once()
                except asyncio.CancelledError:
                    raise
                except Exception:  # noqa: BLE001 - log and try again next round
                    logger.exception("reconciliation round failed")
                await asyncio.sleep(interval)

        SparkClusterMixin._reconcilers[key] = asyncio.get_running_loop().create_task(loop())

    @validate("provisioner")
    def _check_provisioner(self, proposal):
        load_provisioner_class(proposal["value"])
        return proposal["value"]

    @validate("max_memory_per_user")
    def _check_mem(self, proposal):
        from ..core.models import parse_memory  # noqa: PLC0415

        return parse_memory("max_memory_per_user", proposal["value"])

    @validate("master_mode")
    def _check_mode(self, proposal):
        if proposal["value"] not in ("per-user", "shared"):
            raise ValidationError("master_mode", proposal["value"], "'per-user' or 'shared'")
        return proposal["value"]

    # ---- built from config, once per use ------------------------------------------------------
    @property
    def options_schema(self) -> OptionsSchema:
        limits = Limits.parse(max_workers_per_user=self.max_workers_per_user,
                              max_cores_per_user=self.max_cores_per_user,
                              max_memory_per_user=self.max_memory_per_user,
                              max_workers_total=self.max_workers_total)
        return OptionsSchema(self.worker_sizes, limits, self.default_workers,
                             self.default_size or None)

    def _cluster_config(self) -> ClusterConfig:
        return ClusterConfig(
            hub_id=self.hub_id, master_mode=self.master_mode, master_host=self.master_host,
            shared_master_url=self.shared_master_url or None,
            shared_master_webui_url=self.shared_master_webui_url or None,
            start_timeout=self.cluster_start_timeout,
            authenticate=self.master_mode == "per-user",
            connect_server=self.connect_server,
            connect_driver_memory=parse_memory("connect_driver_memory", self.connect_driver_memory),
            connect_conf=parse_conf("connect_conf", self.connect_conf),
            daemon_nice=self.spark_daemon_nice, master_start_slots=self.master_start_slots)

    def _check_connect_is_local(self) -> None:
        """Kernels reach the Connect server on localhost; a notebook server on another host
        would need TLS (not built yet), so refuse that configuration plainly."""
        from jupyterhub.spawner import LocalProcessSpawner  # noqa: PLC0415

        if self.connect_server and not isinstance(self, LocalProcessSpawner):
            raise ValidationError(
                "connect_server", True,
                f"False with {type(self).__name__}: its notebook servers run on another host and "
                "Spark Connect to a remote host needs TLS, which is not built yet "
                "(set c.SparkClusterMixin.connect_server = False)")

    def _get_provisioner(self):
        key = (self.provisioner, repr(sorted(self.provisioner_config.items())))
        prov = SparkClusterMixin._provisioner_cache.get(key)
        if prov is None:
            cls = load_provisioner_class(self.provisioner)
            prov = cls(dict(self.provisioner_config), log=self.log)
            SparkClusterMixin._provisioner_cache[key] = prov
        return prov

    @property
    def _cluster_base_dir(self) -> Path:
        if self.cluster_run_dir:
            return Path(self.cluster_run_dir)
        from ..core.paths import runtime_root  # noqa: PLC0415

        return runtime_root() / "clusters"

    @property
    def _key(self) -> str:
        return safe_id(self.user.name, self.name or "")

    # ---- the form ----------------------------------------------------------------------------
    @default("options_form")
    def _options_form(self):
        def render(spawner):
            return spawner.options_schema.render_form(spawner.orm_spawner.user_options if spawner.orm_spawner else None)
        return render

    # ---- state -------------------------------------------------------------------------------
    _cluster: SparkCluster | None = None

    def get_state(self):
        state = super().get_state()
        if self._cluster is not None:
            state["cluster"] = self._cluster.get_state()
        return state

    def load_state(self, state):
        super().load_state(state)
        cstate = (state or {}).get("cluster")
        if cstate and cstate.get("phase") != "stopped":
            self._cluster = SparkCluster.from_state(self._cluster_config(), self._get_provisioner(),
                                                    cstate, on_change=self._persist_soon,
                                                    logger=self.log)
            SparkClusterMixin._workers_in_use[self._key] = len(cstate.get("records", []))

    def clear_state(self):
        """Called when the notebook server stopped. A cluster that is not yet deleted stays in
        the state (LocalProcessSpawner.stop calls this *before* our cluster is torn down, and a
        cluster whose deletion failed must still be found next time)."""
        super().clear_state()
        if self._cluster is not None and self._cluster.state.get("phase") == "stopped":
            self._cluster = None
            SparkClusterMixin._workers_in_use.pop(self._key, None)

    def _persist_soon(self) -> None:
        """The lifecycle's ``on_change``: save state to the hub database during the spawn, not
        only after it, so a hub restart still finds every resource id. Changes that come in a
        burst (30 users spawning: hundreds) are saved together, ``persist_delay`` s later."""
        if self._persist_handle is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._persist()
            return
        self._persist_handle = loop.call_later(self.persist_delay, self._persist_later)

    def _persist_later(self) -> None:
        self._persist_handle = None
        try:
            self._persist()
        except Exception:  # a timer callback: log, never raise into the loop
            self.log.exception("saving %s's spawner state failed", self._log_name)

    def _persist(self) -> None:
        """Save state to the hub database now."""
        if self._persist_handle is not None:
            self._persist_handle.cancel()
            self._persist_handle = None
        orm = getattr(self, "orm_spawner", None)
        db = getattr(self, "db", None)
        if orm is None or db is None:
            return
        orm.state = self.get_state()
        db.commit()

    # ---- progress ----------------------------------------------------------------------------
    def _emit(self, progress: int, message: str) -> None:
        self._events.append({"progress": int(progress), "message": message})
        self.log.info("[%s] %s", self._log_name, message)
        ev = getattr(self, "_events_changed", None)
        if ev is not None:
            ev.set()

    @property
    def _events(self) -> list:
        if not hasattr(self, "_event_list"):
            self._event_list = []
        return self._event_list

    async def progress(self):
        """Events for the hub's spawn page, as the lifecycle emits them."""
        sent = 0
        while True:
            while sent < len(self._events):
                yield self._events[sent]
                sent += 1
            if getattr(self, "_start_done", True) and sent >= len(self._events):
                return
            self._events_changed = asyncio.Event()
            try:
                await asyncio.wait_for(self._events_changed.wait(), timeout=1.0)
            except TimeoutError:
                pass

    # ---- start / stop / poll -----------------------------------------------------------------
    def _validated_options(self):
        self._check_connect_is_local()
        schema = self.options_schema
        options = schema.parse(self.user_options or {})
        in_use = sum(n for k, n in SparkClusterMixin._workers_in_use.items() if k != self._key)
        schema.check_hub_total(options, in_use)
        return options

    async def start(self):
        self._ensure_reconciler()
        self._event_list = []
        self._start_done = False
        try:
            if self._cluster is not None:  # left from a stop that failed: delete it first
                self._emit(2, "Deleting the previous Spark cluster")
                await self._cluster.stop()
                self._cluster = None
            try:
                options = self._validated_options()
            except ValidationError as e:
                self._emit(100, f"Invalid options: {e}")
                raise web.HTTPError(400, f"Invalid spawn options: {e}") from None
            SparkClusterMixin._workers_in_use[self._key] = options.workers
            run_dir = self._cluster_base_dir / self._key
            self._cluster = SparkCluster.new(
                self._cluster_config(), self._get_provisioner(), owner=self.user.name,
                server_name=self.name or "", options=options, run_dir=run_dir,
                emit=self._emit, on_change=self._persist_soon, logger=self.log)
            try:
                await self._cluster.start()
                self._prepare_user_files(options)
                self._emit(95, "Starting notebook server")
                result = await super().start()
            except BaseException as e:
                await self._cleanup_failed_start()
                if isinstance(e, ValidationError):
                    raise web.HTTPError(400, f"Invalid spawn options: {e}") from None
                if isinstance(e, ClusterError | ProvisionerError):
                    raise ClusterError(f"Spark cluster could not start: {e}") from None
                raise
            return result
        finally:
            self._start_done = True
            ev = getattr(self, "_events_changed", None)
            if ev is not None:
                ev.set()

    async def _cleanup_failed_start(self) -> None:
        SparkClusterMixin._workers_in_use.pop(self._key, None)
        if self._cluster is not None:
            try:
                await self._cluster.stop()
            except Exception:
                self.log.exception("cleaning up %s's cluster failed", self._log_name)
            self._cluster = None
            self._persist()

    async def stop(self, now=False):
        cluster = self._cluster
        self._stopping = True  # poll() sees the notebook server go: not a crash, leave it to us
        try:
            await super().stop(now=now)
        finally:
            try:
                if cluster is not None:
                    await cluster.stop()  # raises if anything could not be deleted: state is kept
                self._cluster = None
                SparkClusterMixin._workers_in_use.pop(self._key, None)
            finally:
                self._stopping = False

    async def poll(self):
        status = await super().poll()
        if status is not None:
            if self._cluster is not None and not self._stopping:
                # The notebook server is gone (crashed, or died while the hub was down): the
                # hub will not call stop() for it, so the cluster is deleted here.
                self.log.warning("%s's notebook server is gone; deleting its Spark cluster", self._log_name)
                try:
                    await self._cluster.stop()
                    self._cluster = None
                    SparkClusterMixin._workers_in_use.pop(self._key, None)
                except Exception:
                    self.log.exception("deleting %s's cluster failed; kept in state", self._log_name)
                self._persist()
            return status
        if self._cluster is not None:
            st = await self._cluster.poll()
            if st == "stopped":
                self.log.warning("%s's Spark master is gone; reporting the server as stopped", self._log_name)
                return 1
            if st in ("degraded", "unknown"):
                self.log.warning("%s's Spark cluster is %s", self._log_name, st)
        return None

    # ---- what the notebook server sees ---------------------------------------------------------
    @property
    def _user_dir(self) -> Path:
        return self._cluster.run_dir / "user"

    def _prepare_user_files(self, options) -> None:
        """Per-user data dir (kernelspecs, secret copy) readable by the user alone."""
        from .kernels import write_user_kernelspecs  # noqa: PLC0415

        udir = self._user_dir
        udir.mkdir(parents=True, exist_ok=True)
        os.chmod(udir, 0o700)
        write_user_kernelspecs(self, self._cluster, options, udir)
        self._chown_user_tree(udir)

    def _chown_user_tree(self, path: Path) -> None:
        """With real system users (LocalProcessSpawner as root), hand the dir to the user."""
        if os.geteuid() != 0:
            return
        try:
            import pwd  # noqa: PLC0415

            pw = pwd.getpwnam(self.user.name)
        except (KeyError, ImportError):
            return
        if pw.pw_uid == 0:
            return
        os.chown(path.parent, pw.pw_uid, pw.pw_gid)  # traverse the run dir
        os.chmod(path.parent, 0o711)
        for p in [path, *path.rglob("*")]:
            os.chown(p, pw.pw_uid, pw.pw_gid)

    def get_env(self):
        env = super().get_env()
        c = self._cluster
        if c is not None and c.master_url:
            env["SPARK_OPENSTACK_MASTER_URL"] = c.master_url
            env["SPARK_OPENSTACK_MASTER_WEBUI_URL"] = c.webui_url or ""
            conn = (c.state.get("connect") or {}).get("url")
            if conn:
                env["SPARK_OPENSTACK_CONNECT_URL"] = conn
            jpath = str(self._user_dir / "jupyter")
            env["JUPYTER_PATH"] = os.pathsep.join(p for p in (jpath, env.get("JUPYTER_PATH", "")) if p)
            env["SPARK_OPENSTACK_CLUSTER"] = f"{c.state['workers']} workers · {c.state['cores']} cores"
        return env

    # The admin view (serverext/admin.py) calls the hub API with the browser admin's own OAuth
    # token, never with $JUPYTERHUB_API_TOKEN, which every kernel of the server can read: that
    # token keeps JupyterHub's default scopes (the `server` role; server_token_scopes is not
    # overridden). An admin's server asks the hub to put the admin view's scopes into the OAuth
    # tokens it issues to browsers; the hub grants only the scopes the logged-in user holds
    # herself. Other users' servers ask for none: an admin who opens alice's server hands it
    # no token that could list users or stop servers. A list, not a callable (the hub writes it
    # into JUPYTERHUB_OAUTH_CLIENT_ALLOWED_SCOPES as JSON), evaluated per spawner object, which
    # the hub makes anew for each start: a user made admin gets the admin view at her server's
    # next start.
    def _admin_scopes(self) -> list[str]:
        user = getattr(self, "user", None)
        if getattr(user, "admin", False):
            return ["list:users", "read:users", "read:servers", "admin:server_state", "servers"]
        return []

    @default("oauth_client_allowed_scopes")
    def _default_oauth_client_allowed_scopes(self):
        return self._admin_scopes()

    @property
    def cluster_summary(self) -> dict | None:
        if self._cluster is None:
            return None
        s = self._cluster.state
        return {"workers": s["workers"], "cores": s["cores"], "memory_mb": s["memory_mb"],
                "started_at": s.get("started_at"), "master_url": self._cluster.master_url,
                "age_seconds": (time.time() - s["started_at"]) if s.get("started_at") else None}
