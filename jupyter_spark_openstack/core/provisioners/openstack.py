"""The ``openstack`` provisioner: one Nova server per Spark worker, booted with cloud-init.

* Connection: openstacksdk, from ``clouds.yaml`` (``cloud``, optionally ``clouds_yaml``) or the
  usual ``OS_*`` environment variables when ``cloud`` is not set.
* Every SDK call runs off the event loop in a bounded thread pool (``max_api_concurrency``).
* Transient errors (HTTP 5xx/408/429, connection resets, timeouts) are retried with
  exponential backoff and jitter (``retries``, ``retry_backoff``); others fail at once with
  the cloud's own message. A create that failed transiently may still have created the server
  (a timeout after Nova accepted it): before retrying, the provisioner looks for a server
  carrying this request's nonce (a security group: by its name) and adopts it instead of
  creating a second one.
* :meth:`check_capacity` reads Nova's limits before anything is created and refuses with the
  numbers ("needs 16 vCPUs, 6 left in project quota").
* :meth:`request_worker` returns the record as soon as Nova returns the server id (before
  boot); a server in ERROR is reported ``failed`` with Nova's fault message.
* :meth:`delete_worker` deletes and waits until the server answers 404 (then the cluster's
  security group goes if that was its last server, see below).
* ``remote_workers`` is True: the workers are other machines, so the lifecycle asks for
  encrypted Spark traffic; the Spark properties it gives (``WorkerSpec.spark_conf``) are
  checked before anything is created and written into each worker's properties file.
* Servers carry the tag ``spark-openstack-hub-<hub_id>`` and metadata naming the hub, user,
  server name, cluster and worker, so :meth:`list_workers` (and the reconciler) find them after
  a hub restart.
* Firewall, one security group per user cluster (``manage_security_group``, default true; it
  needs ``hub_cidr``, or an IP address as ``master_host``, which then means ``<ip>/32``). The
  first server of a cluster finds or creates the group ``spark-openstack-<hub_id>.<cluster_id>``
  (:func:`security_group_name`; a cluster id is ``[a-z0-9-]`` only, never a ``.``, so the name
  is one (hub, cluster) pair's only; the description names the cluster, the user and the hub),
  under a per-cluster lock: parallel requests of one cluster make one group, and a restarted
  hub adopts the group it finds. Its ingress rules are TCP 1024-65535 (Spark's worker, block
  manager and the executors' random ports) from (a) the group itself, i.e. the workers of this
  cluster only, (b) the hub's ``hub_cidr`` and (c) with head placement ``cluster``, her head's
  group; any other ingress rule found in it is deleted. Her head (:meth:`request_head`) is in a
  group of its own, the same name with ``~head``: the master's and driver's ports
  (:data:`HEAD_PORTS_FROM_WORKERS`) from her workers' group, the UIs and Connect's TLS port
  (:data:`HEAD_PORTS_FROM_HUB`) from ``hub_cidr`` only. Workers of two clusters cannot reach
  each other, unless an extra group of ``security_groups`` lets them (groups add up:
  OpenStack's stock ``default`` group lets every server of the project in). :meth:`delete_worker`
  deletes the cluster's groups once its last server is gone (a group still in use, HTTP 409, is
  left for later, never an error); :meth:`list_orphan_security_groups` /
  :meth:`delete_orphan_security_groups` find and remove the groups of a hub whose cluster has no
  server left: the reconciler runs that sweep every round (:meth:`reconcile_extras`).

User-data comes from :mod:`.cloudconfig` (workers) and :mod:`.headconfig` (heads) and never
holds OpenStack credentials or a hub token.

Example (``jupyterhub_config.py``)::

    c.SparkClusterMixin.provisioner = "openstack"
    c.SparkClusterMixin.provisioner_config = {
        "cloud": "mycloud",                        # clouds.yaml entry (or OS_* variables)
        "image": "spark-worker-4.0",               # Java + Spark preinstalled
        "networks": ["private"],
        "key_name": "admin-key",
        "hub_cidr": "10.0.0.0/24",                 # Spark ports open to this network only
        "install": {"mode": "preinstalled", "spark_home": "/opt/spark",
                    "java_home": "/usr/lib/jvm/java-17-openjdk-amd64"},
        # or {"mode": "download", "spark_url": "https://.../spark-4.0.0-bin-hadoop3.tgz",
        #     "spark_sha512": "<128 hex>"}
    }
    c.SparkClusterMixin.worker_sizes = [
        {"name": "small", "cores": 2, "memory": "3g", "flavor": "m1.medium"},
        {"name": "large", "cores": 8, "memory": "28g", "flavor": "m1.xlarge"}]

``bench``/tests/demo run it against :mod:`jupyter_spark_openstack.testing.emulator`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import random
import re
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC
from typing import Any

from ..errors import ProvisionerError, QuotaError, ValidationError
from ..models import (
    parse_abs_path,
    parse_cidr,
    parse_os_name,
    parse_positive_float,
    parse_positive_int,
)
from ..spark import ports
from . import cloudconfig
from .base import ROLE_HEAD, HeadSpec, Provisioner, WorkerRecord, WorkerSpec, WorkerStatus
from .cloudconfig import InstallConfig, parse_worker_spark_conf, render_user_data
from .headconfig import EXECUTOR_PYTHON, render_head_user_data

# Imported here, once, when the provisioner class is loaded: importing openstacksdk lazily in
# the API threads while a hub serves requests starves its event loop for ~0.5 s.
import openstack  # noqa: E402, F401  isort: skip
import openstack.compute.v2._proxy  # noqa: E402, F401  isort: skip
import openstack.connection  # noqa: E402, F401  isort: skip
import openstack.image.v2._proxy  # noqa: E402, F401  isort: skip
import openstack.network.v2._proxy  # noqa: E402, F401  isort: skip

TAG_PREFIX = "spark-openstack-hub-"
MD_HUB = "spark_openstack_hub"
MD_OWNER = "spark_openstack_owner"
MD_SERVER = "spark_openstack_server"
MD_CLUSTER = "spark_openstack_cluster"
MD_WORKER = "spark_openstack_worker"
MD_REQUEST = "spark_openstack_request"
MD_ROLE = "spark_openstack_role"

_HOSTNAME_RE = re.compile(r"[^a-z0-9-]+")

SG_PREFIX = "spark-openstack-"
SG_SEPARATOR = "."
SG_DESCRIPTION_PREFIX = "jupyter-spark-openstack: "
#: the head's group (placement 'cluster') is the workers' group's name with this suffix
SG_HEAD_SUFFIX = "~head"
#: what her workers reach on her head: the master's RPC port, her driver and its block manager
HEAD_PORTS_FROM_WORKERS = ((ports.MASTER_PORT, ports.MASTER_PORT),
                           (ports.DRIVER_PORT, ports.BLOCK_MANAGER_PORT))
#: what the hub (and notebook servers in hub_cidr) reach on her head: the master (a classic
#: kernel's driver registers there), the master's and the application's UIs (the notebook
#: server's proxy), and Spark Connect's TLS port
HEAD_PORTS_FROM_HUB = ((ports.MASTER_PORT, ports.MASTER_PORT),
                       (ports.MASTER_WEBUI_PORT, ports.MASTER_WEBUI_PORT),
                       (ports.APP_UI_PORT, ports.APP_UI_PORT),
                       (ports.CONNECT_PORT, ports.CONNECT_PORT))
#: Spark's worker port, block manager port and the executors' random ports
SG_PORT_MIN, SG_PORT_MAX = 1024, 65535
#: what cluster ids are made of (:mod:`..naming`): never the separator
_CLUSTER_ID_RE = re.compile(r"[a-z0-9][a-z0-9-]*")

CONFIG_KEYS = {
    "cloud": "name of a cloud in clouds.yaml (omit to use the OS_* environment variables)",
    "clouds_yaml": "path of a clouds.yaml file (default: openstacksdk's search path)",
    "region_name": "region to use",
    "flavors": "a mapping of size name -> flavor name or id, e.g. {small: m1.small}: one for "
               "every size the hub offers",
    "executor_python": "the Python of the image that the executors on the servers run (Python "
                       "UDFs, RDD lambdas); the kernels' minor version (default /usr/bin/python3)",
    "head_flavor": "flavor of each user's head server (head placement 'cluster': her Spark "
                   "master and Connect server; default: the flavor of size 'head' in flavors)",
    "image": "image name or id holding the worker OS (Java + Spark in mode 'preinstalled')",
    "networks": "list of network names or ids for the workers",
    "key_name": "keypair name for ssh access (optional)",
    "security_groups": "list of extra security group names (optional)",
    "availability_zone": "availability zone (optional)",
    "install": "{mode: preinstalled, spark_home, java_home} or {mode: download, spark_url, spark_sha512}",
    "master_host": "the hub-side address worker VMs reach the Spark master at",
    "hub_cidr": "CIDR of the hub's network, allowed to reach the workers' Spark ports "
                "(default: master_host/32 when master_host is an IP address)",
    "manage_security_group": "create/maintain a security group per user cluster (default true)",
    "api_timeout": "seconds before one API call times out (default 30)",
    "max_api_concurrency": "SDK calls running at once (default 4: more threads of openstacksdk "
                           "compete with the hub's event loop for the GIL)",
    "retries": "retries of a transient API error (default 5)",
    "retry_backoff": "first backoff in seconds, doubled per retry (default 0.5)",
    "delete_timeout": "seconds to wait for a deleted server to be gone (default 300)",
    "poll_interval": "seconds between polls while waiting for deletion (default 1)",
    "boot_timeout": "seconds a worker may take to boot and register (default 600)",
}


def _tag(hub_id: str) -> str:
    return (TAG_PREFIX + hub_id)[:60]


def security_group_name(hub_id: str, cluster_id: str, role: str = "worker") -> str:
    """``spark-openstack-<hub_id>.<cluster_id>`` (her workers), with ``~head`` for her head's
    group. Injective: a cluster id (validated here) is ``[a-z0-9-]`` only, so the suffix and the
    last ``.`` split the name back (:func:`parse_security_group_name`)."""
    if not isinstance(cluster_id, str) or not _CLUSTER_ID_RE.fullmatch(cluster_id):
        raise ValidationError("cluster_id", cluster_id, "lower-case letters, digits and '-', "
                              "starting with a letter or digit")
    suffix = SG_HEAD_SUFFIX if role == ROLE_HEAD else ""
    name = f"{SG_PREFIX}{hub_id}{SG_SEPARATOR}{cluster_id}{suffix}"
    if not hub_id or len(name) > 255:
        raise ValidationError("hub_id", hub_id, f"1 to {255 - len(SG_PREFIX + SG_SEPARATOR + cluster_id + suffix)} "
                              "characters (the security group's name holds it)")
    return name


def parse_security_group_name(name: str) -> tuple[str, str] | None:
    """``(hub_id, cluster_id)`` of a name made by :func:`security_group_name`, else None."""
    if not isinstance(name, str) or not name.startswith(SG_PREFIX):
        return None
    if name.endswith(SG_HEAD_SUFFIX):
        name = name[:-len(SG_HEAD_SUFFIX)]
    hub_id, sep, cluster_id = name[len(SG_PREFIX):].rpartition(SG_SEPARATOR)
    if not sep or not hub_id or not _CLUSTER_ID_RE.fullmatch(cluster_id):
        return None
    return hub_id, cluster_id


def _hostname(name: str) -> str:
    h = _HOSTNAME_RE.sub("-", name.lower()).strip("-")
    return re.sub(r"-{2,}", "-", h)[:63].strip("-") or "spark-worker"


def classify(exc: BaseException) -> tuple[bool, str]:
    """``(transient, message)`` for an exception raised by openstacksdk / keystoneauth."""
    from keystoneauth1 import exceptions as ksa  # noqa: PLC0415
    from openstack import exceptions as osx  # noqa: PLC0415

    if isinstance(exc, osx.HttpException):
        code = exc.status_code or 0
        detail = (exc.details or exc.message or str(exc)).strip()
        transient = code >= 500 or code in (408, 429)
        return transient, (f"HTTP {code}: {detail}" if code else detail)
    if isinstance(exc, ksa.HttpError):
        code = getattr(exc, "http_status", 0) or 0
        transient = code >= 500 or code in (408, 429)
        return transient, f"HTTP {code}: {exc.message or exc}"
    if isinstance(exc, ksa.connection.RetriableConnectionFailure | ksa.ConnectionError):
        return True, f"connection problem: {exc}"
    if isinstance(exc, ConnectionError | TimeoutError):
        return True, f"connection problem: {exc}"
    try:
        import requests  # noqa: PLC0415

        if isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout):
            return True, f"connection problem: {exc}"
    except ImportError:  # pragma: no cover
        pass
    if isinstance(exc, ksa.DiscoveryFailure):
        # keystoneauth wraps the real cause (refused connection, 5xx from the identity service)
        cause = exc.__cause__ or exc.__context__
        if cause is not None and cause is not exc:
            t, m = classify(cause)
            if t:
                return True, m
        return True, f"identity service discovery failed: {exc}"
    if isinstance(exc, ksa.ClientException | osx.SDKException):
        cause = exc.__cause__ or exc.__context__
        if cause is not None and cause is not exc and not isinstance(cause, osx.SDKException):
            t, m = classify(cause)
            if t:
                return True, m
        return False, str(exc)
    return False, f"{type(exc).__name__}: {exc}"


def _epoch(iso: str | None) -> float:
    """Nova's ``2026-11-25T17:00:00Z`` -> seconds since the epoch (0.0 if unknown)."""
    if not iso:
        return 0.0
    from datetime import datetime  # noqa: PLC0415

    try:
        dt = datetime.fromisoformat(str(iso).replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _is_not_found(exc: BaseException) -> bool:
    from openstack import exceptions as osx  # noqa: PLC0415

    return isinstance(exc, osx.NotFoundException)


def _is_conflict(exc: BaseException) -> bool:
    from openstack import exceptions as osx  # noqa: PLC0415

    return isinstance(exc, osx.ConflictException)


class OpenStackProvisioner(Provisioner):
    """Spark workers as OpenStack servers (see the module docstring)."""

    name = "openstack"
    default_boot_timeout = 600.0
    remote_workers = True   # VMs: Spark traffic crosses the network (encrypted, see base.py)
    default_head_placement = "cluster"   # her master and driver on a server of her own

    def __init__(self, config: dict | None = None, *, log=None):
        super().__init__(config, log=log)
        c = self.config
        self.install: InstallConfig = c["install"]
        self.master_host: str | None = c.get("master_host")
        self.default_boot_timeout = c["boot_timeout"]
        self._pool = ThreadPoolExecutor(max_workers=c["max_api_concurrency"],
                                        thread_name_prefix="openstack-api")
        self._conn = None
        self._conn_lock = threading.Lock()
        self._resolved: dict[str, Any] | None = None
        self._resolve_lock = asyncio.Lock()
        self._flavors: dict[str, Any] = {}
        # per (hub_id, cluster_id): the group's id once ensured, a lock (with its user count,
        # so it goes when unused) and the requests between "group ensured" and "create done"
        #: (hub_id, cluster_id, with a head) -> (the workers' group id, the head's group id)
        self._sg: dict[tuple[str, str, bool], tuple[str, str | None]] = {}
        self._sg_locks: dict[tuple[str, str], list] = {}
        self._sg_inflight: dict[tuple[str, str], int] = {}
        self._bg: set[asyncio.Task] = set()
        self._closed = False
        if config is not None and config.get("manage_security_group", True) is not False \
                and not c["manage_security_group"]:
            self.log.warning("OpenStack: no per-cluster security group (set hub_cidr, or an IP "
                             "address as master_host): workers of different users are not "
                             "isolated from each other by this provisioner")
        if c["manage_security_group"] and "default" in c["security_groups"]:
            self.log.warning("OpenStack: security_groups includes 'default'; its stock rules let "
                             "every server of the project reach the workers, whatever the "
                             "per-cluster group allows")

    # ---- configuration ------------------------------------------------------------------
    @classmethod
    def validate_config(cls, config: dict) -> dict:
        c = dict(config)
        for k in c:
            if k not in CONFIG_KEYS:
                raise ValidationError(f"openstack.{k}", c[k], "one of the keys " + ", ".join(CONFIG_KEYS))
        out: dict[str, Any] = {}
        out["cloud"] = parse_os_name("openstack.cloud", c["cloud"]) if c.get("cloud") is not None else None
        out["clouds_yaml"] = parse_abs_path("openstack.clouds_yaml", c["clouds_yaml"]) if c.get("clouds_yaml") else None
        out["region_name"] = parse_os_name("openstack.region_name", c["region_name"]) if c.get("region_name") else None
        flavors = c.get("flavors") or {}
        if not isinstance(flavors, dict):
            raise ValidationError("openstack.flavors", flavors, CONFIG_KEYS["flavors"])
        out["flavors"] = {parse_os_name("openstack.flavors (size name)", k):
                          parse_os_name(f"openstack.flavors.{k}", v) for k, v in flavors.items()}
        out["executor_python"] = parse_abs_path("openstack.executor_python",
                                                c.get("executor_python") or EXECUTOR_PYTHON)
        out["head_flavor"] = (parse_os_name("openstack.head_flavor", c["head_flavor"])
                              if c.get("head_flavor") is not None else out["flavors"].get("head"))
        if c.get("image") is None:
            raise ValidationError("openstack.image", None, CONFIG_KEYS["image"])
        out["image"] = parse_os_name("openstack.image", c["image"])
        nets = c.get("networks")
        if isinstance(nets, str):
            nets = [nets]
        if not isinstance(nets, list) or not nets:
            raise ValidationError("openstack.networks", nets, CONFIG_KEYS["networks"] + " (at least one)")
        out["networks"] = [parse_os_name("openstack.networks", n) for n in nets]
        out["key_name"] = parse_os_name("openstack.key_name", c["key_name"]) if c.get("key_name") else None
        sgs = c.get("security_groups") or []
        if isinstance(sgs, str):
            sgs = [sgs]
        if not isinstance(sgs, list):
            raise ValidationError("openstack.security_groups", sgs, CONFIG_KEYS["security_groups"])
        out["security_groups"] = [parse_os_name("openstack.security_groups", s) for s in sgs]
        out["availability_zone"] = (parse_os_name("openstack.availability_zone", c["availability_zone"])
                                    if c.get("availability_zone") else None)
        out["install"] = c["install"] if isinstance(c.get("install"), InstallConfig) else \
            InstallConfig.parse(c.get("install"), "openstack.install")
        if c.get("master_host") is not None:
            from ..models import _HOST_RE  # noqa: PLC0415

            mh = str(c["master_host"])
            if not _HOST_RE.match(mh) or mh != mh.strip():
                raise ValidationError("openstack.master_host", c["master_host"], "a host name or IP address")
            out["master_host"] = mh
        else:
            out["master_host"] = None
        out["hub_cidr"] = parse_cidr("openstack.hub_cidr", c["hub_cidr"]) if c.get("hub_cidr") else None
        if out["hub_cidr"] is None and out["master_host"]:
            import ipaddress  # noqa: PLC0415

            try:
                ip = ipaddress.ip_address(out["master_host"])
            except ValueError:
                pass   # a host name: no CIDR to derive
            else:
                out["hub_cidr"] = f"{ip}/{ip.max_prefixlen}"
        msg = c.get("manage_security_group", True)
        if not isinstance(msg, bool):
            raise ValidationError("openstack.manage_security_group", msg, "true or false")
        out["manage_security_group"] = msg and out["hub_cidr"] is not None
        out["api_timeout"] = parse_positive_float("openstack.api_timeout", c.get("api_timeout", 30.0), maximum=600)
        out["max_api_concurrency"] = parse_positive_int("openstack.max_api_concurrency",
                                                        c.get("max_api_concurrency", 4), maximum=64)
        out["retries"] = parse_positive_int("openstack.retries", c.get("retries", 5), minimum=0, maximum=20)
        out["retry_backoff"] = parse_positive_float("openstack.retry_backoff", c.get("retry_backoff", 0.5), maximum=60)
        out["delete_timeout"] = parse_positive_float("openstack.delete_timeout", c.get("delete_timeout", 300.0))
        out["poll_interval"] = parse_positive_float("openstack.poll_interval", c.get("poll_interval", 1.0), maximum=60)
        out["boot_timeout"] = parse_positive_float("openstack.boot_timeout", c.get("boot_timeout", 600.0))
        return out

    # ---- SDK plumbing ----------------------------------------------------------------------
    def _connection(self):
        with self._conn_lock:
            if self._conn is None:
                import openstack  # noqa: PLC0415
                from openstack import config as osconfig  # noqa: PLC0415

                c = self.config
                try:
                    # an explicit clouds_yaml is the whole configuration: OS_CLIENT_CONFIG_FILE
                    # and the other OS_* variables of the hub's environment do not override it
                    cfg = (osconfig.OpenStackConfig(config_files=[c["clouds_yaml"]], load_envvars=False)
                           if c["clouds_yaml"] else osconfig.OpenStackConfig())
                    region = cfg.get_one(cloud=c["cloud"], region_name=c["region_name"],
                                         api_timeout=c["api_timeout"])
                except Exception as e:  # noqa: BLE001
                    raise ProvisionerError(f"cannot read the OpenStack cloud configuration "
                                           f"(cloud {c['cloud']!r}): {e}") from None
                self._conn = openstack.connection.Connection(config=region)
            return self._conn

    async def _run(self, fn, *args, **kwargs):
        if self._closed:
            raise ProvisionerError("the openstack provisioner is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    async def _call(self, what: str, fn, *args, not_found=None, conflict=None, **kwargs):
        """Run ``fn`` in the pool; retry transient errors with backoff; raise ProvisionerError.
        ``not_found``/``conflict``: value returned on 404/409 instead of raising."""
        c = self.config
        attempt = 0
        while True:
            try:
                return await self._run(fn, *args, **kwargs)
            except ProvisionerError:
                raise
            except Exception as e:  # noqa: BLE001
                if not_found is not None and _is_not_found(e):
                    return not_found
                if conflict is not None and _is_conflict(e):
                    return conflict
                transient, msg = classify(e)
                if not transient or attempt >= c["retries"]:
                    suffix = f" (after {attempt + 1} attempts)" if transient else ""
                    err = QuotaError if "quota exceeded" in msg.lower() else ProvisionerError
                    raise err(f"OpenStack: {what} failed: {msg}{suffix}", transient=transient) from None
                delay = c["retry_backoff"] * (2 ** attempt) * (0.5 + random.random())
                self.log.warning("OpenStack: %s: transient error (%s); retry %d/%d in %.1fs",
                                 what, msg, attempt + 1, c["retries"], delay)
                attempt += 1
                await asyncio.sleep(delay)

    def _compute(self):
        return self._connection().compute

    def _sdk(self, service: str, method: str):
        """``conn.<service>.<method>`` resolved lazily *in the pool thread*: touching a proxy
        may authenticate and discover versions, which is network I/O that can fail."""
        def call(*args, **kwargs):
            return getattr(getattr(self._connection(), service), method)(*args, **kwargs)
        call.__name__ = f"{service}.{method}"
        return call

    # ---- resolving names ---------------------------------------------------------------------
    async def _resolve(self) -> dict:
        """Image, network and flavor ids for the configured names (once)."""
        async with self._resolve_lock:
            if self._resolved is not None:
                return self._resolved
            c = self.config

            def find(proxy_find, kind: str, field: str, ref: str):
                async def go():
                    obj = await self._call(f"looking up {kind} {ref!r}", proxy_find, ref,
                                           ignore_missing=True)
                    if obj is None:
                        raise ProvisionerError(f"OpenStack: {kind} {ref!r} (config {field}) does not "
                                               f"exist in this project")
                    return obj
                return go()

            image = await find(self._sdk("image", "find_image"), "image", "openstack.image", c["image"])
            nets = [await find(self._sdk("network", "find_network"), "network", "openstack.networks", n)
                    for n in c["networks"]]
            for size, fname in c["flavors"].items():
                self._flavors[fname] = await find(self._sdk("compute", "find_flavor"), "flavor",
                                                  f"openstack.flavors.{size}", fname)
            self._resolved = {"image_id": image.id, "network_ids": [n.id for n in nets]}
            return self._resolved

    def flavor_for(self, spec: WorkerSpec) -> str:
        """The flavor of ``spec``'s size: this provisioner's own ``flavors`` mapping."""
        if spec.size and spec.size in self.config["flavors"]:
            return self.config["flavors"][spec.size]
        raise ValidationError("openstack.flavors", spec.size,
                              "a mapping that names a flavor for every size the hub offers; it "
                              "has flavors for: " + (", ".join(self.config["flavors"]) or "none"))

    async def _flavor(self, name: str):
        await self._resolve()
        if name not in self._flavors:
            obj = await self._call(f"looking up flavor {name!r}", self._sdk("compute", "find_flavor"),
                                   name, ignore_missing=True)
            if obj is None:
                raise ProvisionerError(f"OpenStack: flavor {name!r} does not exist in this project")
            self._flavors[name] = obj
        return self._flavors[name]

    # ---- the per-cluster security group ----------------------------------------------------
    @contextlib.asynccontextmanager
    async def _cluster_lock(self, key: tuple[str, str]):
        """One asyncio lock per cluster; forgotten when nobody holds or waits for it."""
        entry = self._sg_locks.get(key)
        if entry is None:
            entry = self._sg_locks[key] = [asyncio.Lock(), 0]
        entry[1] += 1
        try:
            async with entry[0]:
                yield
        finally:
            entry[1] -= 1
            if entry[1] == 0 and self._sg_locks.get(key) is entry:
                del self._sg_locks[key]

    def _wanted_rules(self, sg_id: str, role: str = "worker", peer_id: str | None = None) -> list[dict]:
        """A group's only ingress. The workers' group: Spark's ports from its own members, from
        the hub and from her head's group (``peer_id``, placement 'cluster'). The head's group:
        :data:`HEAD_PORTS_FROM_WORKERS` from the workers' group (``peer_id``) and
        :data:`HEAD_PORTS_FROM_HUB` from the hub only: no other host reaches her UIs."""
        import ipaddress  # noqa: PLC0415

        cidr = self.config["hub_cidr"]
        hub = {"ether_type": f"IPv{ipaddress.ip_network(cidr).version}", "remote_group_id": None,
               "remote_ip_prefix": cidr}

        def tcp(lo: int, hi: int, **kw) -> dict:
            return {"direction": "ingress", "protocol": "tcp", "port_range_min": lo,
                    "port_range_max": hi, **kw}

        if role == ROLE_HEAD:
            return ([tcp(lo, hi, ether_type="IPv4", remote_group_id=peer_id, remote_ip_prefix=None)
                     for lo, hi in HEAD_PORTS_FROM_WORKERS] +
                    [tcp(lo, hi, **hub) for lo, hi in HEAD_PORTS_FROM_HUB])
        rules = [tcp(SG_PORT_MIN, SG_PORT_MAX, ether_type="IPv4", remote_group_id=sg_id,
                     remote_ip_prefix=None),
                 tcp(SG_PORT_MIN, SG_PORT_MAX, **hub)]
        if peer_id:
            rules.append(tcp(SG_PORT_MIN, SG_PORT_MAX, ether_type="IPv4", remote_group_id=peer_id,
                             remote_ip_prefix=None))
        return rules

    @staticmethod
    def _rule_is(rule, wanted: dict) -> bool:
        return all(getattr(rule, k, None) == v for k, v in wanted.items())

    async def _groups_named(self, name: str) -> list:
        groups = await self._call(f"looking up security group {name!r}", lambda: list(
            self._connection().network.security_groups(name=name)))
        return sorted((g for g in groups if g.name == name), key=lambda g: (g.created_at or "", g.id))

    async def _ensure_security_group(self, spec: WorkerSpec | HeadSpec) -> str:
        """The id of the group ``spec``'s server goes in: her workers' group, or (a head) her
        head's group; each cached, else found (a restarted hub adopts it), else created, its
        ingress rules made exactly :meth:`_wanted_rules`. With a head (a head's spec, or a
        worker's whose master is on the head) both groups are ensured, each admitting the
        other. Call it holding the cluster's lock."""
        is_head = isinstance(spec, HeadSpec)
        with_head = is_head or bool(getattr(spec, "master_on_head", False))
        key = (spec.hub_id, spec.cluster_id, with_head)
        if key not in self._sg:
            w = await self._find_or_create_group(spec, "worker")
            h = await self._find_or_create_group(spec, ROLE_HEAD) if with_head else None
            await self._sync_rules(spec, w, self._wanted_rules(w.id, "worker", h.id if h else None))
            if h is not None:
                await self._sync_rules(spec, h, self._wanted_rules(h.id, ROLE_HEAD, w.id))
            self._sg[key] = (w.id, h.id if h else None)
        w_id, h_id = self._sg[key]
        return h_id if is_head else w_id

    async def _find_or_create_group(self, spec: WorkerSpec | HeadSpec, role: str):
        name = security_group_name(spec.hub_id, spec.cluster_id, role)
        groups = await self._groups_named(name)
        if groups:
            sg = groups[0]
            for extra in groups[1:]:   # a create retried after an answer was lost elsewhere
                self.log.warning("OpenStack: deleting duplicate security group %s (%s)", name, extra.id)
                try:
                    await self._call(f"deleting duplicate security group {name}",
                                     self._sdk("network", "delete_security_group"), extra.id,
                                     ignore_missing=True, conflict=False)
                except ProvisionerError as e:
                    self.log.warning("OpenStack: %s", e)
        else:
            if role == ROLE_HEAD:
                desc = (f"{SG_DESCRIPTION_PREFIX}the head of cluster {spec.cluster_id} of user "
                        f"{spec.owner} (hub {spec.hub_id}): its master and driver ports open to "
                        f"the cluster's workers, its UIs and Connect to {self.config['hub_cidr']} only")
            else:
                desc = (f"{SG_DESCRIPTION_PREFIX}Spark workers of cluster {spec.cluster_id} of user "
                        f"{spec.owner} (hub {spec.hub_id}): TCP {SG_PORT_MIN}-{SG_PORT_MAX} open to "
                        f"the cluster's own workers and head and to {self.config['hub_cidr']} only")
            desc = desc[:255]

            async def adopt():
                found = await self._groups_named(name)
                return found[0] if found else None

            sg = await self._create_or_adopt(
                f"security group {name}",
                functools.partial(self._sdk("network", "create_security_group"),
                                  name=name, description=desc), adopt)
            self.log.info("OpenStack: created security group %s (%s) for user %s", name, sg.id,
                          spec.owner)
        return sg

    async def _sync_rules(self, spec, sg, wanted: list[dict]) -> None:
        """Make ``sg``'s ingress rules exactly ``wanted``."""
        name = sg.name
        rules = await self._call(f"listing the rules of security group {name}", lambda: list(
            self._connection().network.security_group_rules(security_group_id=sg.id)))
        for r in rules:
            if r.direction == "ingress" and not any(self._rule_is(r, w) for w in wanted):
                self.log.warning("OpenStack: removing unexpected ingress rule %s from security "
                                 "group %s", r.id, name)
                await self._call(f"removing a rule of security group {name}",
                                 self._sdk("network", "delete_security_group_rule"), r.id,
                                 ignore_missing=True)
        for w in wanted:
            if not any(self._rule_is(r, w) for r in rules):
                # 409 "rule exists": a retried create whose first answer was lost
                await self._call(f"adding a rule to security group {name}",
                                 self._sdk("network", "create_security_group_rule"),
                                 security_group_id=sg.id, conflict=True, **w)

    async def _cluster_has_servers(self, hub_id: str, cluster_id: str) -> bool:
        servers = await self._call("listing servers", lambda: list(
            self._compute().servers(details=True, tags=_tag(hub_id))))
        return any((s.metadata or {}).get(MD_HUB) == hub_id
                   and (s.metadata or {}).get(MD_CLUSTER) == cluster_id
                   and (s.status or "").upper() not in ("DELETED", "SOFT_DELETED") for s in servers)

    async def _release_security_group(self, hub_id: str, cluster_id: str, *,
                                      attempts: int = 3) -> bool:
        """Delete the cluster's group if no server of the cluster is left and no request of it
        is in flight here. Never raises: False means it is still there (servers left, still in
        use: 409, or the API failed), to be tried again later."""
        if not self.config["manage_security_group"]:
            return True
        try:
            names = [security_group_name(hub_id, cluster_id, ROLE_HEAD),
                     security_group_name(hub_id, cluster_id)]
        except ValidationError:
            return True   # not a cluster of ours: it never had a group
        name = names[1]
        key = (hub_id, cluster_id)
        async with self._cluster_lock(key):
            if self._sg_inflight.get(key):
                return False
            try:
                if await self._cluster_has_servers(hub_id, cluster_id):
                    return False
                groups = [g for n in names for g in await self._groups_named(n)]   # head's first
                for attempt in range(attempts):
                    left = []
                    for g in groups:
                        r = await self._call(f"deleting security group {g.name} ({g.id})",
                                             self._sdk("network", "delete_security_group"), g.id,
                                             ignore_missing=True, conflict=False)
                        if r is False:
                            left.append(g)
                        else:
                            self.log.info("OpenStack: deleted security group %s (%s)", g.name, g.id)
                    if not left:
                        for with_head in (False, True):
                            self._sg.pop((hub_id, cluster_id, with_head), None)
                        return True
                    groups = left
                    if attempt + 1 < attempts:
                        await asyncio.sleep(self.config["poll_interval"])
                self.log.info("OpenStack: security group %s is still in use (HTTP 409); it will "
                              "be deleted later", name)
                return False
            except ProvisionerError as e:
                self.log.warning("OpenStack: could not delete security group %s (will retry "
                                 "later): %s", name, e)
                return False

    async def list_orphan_security_groups(self, *, hub_id: str) -> list[dict]:
        """The per-cluster groups of ``hub_id`` whose cluster has no server left (and no request
        in flight in this process): ``[{"id", "name", "cluster_id", "created_at"}]``. A group is
        this hub's when its name parses (:func:`parse_security_group_name`) to ``hub_id`` and
        its description is ours. A backend error raises ProvisionerError (unknown)."""
        groups = await self._call("listing security groups", lambda: list(
            self._connection().network.security_groups()))
        mine = []
        for g in groups:
            parsed = parse_security_group_name(g.name or "")
            if parsed and parsed[0] == hub_id and (g.description or "").startswith(SG_DESCRIPTION_PREFIX):
                mine.append((g, parsed[1]))
        if not mine:
            return []
        servers = await self._call("listing servers", lambda: list(
            self._compute().servers(details=True, tags=_tag(hub_id))))
        used = {(s.metadata or {}).get(MD_CLUSTER) for s in servers
                if (s.metadata or {}).get(MD_HUB) == hub_id}
        return [{"id": g.id, "name": g.name, "cluster_id": cid, "created_at": _epoch(g.created_at)}
                for g, cid in mine if cid not in used and not self._sg_inflight.get((hub_id, cid))]

    async def reconcile_extras(self, *, hub_id: str, min_age: float) -> None:
        """The reconciler's round: orphan per-cluster security groups."""
        await self.delete_orphan_security_groups(hub_id=hub_id, min_age=min_age)

    async def delete_orphan_security_groups(self, *, hub_id: str, min_age: float = 0.0) -> list[str]:
        """Delete what :meth:`list_orphan_security_groups` finds (older than ``min_age``
        seconds); each is checked again under its cluster's lock first. Returns the names
        deleted; one still in use (409) or failing is left for the next call. For the
        reconciler, once per round: groups left by a hub that died between creating a group and
        its first server, or by a deletion answered 409."""
        now = time.time()
        deleted = []
        for o in await self.list_orphan_security_groups(hub_id=hub_id):
            if min_age and o["created_at"] and now - o["created_at"] < min_age:
                continue
            if await self._release_security_group(hub_id, o["cluster_id"], attempts=1):
                self.log.warning("OpenStack: deleted orphan security group %s of cluster %s",
                                 o["name"], o["cluster_id"])
                deleted.append(o["name"])
        return deleted

    # ---- the interface ---------------------------------------------------------------------
    async def check_capacity(self, specs: list[WorkerSpec], *, head: bool = False) -> None:
        if not specs and not head:
            return
        names = [self.flavor_for(s) for s in specs]
        if head:
            names.append(self._head_flavor())
        need_cores = need_ram = 0
        for name in names:
            f = await self._flavor(name)
            need_cores += int(f.vcpus or 0)
            need_ram += int(f.ram or 0)
        limits = await self._call("reading project limits", self._sdk("compute", "get_limits"))
        a = limits.absolute
        problems = []
        for label, unit, need, mx, used in (
                ("vCPUs", "", need_cores, a.total_cores, a.total_cores_used),
                ("RAM", " MB", need_ram, a.total_ram, a.total_ram_used),
                ("servers", "", len(names), a.instances, a.instances_used)):
            if mx is None or int(mx) < 0:
                continue
            left = max(0, int(mx) - int(used or 0))
            if need > left:
                problems.append(f"needs {need}{unit} {label}, {left}{unit} left in project quota "
                                f"({mx}{unit} total, {used}{unit} used)")
        if problems:
            raise QuotaError("OpenStack quota: " + "; ".join(problems) +
                             ". Ask for fewer or smaller workers, or ask the cloud admin for more quota.")

    @property
    def executor_python(self) -> str:
        return self.config["executor_python"]

    def _user_data(self, spec: WorkerSpec | HeadSpec) -> str:
        if isinstance(spec, HeadSpec):
            return render_head_user_data(hostname=_hostname(spec.name), secret=spec.secret,
                                         token=spec.token, tls=spec.tls, install=self.install,
                                         driver_memory=spec.driver_memory,
                                         connect_conf=spec.connect_conf,
                                         master_conf=spec.master_conf, connect=spec.connect,
                                         executor_python=self.executor_python)
        return render_user_data(hostname=_hostname(spec.name), master_url=spec.master_url,
                                cores=spec.cores, memory=spec.memory, secret=spec.secret,
                                install=self.install, spark_conf=spec.spark_conf)

    def _create_kwargs(self, spec: WorkerSpec | HeadSpec, flavor, resolved: dict, sg: str | None,
                       nonce: str) -> dict:
        user_data = self._user_data(spec)
        metadata = {MD_HUB: spec.hub_id, MD_OWNER: spec.owner, MD_SERVER: spec.server_name,
                    MD_CLUSTER: spec.cluster_id, MD_WORKER: spec.name, MD_REQUEST: nonce}
        if isinstance(spec, HeadSpec):
            metadata[MD_ROLE] = ROLE_HEAD
        metadata = {k: str(v)[:255] for k, v in metadata.items()}
        groups = list(self.config["security_groups"]) + ([sg] if sg else [])
        kw = {"name": spec.name, "flavor_id": flavor.id, "image_id": resolved["image_id"],
              "networks": [{"uuid": n} for n in resolved["network_ids"]],
              "user_data": base64.b64encode(user_data.encode()).decode(),
              "metadata": metadata, "tags": ["spark-openstack", _tag(spec.hub_id)]}
        if groups:
            kw["security_groups"] = [{"name": g} for g in groups]
        if self.config["key_name"]:
            kw["key_name"] = self.config["key_name"]
        if self.config["availability_zone"]:
            kw["availability_zone"] = self.config["availability_zone"]
        return kw

    def _record(self, server, spec: WorkerSpec | None = None, md: dict | None = None) -> WorkerRecord:
        md = md if md is not None else dict(server.metadata or {})
        return WorkerRecord(
            id=server.id, name=spec.name if spec else (md.get(MD_WORKER) or server.name),
            provisioner=self.name, owner=spec.owner if spec else md.get(MD_OWNER, ""),
            cluster_id=spec.cluster_id if spec else md.get(MD_CLUSTER, ""),
            hub_id=spec.hub_id if spec else md.get(MD_HUB, ""),
            created_at=time.time() if spec else _epoch(getattr(server, "created_at", None)),
            data={"server_name": spec.server_name if spec else md.get(MD_SERVER, ""),
                  "role": ROLE_HEAD if (isinstance(spec, HeadSpec) if spec else md.get(MD_ROLE) == ROLE_HEAD)
                  else "worker",
                  "request": md.get(MD_REQUEST) if spec is None else None,
                  "flavor": (server.flavor or {}).get("original_name") if isinstance(server.flavor, dict) else None})

    async def _find_request(self, spec: WorkerSpec, nonce: str):
        def go():
            return [s for s in self._compute().servers(details=True, name=f"^{re.escape(spec.name)}$",
                                                        tags=_tag(spec.hub_id))
                    if (s.metadata or {}).get(MD_REQUEST) == nonce]
        found = await self._call(f"looking for server {spec.name}", go)
        return found[0] if found else None

    def _check_master_reachable(self, spec: WorkerSpec) -> None:
        """With ``master_host`` set, the workers' master URL must name that host: a master bound
        elsewhere (e.g. 127.0.0.1) is unreachable from the VMs and they would never register."""
        mh = self.config.get("master_host")
        if not mh or spec.master_on_head or not spec.master_url.startswith("spark://"):
            return
        hosts = [hp.rpartition(":")[0] for hp in spec.master_url[len("spark://"):].split(",")]
        if mh not in hosts:
            raise ValidationError("openstack.master_host", mh,
                                  f"the host of the Spark master the workers join ({spec.master_url}); "
                                  "set the spawner's master_host to the same address")

    async def _create_or_adopt(self, what: str, create, find):
        """``create()`` in the pool, retrying transient errors; a create that failed
        transiently may still have happened (a timeout after the cloud accepted it): before
        each retry ``await find()`` looks for it and adopts it instead of creating another."""
        c = self.config
        attempt = 0
        while True:
            try:
                return await self._run(create)
            except Exception as e:  # noqa: BLE001
                transient, msg = classify(e)
                if not transient or attempt >= c["retries"]:
                    err = QuotaError if "quota exceeded" in msg.lower() else ProvisionerError
                    raise err(f"OpenStack: creating {what} failed: {msg}",
                              transient=transient) from None
                try:
                    found = await find()
                except ProvisionerError:
                    found = None
                if found is not None:
                    self.log.info("OpenStack: %s (%s) was created despite %s; adopted",
                                  what, found.id, msg)
                    return found
                delay = c["retry_backoff"] * (2 ** attempt) * (0.5 + random.random())
                self.log.warning("OpenStack: creating %s: transient error (%s); retry %d/%d in %.1fs",
                                 what, msg, attempt + 1, c["retries"], delay)
                attempt += 1
                await asyncio.sleep(delay)

    async def request_head(self, spec: HeadSpec) -> WorkerRecord:
        """Boot the cluster's head server (:mod:`.headconfig`), in the cluster's group."""
        name = self._head_flavor()
        await self._run(self._user_data, spec)   # refused before anything is created
        return await self._request_server(spec, name)

    def _head_flavor(self) -> str:
        name = self.config["head_flavor"]
        if not name:
            raise ValidationError("openstack.head_flavor", None,
                                  "a flavor for the users' head servers (or a size 'head' in "
                                  "openstack.flavors), needed by head placement 'cluster'")
        return name

    async def request_worker(self, spec: WorkerSpec) -> WorkerRecord:
        self._check_master_reachable(spec)
        parse_worker_spark_conf(spec.spark_conf)   # refused before anything is created
        return await self._request_server(spec, self.flavor_for(spec))

    async def _request_server(self, spec: WorkerSpec | HeadSpec, flavor_name: str) -> WorkerRecord:
        manage = self.config["manage_security_group"]
        key = (spec.hub_id, spec.cluster_id)
        if manage:
            security_group_name(spec.hub_id, spec.cluster_id)   # a ValidationError comes first
        flavor = await self._flavor(flavor_name)
        resolved = await self._resolve()
        sg = None
        if manage:
            try:
                async with self._cluster_lock(key):
                    sg = await self._ensure_security_group(spec)
                    # from here the group is this request's until Nova has (or refused) the server
                    self._sg_inflight[key] = self._sg_inflight.get(key, 0) + 1
            except Exception:   # e.g. created, but its rules could not be added
                if not self._sg_inflight.get(key):
                    await self._release_security_group(spec.hub_id, spec.cluster_id, attempts=1)
                raise
        nonce = uuid.uuid4().hex[:16]
        try:
            try:
                # YAML rendering is pure-Python CPU work: keep it off the event loop too
                kw = await self._run(self._create_kwargs, spec, flavor, resolved, sg, nonce)
                server = await self._create_or_adopt(
                    f"server {spec.name}", functools.partial(self._sdk("compute", "create_server"), **kw),
                    functools.partial(self._find_request, spec, nonce))
            finally:
                if sg is not None:
                    left = self._sg_inflight.get(key, 1) - 1
                    if left:
                        self._sg_inflight[key] = left
                    else:
                        self._sg_inflight.pop(key, None)
        except Exception:
            if sg is not None:
                for with_head in (False, True):   # re-checked by the next request (deleted outside?)
                    self._sg.pop((*key, with_head), None)
                if not self._sg_inflight.get(key):
                    await self._release_security_group(spec.hub_id, spec.cluster_id, attempts=1)
            raise
        except asyncio.CancelledError:   # a stop during the spawn: release in the background
            if sg is not None and not self._sg_inflight.get(key) and not self._closed:
                task = asyncio.get_running_loop().create_task(
                    self._release_security_group(spec.hub_id, spec.cluster_id, attempts=1))
                self._bg.add(task)
                task.add_done_callback(self._bg.discard)
            raise
        rec = self._record(server, spec)
        rec.data["request"] = nonce
        rec.data["flavor"] = flavor.name
        self.log.info("OpenStack: requested server %s (%s) for user %s, cluster %s",
                      spec.name, server.id, spec.owner, spec.cluster_id)
        return rec

    async def worker_status(self, record: WorkerRecord) -> WorkerStatus:
        server = await self._call(f"reading server {record.name} ({record.id})",
                                  self._sdk("compute", "get_server"), record.id, not_found=False)
        if server is False:
            return WorkerStatus("gone", f"server {record.id} does not exist (404)")
        st = (server.status or "").upper()
        host = None
        for addrs in (server.addresses or {}).values():
            for a in addrs:
                if a.get("OS-EXT-IPS:type", "fixed") == "fixed" and a.get("addr"):
                    host = host or a["addr"]
        if st == "ACTIVE":
            return WorkerStatus("running", "", host)
        if st == "ERROR":
            fault = server.fault or {}
            msg = fault.get("message") if isinstance(fault, dict) else None
            return WorkerStatus("failed", f"server {record.name} ({record.id}) is in ERROR: "
                                          f"{msg or 'no fault message from Nova'}", host)
        if st in ("DELETED", "SOFT_DELETED"):
            return WorkerStatus("gone", f"server {record.id} is {st}")
        if st in ("SHUTOFF", "SUSPENDED", "PAUSED", "SHELVED", "SHELVED_OFFLOADED", "STOPPED"):
            return WorkerStatus("failed", f"server {record.name} ({record.id}) is {st}", host)
        return WorkerStatus("pending", f"server is {st or 'unknown'}", host)

    async def delete_worker(self, record: WorkerRecord) -> None:
        c = self.config
        await self._call(f"deleting server {record.name} ({record.id})",
                         self._sdk("compute", "delete_server"), record.id, ignore_missing=True)
        deadline = time.monotonic() + c["delete_timeout"]
        last_err = ""
        interval = min(0.25, c["poll_interval"])
        while time.monotonic() < deadline:
            try:
                server = await self._call(f"reading server {record.name} ({record.id})",
                                          self._sdk("compute", "get_server"), record.id, not_found=False)
            except ProvisionerError as e:
                last_err = str(e)
                server = True
            if server is False:
                self.log.info("OpenStack: deleted server %s (%s) of user %s", record.name,
                              record.id, record.owner)
                if record.hub_id and record.cluster_id:
                    # the cluster's last server gone: its group goes too (never fails the stop)
                    await self._release_security_group(record.hub_id, record.cluster_id)
                return
            await asyncio.sleep(interval)
            interval = min(interval * 2, c["poll_interval"])
        raise ProvisionerError(f"OpenStack: server {record.name} ({record.id}) still exists "
                               f"{c['delete_timeout']:.0f}s after its deletion" +
                               (f"; last error: {last_err}" if last_err else ""), transient=True)

    async def list_workers(self, *, hub_id: str, owner: str | None = None) -> list[WorkerRecord]:
        servers = await self._call(
            "listing servers", lambda: list(self._compute().servers(details=True, tags=_tag(hub_id))))
        out = []
        for s in servers:
            md = dict(s.metadata or {})
            if md.get(MD_HUB) != hub_id:
                continue
            if owner is not None and md.get(MD_OWNER) != owner:
                continue
            rec = self._record(s, None, md)
            rec.data["status"] = s.status
            rec.data["created"] = s.created_at
            out.append(rec)
        return out

    async def _console(self, record: WorkerRecord, length: int) -> str:
        """The last ``length`` lines of the server's console; raises ProvisionerError."""
        out = await self._call(f"reading the console of {record.name}",
                               self._sdk("compute", "get_server_console_output"), record.id,
                               length=length)
        return (out or {}).get("output", "") if isinstance(out, dict) else str(out or "")

    async def worker_log(self, record: WorkerRecord) -> str:
        try:
            return await self._console(record, 40)
        except ProvisionerError as e:
            return f"(console output unavailable: {e})"

    async def boot_failure(self, record: WorkerRecord) -> str | None:
        """The console's :data:`.cloudconfig.BOOT_FAILURES` line (cloud-init ran our user-data
        and the worker will not start), or None (also when the console cannot be read)."""
        try:
            return cloudconfig.boot_failure(await self._console(record, 200))
        except ProvisionerError:
            return None

    async def close(self) -> None:
        if self._bg:   # releases of cancelled requests: let them finish (each never raises)
            await asyncio.wait(list(self._bg), timeout=self.config["api_timeout"])
        self._closed = True
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001
                pass
        self._pool.shutdown(wait=False, cancel_futures=True)
