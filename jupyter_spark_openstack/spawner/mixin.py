"""SparkClusterMixin: the Spark part of the spawner, a thin adapter over the core lifecycle.

Everything that matters lives in :mod:`jupyter_spark_openstack.core` (options schema,
lifecycle, provisioners); this module translates JupyterHub's calls (``start``, ``stop``,
``poll``, ``progress``, ``get_state``/``load_state``, the options form) to them.
"""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

from tornado import web
from traitlets import Bool, Dict, Float, Int, List, Unicode, default, validate
from traitlets.config import LoggingConfigurable

from ..core import naming
from ..core.cluster import ClusterConfig, SparkCluster
from ..core.errors import ClusterError, ProvisionerError, ValidationError
from ..core.kernelspec import ENV_CONNECT_URL, ENV_MASTER_URL, ENV_WEBUI_URL
from ..core.models import parse_conf, parse_memory
from ..core.options import DEFAULT_SIZES, ClusterOptions, Limits, OptionsSchema
from ..core.provisioners import load_provisioner_class
from ..core.spark import ports, uiguard
from ..core.spark.daemons import DaemonUser
from ..core.spark.home import is_spark_home
from ..core.state import ref_of
from .hubstate import HubState, Usage

#: hub variables no allow-list may pass to a user's daemons
_NEVER_PASSED = ("CONFIGPROXY_AUTH_TOKEN", "JUPYTERHUB_API_TOKEN", "JUPYTERHUB_CRYPT_KEY",
                 "JPY_COOKIE_SECRET")
#: where per-user state goes on a hub that runs as root (users must traverse to their files)
ROOT_CLUSTER_RUN_DIR = "/var/lib/jupyter-spark-openstack/clusters"


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
             "'description': '...'}]. With the openstack provisioner a size may name its "
             "'flavor' here too: it goes into the provisioner's 'flavors' mapping.")

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
    max_servers_per_user = Int(
        0, config=True,
        help="At most this many Spark clusters (each with its master and Connect server) per "
             "user, over all her named servers; 0: no limit beyond JupyterHub's "
             "named_server_limit_per_user. The per-user worker, core and memory limits are "
             "always summed over all her servers.")

    # ---- who the user's daemons run as -------------------------------------------------------
    #: True: each user's master, Connect server and local workers run as her own system
    #: account (SparkOpenStackSpawner); False: as the hub's user (single-user and demo hubs)
    daemons_as_system_user = False
    daemon_env_keep = List(
        Unicode(), ["PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "JAVA_HOME"], config=True,
        help="Names of the hub's environment variables that the users' Spark daemons (master, "
             "Connect server, local workers, hence her executors) get. Nothing else of the "
             "hub's environment passes: no OS_* cloud credentials, no proxy or hub token.")
    daemon_environment = Dict(
        Unicode(), config=True,
        help="More environment variables for the users' Spark daemons (name: value).")
    spark_ui_guard = Bool(
        True, config=True,
        help="Put a per-cluster token in front of every web UI of the user's daemons and "
             "drivers on the hub host (a servlet filter compiled once with the JDK's javac): "
             "another account on the host, which can reach every loopback port, gets 403 from "
             "her master, worker and application UIs (executor logs included); the hub and her "
             "notebook server's proxy send the token.")
    user_python = Unicode(
        "", config=True,
        help="The Python of the users' PySpark kernels and of their executors' Python workers "
             "(it needs pyspark, pyarrow and ipykernel, and every user must be able to run it: "
             "on a hub running as root, not a venv under /root). Default: the hub's Python.")
    spark_home = Unicode(
        "", config=True,
        help="The Spark the users' daemons and classic kernels run (readable by every user). "
             "Default: $SPARK_HOME, else the Spark inside the hub's pyspark wheel.")

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
        help="Where per-user cluster state, logs and kernelspecs go: a directory of the hub's "
             "own. Each user's files are in a fresh directory per start that only she can read. "
             "Default: <jupyter runtime dir>/spark-openstack/clusters, or "
             f"{ROOT_CLUSTER_RUN_DIR} on a hub running as root (users must be able to "
             "traverse every parent directory).")
    cluster_start_timeout = Float(
        300.0, config=True,
        help="Seconds for master + all workers to register; keep below start_timeout.")

    # ---- Spark Connect ---------------------------------------------------------------------
    connect_server = Bool(
        True, config=True,
        help="Start a per-user Spark Connect server (one driver JVM per user, with the user's "
             "own token); the default 'PySpark' kernel is then a thin Connect client and 'PySpark "
             "classic, RDD API' keeps the RDD API. With head_placement 'hub' it listens on the hub "
             "host's loopback (notebook servers on the hub host only); with 'cluster' it runs on "
             "her head behind TLS (notebook servers anywhere that reaches the head).")
    head_placement = Unicode(
        None, allow_none=True, config=True,
        help="Where each user's head (her Spark master and Connect server) runs: 'hub' (on this "
             "host) or 'cluster' (a head server of her own cluster, its Connect server behind TLS "
             "with a per-cluster CA; the hub host then runs no JVM for her). Default: the "
             "provisioner's ('hub' for local, 'cluster' for openstack).")
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

    #: lifecycle changes within this many seconds go to the hub database in one commit
    #: (each commit blocks the hub's event loop on an fsync; the lifecycle also writes every
    #: change to <run_dir>/cluster.json at once, which the reconciler reads)
    persist_delay = 0.5
    _persist_handle = None
    _stopping = False
    _starting = False
    #: the deletion of a cluster whose notebook server died (see :meth:`poll`), while it runs
    @property
    def _deleting(self) -> asyncio.Task | None:
        """The background deletion of this server's dead cluster, if one runs. Kept by the
        hub, not the spawner object: JupyterHub makes a new spawner for her next start."""
        entry = self._hub.deletions.get(self._key)
        return entry[1] if entry is not None and not entry[1].done() else None

    def _delete_in_background(self, cluster: SparkCluster, after: asyncio.Future | None = None) -> None:
        task = asyncio.ensure_future(self._delete_dead_cluster(cluster, after=after))
        self._hub.deletions[self._key] = (cluster.cluster_id, task)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._hub.spawners.add(self)
        try:
            asyncio.get_running_loop().call_soon(self._ensure_reconciler)
        except RuntimeError:  # no loop (e.g. config checks): started on first start()
            pass

    @property
    def _hub(self) -> HubState:
        """This hub process's shared state (provisioners, usage, reconciler)."""
        return HubState.get(self.hub_id)

    @property
    def cluster_id(self) -> str:
        """The id of this server's cluster (injective in user and server name)."""
        return naming.cluster_id(self.hub_id, self.user.name, self.name or "")

    def _ensure_reconciler(self) -> None:
        """One reconciler per provisioner of this hub (see :class:`HubState`)."""
        try:
            prov = self._get_provisioner()
            config = self._cluster_config()
        except Exception:
            self.log.exception("reconciler not started: bad configuration")
            return
        self._hub.ensure_reconciler(prov, config, self._cluster_base_dir,
                                    interval=self.reconcile_interval, grace=self.reconcile_grace,
                                    log=self.log)

    @validate("provisioner")
    def _check_provisioner(self, proposal):
        load_provisioner_class(proposal["value"])
        return proposal["value"]

    @validate("max_memory_per_user")
    def _check_mem(self, proposal):
        from ..core.models import parse_memory  # noqa: PLC0415

        return parse_memory("max_memory_per_user", proposal["value"])

    @validate("hub_id")
    def _check_hub_id(self, proposal):
        return naming.parse_hub_id("hub_id", proposal["value"])

    @validate("max_servers_per_user")
    def _check_max_servers(self, proposal):
        v = proposal["value"]
        if v < 0:
            raise ValidationError("max_servers_per_user", v, "a whole number >= 0 (0: no limit)")
        return v

    @validate("daemon_env_keep")
    def _check_env_keep(self, proposal):
        for name in proposal["value"]:
            if name in _NEVER_PASSED or name.startswith("OS_"):
                raise ValidationError("daemon_env_keep", name,
                                      "names of variables users may see: never the hub's "
                                      "secrets (" + ", ".join(_NEVER_PASSED) + ", OS_*)")
        return proposal["value"]

    @validate("user_python")
    def _check_user_python(self, proposal):
        v = proposal["value"]
        if v and not (os.path.isabs(v) and os.access(v, os.X_OK)):
            raise ValidationError("user_python", v, "the absolute path of an executable Python")
        return v

    @validate("spark_home")
    def _check_spark_home(self, proposal):
        v = proposal["value"]
        if v and not is_spark_home(v):
            raise ValidationError("spark_home", v, "a Spark directory (with bin/spark-class and jars/)")
        return v

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
        return OptionsSchema(self._sizes_and_flavors()[0], limits, self.default_workers,
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
            connect_python=self.user_python or None,
            daemon_nice=self.spark_daemon_nice, master_start_slots=self.master_start_slots,
            start_gate=self._hub.start_gate(self.master_start_slots),
            base_dir=str(self._cluster_base_dir),
            ui_guard=self.spark_ui_guard and self.master_mode == "per-user",
            head_placement=self.head_placement or None)

    def _daemon_user(self) -> DaemonUser:
        """Who this user's daemons run as, and their whole environment (allow-listed)."""
        env = {k: os.environ[k] for k in self.daemon_env_keep if k in os.environ}
        env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
        env.update(self.daemon_environment)
        if self.spark_home:
            env["SPARK_HOME"] = self.spark_home
        for k in _NEVER_PASSED:
            env.pop(k, None)
        name = self.user.name
        if not self.daemons_as_system_user:
            env.setdefault("HOME", os.path.expanduser("~"))
            return DaemonUser(name=name, env=env)
        import pwd  # noqa: PLC0415

        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            raise ValidationError("user", naming.printable(name),
                                  "a system account of that name: this spawner runs each "
                                  "user's Spark daemons as her own account") from None
        if pw.pw_uid == 0:
            raise ValidationError("user", name, "an account other than root")
        if os.geteuid() != 0 and pw.pw_uid != os.geteuid():
            raise ValidationError("user", name,
                                  "the hub's own account, or run the hub as root: only root can "
                                  "start the user's daemons as her account")
        env.update(HOME=pw.pw_dir, USER=name, LOGNAME=name, SHELL=pw.pw_shell or "/bin/sh")
        if pw.pw_uid == os.geteuid():
            return DaemonUser(name=name, env=env)
        return DaemonUser(name=name, uid=pw.pw_uid, gid=pw.pw_gid, env=env)

    def _check_run_dir_reachable(self, daemon_user: DaemonUser) -> None:
        """Another account must traverse every parent of the run directory to read her
        kernelspecs: refuse a layout where she cannot (e.g. under /root)."""
        if daemon_user.uid is None:
            return
        p = self._cluster_base_dir.resolve()
        for d in [p, *p.parents]:
            try:
                mode = os.stat(d).st_mode
            except FileNotFoundError:
                continue
            if not mode & stat.S_IXOTH:
                raise ValidationError(
                    "cluster_run_dir", str(self._cluster_base_dir),
                    f"a directory every user can traverse ({d} is mode "
                    f"{stat.S_IMODE(mode):o}, without o+x), e.g. {ROOT_CLUSTER_RUN_DIR}")

    @property
    def notebook_on_hub_host(self) -> bool:
        """Does her notebook server run on this host, sharing its filesystem and loopback?
        True for ``LocalProcessSpawner`` and its subclasses; a spawner that runs notebook
        servers elsewhere (or in a network namespace) says False."""
        from jupyterhub.spawner import LocalProcessSpawner  # noqa: PLC0415

        return isinstance(self, LocalProcessSpawner)

    kernelspecs_in_environment = Bool(
        None, allow_none=True, config=True,
        help="Pass her kernelspecs, Connect token and cluster CA in the notebook server's "
             "environment (written into the server's own files by its extension), instead of "
             "files on the hub host. Default: when her notebook server is not on the hub host "
             "(KubeSpawner, DockerSpawner, ...).")

    @property
    def _kernelspecs_in_env(self) -> bool:
        if self.kernelspecs_in_environment is not None:
            return bool(self.kernelspecs_in_environment)
        return not self.notebook_on_hub_host

    def _check_connect_is_local(self) -> None:
        """With head placement 'hub' kernels reach her Connect server on the hub's loopback: a
        notebook server elsewhere cannot, so refuse that configuration plainly."""
        from ..core.cluster import head_placement  # noqa: PLC0415

        placement = head_placement(self._cluster_config(), self._get_provisioner())
        if self.connect_server and placement == "hub" and not self.notebook_on_hub_host:
            raise ValidationError(
                "head_placement", placement,
                f"'cluster' with {type(self).__name__}: its notebook servers run on another host, "
                "and her Connect server on the hub listens on the hub's loopback only "
                "(or set c.SparkClusterMixin.connect_server = False)")

    def _sizes_and_flavors(self) -> tuple[list, dict]:
        """``worker_sizes`` without their ``flavor`` keys, and those flavors: the flavor of a
        size is the openstack provisioner's setting (its ``flavors``), which a size may give
        here for convenience; with another provisioner a flavor is refused."""
        sizes, flavors = [], {}
        for i, raw in enumerate(self.worker_sizes):
            if isinstance(raw, dict) and "flavor" in raw:
                raw = dict(raw)
                flavor = raw.pop("flavor")
                if self.provisioner != "openstack":
                    raise ValidationError(f"worker_sizes[{i}].flavor", flavor,
                                          "nothing: only the openstack provisioner has flavors")
                flavors[str(raw.get("name"))] = flavor
            sizes.append(raw)
        return sizes, flavors

    def _get_provisioner(self):
        config = dict(self.provisioner_config)
        _, flavors = self._sizes_and_flavors()
        if flavors:   # the provisioner's own mapping wins over what the sizes say
            config["flavors"] = {**flavors, **(config.get("flavors") or {})}
        return self._hub.provisioner(self.provisioner, config, self.log)

    @property
    def _cluster_base_dir(self) -> Path:
        if self.cluster_run_dir:
            return Path(self.cluster_run_dir)
        if os.geteuid() == 0:
            return Path(ROOT_CLUSTER_RUN_DIR)
        from ..core.paths import runtime_root  # noqa: PLC0415

        return runtime_root() / "clusters"

    @property
    def _key(self) -> str:
        """This server's key (:func:`..core.naming.user_key`): its run directory's name."""
        return naming.user_key(self.user.name, self.name or "")

    @property
    def _log_name(self) -> str:
        return naming.printable(super()._log_name)

    # ---- the form ----------------------------------------------------------------------------
    @default("options_form")
    def _options_form(self):
        def render(spawner):
            return spawner.options_schema.render_form(spawner.orm_spawner.user_options if spawner.orm_spawner else None)
        return render

    # ---- state -------------------------------------------------------------------------------
    _cluster: SparkCluster | None = None

    def get_state(self):
        """The hub's database keeps a reference to her cluster's state (its one store is
        ``cluster.json`` in her run directory, see :mod:`..core.state`) and a summary for the
        admin API, which nothing reads back."""
        state = super().get_state()
        if self._cluster is not None:
            state["cluster"] = self._cluster.state.database_entry()
        return state

    def load_state(self, state):
        super().load_state(state)
        saved = (state or {}).get("cluster")
        ref = ref_of(saved)
        if ref is None:
            return
        try:
            cluster = SparkCluster.load(self._cluster_config(), self._get_provisioner(), ref,
                                        on_change=self._persist_soon, logger=self.log)
            if cluster is None and "records" in saved and saved.get("phase") != "stopped":
                # a database entry of version 1 or 2 was a whole copy of the state: with no
                # cluster.json left it is all there is, and becomes the file
                cluster = SparkCluster.from_state(self._cluster_config(), self._get_provisioner(),
                                                  saved, on_change=self._persist_soon,
                                                  logger=self.log)
                if cluster.run_dir.is_dir():
                    cluster._save()
        except ClusterError as e:  # e.g. a path outside the run directory: refused
            self.log.error("ignoring the saved Spark cluster of %s: %s", self._log_name, e)
            return
        if cluster is None or cluster.state.phase == "stopped":
            return
        self._cluster = cluster
        try:
            options = self.options_schema.parse(cluster.state.options)
            self._hub.usage[self._key] = Usage(self.user.name, self.name or "", options, self.cluster_id)
        except ValidationError:
            pass

    def clear_state(self):
        """Called when the notebook server stopped. A cluster that is not yet deleted stays in
        the state (LocalProcessSpawner.stop calls this *before* our cluster is torn down, and a
        cluster whose deletion failed must still be found next time)."""
        super().clear_state()
        if self._cluster is not None and self._cluster.state.phase == "stopped":
            self._cluster = None
            self._hub.usage.pop(self._key, None)

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
    def _validated_options(self) -> ClusterOptions:
        """The spawn options, within the per-server, per-user (over all her servers) and
        hub-wide limits."""
        self._check_connect_is_local()
        schema = self.options_schema
        options = schema.parse(self.user_options or {})
        hub = self._hub
        others = hub.others_of(self.user.name, self._key)
        if self.max_servers_per_user and len(others) >= self.max_servers_per_user:
            names = ", ".join(repr(u.server_name) if u.server_name else "the default server"
                              for u in others.values())
            raise ValidationError(
                "max_servers_per_user", len(others) + 1,
                f"at most {self.max_servers_per_user} Spark cluster(s) per user: "
                f"{naming.printable(self.user.name)} already has {len(others)} ({names}); "
                "stop one first")
        schema.check_user_total(options, [u.options for u in others.values()])
        schema.check_hub_total(options, hub.workers_in_use(except_key=self._key))
        return options

    async def start(self):
        self._ensure_reconciler()
        self._event_list = []
        self._start_done = False
        self._starting = True
        try:
            await self._await_deletion()
            if self._cluster is not None:  # left from a stop that failed: delete it first
                self._emit(2, "Deleting the previous Spark cluster")
                await self._cluster.stop()
                self._cluster = None
            try:
                options = self._validated_options()
                daemon_user = self._daemon_user()
                self._check_run_dir_reachable(daemon_user)
            except ValidationError as e:
                self._emit(100, f"Invalid options: {e}")
                raise web.HTTPError(400, f"Invalid spawn options: {e}") from None
            self._hub.usage[self._key] = Usage(self.user.name, self.name or "", options, self.cluster_id)
            config = self._cluster_config()
            config.daemon_user = daemon_user
            self._cluster = SparkCluster.new(
                config, self._get_provisioner(), owner=self.user.name,
                server_name=self.name or "", options=options,
                run_dir=self._cluster_base_dir / self._key,
                emit=self._emit, on_change=self._persist_soon, logger=self.log)
            try:
                await self._cluster.start()
                self._prepare_user_files(options)
                self._emit(95, "Starting notebook server")
                if self.port == 0:
                    # JupyterHub's random_port() is an ephemeral port, which her JVMs' own
                    # port-0 binds can take before the notebook server binds it
                    self.port = ports.free_port_outside_ephemeral()
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
            self._starting = False
            ev = getattr(self, "_events_changed", None)
            if ev is not None:
                ev.set()

    async def _cleanup_failed_start(self) -> None:
        if self._cluster is not None:
            try:
                await self._cluster.stop()
                self._cluster = None
                self._hub.usage.pop(self._key, None)
            except Exception as e:  # kept in state: the reconciler tries again
                self.log.error("cleaning up %s's cluster failed (the reconciler will retry): %s",
                               self._log_name, e)
            self._persist()
        else:
            self._hub.usage.pop(self._key, None)

    async def stop(self, now=False):
        self._stopping = True  # poll() sees the notebook server go: not a crash, leave it to us
        try:
            await self._await_deletion()
            cluster = self._cluster
            await super().stop(now=now)
        finally:
            try:
                if cluster is not None:
                    await cluster.stop()  # raises if anything could not be deleted: state is kept
                self._cluster = None
                self._hub.usage.pop(self._key, None)
            finally:
                self._stopping = False

    async def poll(self):
        status = await super().poll()
        if self._stopping:  # stop() asks whether her notebook server still runs: only that
            return status
        if status is not None:
            if self._cluster is not None and self._deleting is None:
                # The notebook server is gone (crashed, or died while the hub was down): the
                # hub will not call stop() for it (User.stop calls it only while poll() says
                # running), so the cluster is deleted here, in the background. poll() answers
                # at once: the hub's startup check and the REST API wait on it, and a DELETE
                # that comes while the check is pending fails in JupyterHub ("pending check").
                self.log.warning("%s's notebook server is gone; deleting its Spark cluster", self._log_name)
                self._delete_in_background(self._cluster)
            return status
        if self._cluster is not None:
            st = await self._cluster.poll()
            if st == "stopped":
                # Her master is gone, her notebook server still runs. The hub will not call
                # stop() once poll() says stopped, so her notebook server is stopped here,
                # before poll() answers (a kernel without its cluster is no use; after the
                # answer the hub clears the pid), then the rest of the cluster, in the background.
                if self._deleting is None:
                    self.log.warning("%s's Spark master is gone; stopping the notebook server "
                                     "and deleting the rest of the cluster", self._log_name)
                    notebook = asyncio.ensure_future(self._stop_notebook_now())
                    self._delete_in_background(self._cluster, after=notebook)
                    await asyncio.shield(notebook)
                return 1
            if st in ("degraded", "unknown"):
                self.log.warning("%s's Spark cluster is %s", self._log_name, st)
        return None

    async def _stop_notebook_now(self) -> None:
        self._stopping = True
        try:
            await super().stop(now=True)
        except Exception:
            self.log.exception("stopping %s's notebook server failed", self._log_name)
        finally:
            self._stopping = False

    async def _delete_dead_cluster(self, cluster: SparkCluster, after: asyncio.Future | None = None) -> None:
        try:
            if after is not None:
                await after
            await cluster.stop()
            if self._cluster is cluster:
                self._cluster = None
                self._hub.usage.pop(self._key, None)
        except Exception:
            self.log.exception("deleting %s's cluster failed; kept in state", self._log_name)
        finally:
            entry = self._hub.deletions.get(self._key)
            if entry is not None and entry[1] is asyncio.current_task():
                del self._hub.deletions[self._key]
            self._persist()

    async def _await_deletion(self) -> None:
        """Wait for the background deletion that :meth:`poll` started, if one runs."""
        task = self._deleting
        if task is not None:
            self._emit(1, "Waiting for the previous Spark cluster to be deleted")
            await asyncio.shield(task)

    # ---- what the notebook server sees ---------------------------------------------------------
    @property
    def _user_dir(self) -> Path:
        """This start's session directory: what her notebook server reads (kernelspecs,
        her copies of the secret and the Connect token), made fresh by the lifecycle."""
        return self._cluster.session_dir

    def _prepare_user_files(self, options) -> None:
        """Her kernelspecs and private files, each created new in the session directory
        (no chown of anything that exists, no link followed)."""
        from .kernels import write_user_kernelspecs  # noqa: PLC0415

        write_user_kernelspecs(self, self._cluster, options, self._user_dir,
                               owner=self._cluster.daemon_user.owner)

    def _environment_kernelspecs(self, env: dict) -> None:
        """Her Connect kernelspec, token and CA in ``env`` (see :mod:`..serverext.remote`);
        the classic kernel is not offered there: its driver would run in a notebook server
        the workers cannot be assumed to reach back."""
        from ..core.kernelspec import ENV_CONNECT_CA, ENV_CONNECT_TOKEN, ENV_KERNELSPECS  # noqa: PLC0415
        from ..core.spark.connect import read_token_file  # noqa: PLC0415
        from ..serverext.remote import encode  # noqa: PLC0415
        from .kernels import user_kernel_settings  # noqa: PLC0415

        c = self._cluster
        conn = c.state.connect
        if conn is None or not conn.url:
            return
        options = self.options_schema.parse(c.state.options)
        settings = [k for k in user_kernel_settings(self, c, options, self._user_dir,
                                                    c.daemon_user.owner) if k.is_connect]
        env[ENV_KERNELSPECS] = encode(settings)
        env[ENV_CONNECT_TOKEN] = read_token_file(conn.token_file)
        if conn.ca_file:
            env[ENV_CONNECT_CA] = Path(conn.ca_file).read_text()

    def get_env(self):
        env = super().get_env()
        c = self._cluster
        if c is not None and c.master_url and self._kernelspecs_in_env:
            env[ENV_MASTER_URL] = c.master_url
            env[ENV_WEBUI_URL] = c.webui_url or ""
            env["SPARK_OPENSTACK_CLUSTER"] = f"{c.state.workers} workers · {c.state.cores} cores"
            self._environment_kernelspecs(env)
            return env
        if c is not None and c.master_url:
            env[ENV_MASTER_URL] = c.master_url
            env[ENV_WEBUI_URL] = c.webui_url or ""
            if c.state.connect and c.state.connect.url:
                env[ENV_CONNECT_URL] = c.state.connect.url
            jpath = str(self._user_dir / "jupyter") if self._user_dir else ""
            env["JUPYTER_PATH"] = os.pathsep.join(p for p in (jpath, env.get("JUPYTER_PATH", "")) if p)
            env["SPARK_OPENSTACK_CLUSTER"] = f"{c.state.workers} workers · {c.state.cores} cores"
            if c.state.ui_guard:
                env[uiguard.ENV_TOKEN_FILE] = c.state.ui_guard.user_token_file
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
