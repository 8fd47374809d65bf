"""The ``openstack`` provisioner: one Nova server per Spark worker, booted with cloud-init.

* Connection: openstacksdk, from ``clouds.yaml`` (``cloud``, optionally ``clouds_yaml``) or the
  usual ``OS_*`` environment variables when ``cloud`` is not set.
* Every SDK call runs off the event loop in a bounded thread pool (``max_api_concurrency``).
* Transient errors (HTTP 5xx/408/429, connection resets, timeouts) are retried with
  exponential backoff and jitter (``retries``, ``retry_backoff``); others fail at once with
  the cloud's own message. A create that failed transiently may still have created the server
  (a timeout after Nova accepted it): before retrying, the provisioner looks for a server
  carrying this request's nonce and adopts it instead of creating a second one.
* :meth:`check_capacity` reads Nova's limits before anything is created and refuses with the
  numbers ("needs 16 vCPUs, 6 left in project quota").
* :meth:`request_worker` returns the record as soon as Nova returns the server id (before
  boot); a server in ERROR is reported ``failed`` with Nova's fault message.
* :meth:`delete_worker` deletes and waits until the server answers 404.
* Servers carry the tag ``spark-openstack-hub-<hub_id>`` and metadata naming the hub, user,
  server name, cluster and worker, so :meth:`list_workers` (and the reconciler) find them after
  a hub restart.
* Firewall: with ``hub_cidr`` set (and ``manage_security_group`` true, the default) a security
  group ``spark-openstack-<hub_id>`` is ensured that opens TCP 1024-65535 to the hub's network
  and to the workers of the group only (Spark's worker, block manager and executor ports); no
  other ingress.

User-data comes from :mod:`.cloudconfig` and never holds OpenStack credentials or a hub token.

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
from .base import Provisioner, WorkerRecord, WorkerSpec, WorkerStatus
from .cloudconfig import InstallConfig, render_user_data

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

_HOSTNAME_RE = re.compile(r"[^a-z0-9-]+")

CONFIG_KEYS = {
    "cloud": "name of a cloud in clouds.yaml (omit to use the OS_* environment variables)",
    "clouds_yaml": "path of a clouds.yaml file (default: openstacksdk's search path)",
    "region_name": "region to use",
    "flavors": "a mapping of size name -> flavor name or id, e.g. {small: m1.small} "
               "(for sizes that do not name their flavor themselves)",
    "image": "image name or id holding the worker OS (Java + Spark in mode 'preinstalled')",
    "networks": "list of network names or ids for the workers",
    "key_name": "keypair name for ssh access (optional)",
    "security_groups": "list of extra security group names (optional)",
    "availability_zone": "availability zone (optional)",
    "install": "{mode: preinstalled, spark_home, java_home} or {mode: download, spark_url, spark_sha512}",
    "master_host": "the hub-side address worker VMs reach the Spark master at",
    "hub_cidr": "CIDR of the hub's network, allowed to reach the workers' Spark ports",
    "manage_security_group": "create/maintain the per-hub worker security group (default true)",
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


class OpenStackProvisioner(Provisioner):
    """Spark workers as OpenStack servers (see the module docstring)."""

    name = "openstack"
    default_boot_timeout = 600.0

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
        self._sg_by_hub: dict[str, str] = {}
        self._sg_lock = asyncio.Lock()
        self._closed = False

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
                files = [c["clouds_yaml"]] if c["clouds_yaml"] else None
                try:
                    cfg = osconfig.OpenStackConfig(config_files=files) if files else osconfig.OpenStackConfig()
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

    async def _call(self, what: str, fn, *args, not_found=None, **kwargs):
        """Run ``fn`` in the pool; retry transient errors with backoff; raise ProvisionerError.
        ``not_found``: value returned on 404 instead of raising."""
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
        if spec.flavor:
            return spec.flavor
        if spec.size and spec.size in self.config["flavors"]:
            return self.config["flavors"][spec.size]
        raise ValidationError("size", spec.size, "a size with an OpenStack flavor (set 'flavor' in "
                              "the size, or openstack.flavors; sizes with one here: " +
                              (", ".join(self.config["flavors"]) or "none") + ")")

    async def _flavor(self, name: str):
        await self._resolve()
        if name not in self._flavors:
            obj = await self._call(f"looking up flavor {name!r}", self._sdk("compute", "find_flavor"),
                                   name, ignore_missing=True)
            if obj is None:
                raise ProvisionerError(f"OpenStack: flavor {name!r} does not exist in this project")
            self._flavors[name] = obj
        return self._flavors[name]

    async def _ensure_security_group(self, hub_id: str) -> str | None:
        if not self.config["manage_security_group"]:
            return None
        async with self._sg_lock:
            if hub_id in self._sg_by_hub:
                return self._sg_by_hub[hub_id]
            name = f"spark-openstack-{hub_id}"[:255]
            sg = await self._call(f"looking up security group {name!r}", self._sdk("network", "find_security_group"),
                                  name, ignore_missing=True)
            if sg is None:
                sg = await self._call(f"creating security group {name!r}", self._sdk("network", "create_security_group"),
                                      name=name, description="Spark workers of jupyter-spark-openstack: "
                                      "Spark ports open to the hub network and to each other only")
                self.log.info("OpenStack: created security group %s (%s)", name, sg.id)
            existing = await self._call("listing security group rules",
                                        lambda: list(self._connection().network.security_group_rules(security_group_id=sg.id)))
            wanted = [{"remote_ip_prefix": self.config["hub_cidr"], "remote_group_id": None},
                      {"remote_ip_prefix": None, "remote_group_id": sg.id}]
            for w in wanted:
                if any(r.direction == "ingress" and r.protocol == "tcp" and r.port_range_min == 1024
                       and r.port_range_max == 65535 and r.remote_ip_prefix == w["remote_ip_prefix"]
                       and r.remote_group_id == w["remote_group_id"] for r in existing):
                    continue
                await self._call("adding a security group rule", self._sdk("network", "create_security_group_rule"),
                                 security_group_id=sg.id, direction="ingress", ethertype="IPv4",
                                 protocol="tcp", port_range_min=1024, port_range_max=65535, **w)
            self._sg_by_hub[hub_id] = name
            return name

    # ---- the interface ---------------------------------------------------------------------
    async def check_capacity(self, specs: list[WorkerSpec]) -> None:
        if not specs:
            return
        need_cores = need_ram = 0
        for s in specs:
            f = await self._flavor(self.flavor_for(s))
            need_cores += int(f.vcpus or 0)
            need_ram += int(f.ram or 0)
        limits = await self._call("reading project limits", self._sdk("compute", "get_limits"))
        a = limits.absolute
        problems = []
        for label, unit, need, mx, used in (
                ("vCPUs", "", need_cores, a.total_cores, a.total_cores_used),
                ("RAM", " MB", need_ram, a.total_ram, a.total_ram_used),
                ("servers", "", len(specs), a.instances, a.instances_used)):
            if mx is None or int(mx) < 0:
                continue
            left = max(0, int(mx) - int(used or 0))
            if need > left:
                problems.append(f"needs {need}{unit} {label}, {left}{unit} left in project quota "
                                f"({mx}{unit} total, {used}{unit} used)")
        if problems:
            raise QuotaError("OpenStack quota: " + "; ".join(problems) +
                             ". Ask for fewer or smaller workers, or ask the cloud admin for more quota.")

    def _create_kwargs(self, spec: WorkerSpec, flavor, resolved: dict, sg: str | None,
                       nonce: str) -> dict:
        user_data = render_user_data(hostname=_hostname(spec.name), master_url=spec.master_url,
                                     cores=spec.cores, memory=spec.memory, secret=spec.secret,
                                     install=self.install)
        metadata = {MD_HUB: spec.hub_id, MD_OWNER: spec.owner, MD_SERVER: spec.server_name,
                    MD_CLUSTER: spec.cluster_id, MD_WORKER: spec.name, MD_REQUEST: nonce}
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
        if not mh or not spec.master_url.startswith("spark://"):
            return
        hosts = [hp.rpartition(":")[0] for hp in spec.master_url[len("spark://"):].split(",")]
        if mh not in hosts:
            raise ValidationError("openstack.master_host", mh,
                                  f"the host of the Spark master the workers join ({spec.master_url}); "
                                  "set the spawner's master_host to the same address")

    async def request_worker(self, spec: WorkerSpec) -> WorkerRecord:
        self._check_master_reachable(spec)
        flavor = await self._flavor(self.flavor_for(spec))
        resolved = await self._resolve()
        sg = await self._ensure_security_group(spec.hub_id)
        nonce = uuid.uuid4().hex[:16]
        # YAML rendering is pure-Python CPU work: keep it off the event loop too
        kw = await self._run(self._create_kwargs, spec, flavor, resolved, sg, nonce)
        c = self.config
        attempt = 0
        while True:
            try:
                server = await self._run(self._sdk("compute", "create_server"), **kw)
                break
            except Exception as e:  # noqa: BLE001
                transient, msg = classify(e)
                if not transient or attempt >= c["retries"]:
                    err = QuotaError if "quota exceeded" in msg.lower() else ProvisionerError
                    raise err(f"OpenStack: creating server {spec.name} failed: {msg}",
                              transient=transient) from None
                # Nova may have accepted it before the error reached us: adopt, don't duplicate.
                try:
                    found = await self._find_request(spec, nonce)
                except ProvisionerError:
                    found = None
                if found is not None:
                    self.log.info("OpenStack: server %s (%s) was created despite %s; adopted",
                                  spec.name, found.id, msg)
                    server = found
                    break
                delay = c["retry_backoff"] * (2 ** attempt) * (0.5 + random.random())
                self.log.warning("OpenStack: creating %s: transient error (%s); retry %d/%d in %.1fs",
                                 spec.name, msg, attempt + 1, c["retries"], delay)
                attempt += 1
                await asyncio.sleep(delay)
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

    async def worker_log(self, record: WorkerRecord) -> str:
        try:
            out = await self._call(f"reading the console of {record.name}",
                                   self._sdk("compute", "get_server_console_output"), record.id, length=40)
        except ProvisionerError as e:
            return f"(console output unavailable: {e})"
        return (out or {}).get("output", "") if isinstance(out, dict) else str(out or "")

    async def close(self) -> None:
        self._closed = True
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001
                pass
        self._pool.shutdown(wait=False, cancel_futures=True)
