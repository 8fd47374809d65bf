"""An OpenStack API emulator: Keystone v3, Nova v2.1 and the Glance v2 / Neutron v2.0 reads
openstacksdk needs, over real HTTP on 127.0.0.1, with fault injection and a call log. Neutron
security groups and their rules can be created, listed, read and deleted (a group a server
still uses answers 409, as Neutron does while the server's ports exist).

Usage (Python)::

    with Emulator(boot_delay=1.0) as emu:
        emu.write_clouds_yaml(path)            # cloud "emulator"
        conn = openstack.connect(cloud="emulator")   # with OS_CLIENT_CONFIG_FILE=path
        ...
        emu.add_fault(action="error", kind="servers.create", status=503, count=1)
        emu.calls(kind="servers.create")       # every API call: method, path, status, time

Usage (CLI): ``jupyter-spark-openstack emulator --port 8774 --clouds-yaml clouds.yaml``;
control endpoints under ``/_emulator/`` (``GET calls``, ``GET servers``, ``GET|POST|DELETE
faults``, ``POST quota``), see :class:`_Control`.

Like Nova it never reads user-data when a server is created: the server is BUILD for
``boot_delay`` seconds, then ACTIVE. Like a VM running cloud-init it then reads the
cloud-config (:func:`..core.provisioners.cloudconfig.read_worker_boot`): if it is valid it
starts what the systemd unit would start, a Spark worker with the env file's master URL, cores,
memory and secret, as a local process bound to 127.0.0.1 at niceness ``vm_nice`` (default 10:
the VMs stand for other machines, so they yield the CPU to the host under test). Each "VM" gets
its own free ports and the Spark of this machine, whatever the paths in the cloud-config say
(``download`` mode is checked but nothing is downloaded). If the cloud-config is not valid,
the console output shows cloud-init's error and no worker starts. Nothing from user-data is ever run as a command on this host. Deleting the
server stops its worker.

``spark_mode="none"`` (CLI ``--no-jvm``): servers start no JVM at all; the cloud-config is still
parsed and its result logged on the console. Used by the chaos test, where hundreds of servers
come and go and a JVM per server would not fit in CI.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import itertools
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import tornado.httpserver
import tornado.netutil
import tornado.web
import yaml

from ...core.provisioners.cloudconfig import CloudConfigError, read_worker_boot
from .faults import Fault, FaultSet

log = logging.getLogger("jupyter_spark_openstack.emulator")

COMPUTE_MIN = (2, 1)
COMPUTE_MAX = (2, 96)
USERNAME = "demo"
PASSWORD = "emulator-demo-password"   # test-only credential of the emulator's single user
PROJECT = "demo"
PROJECT_ID = "6f70656e737461636b2d656d756c6174"
USER_ID = "75736572000000000000000000000001"
DOMAIN_ID = "default"
SPARK_MODES = ("jvm", "none")


def _now_iso(t: float | None = None) -> str:
    dt = datetime.fromtimestamp(t if t is not None else time.time(), tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Call:
    """One API request as the emulator saw it."""

    method: str
    path: str
    query: str
    kind: str
    status: int
    time: float
    duration: float
    fault: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class VM:
    id: str
    name: str
    flavor: dict
    image_id: str
    networks: list[str]
    key_name: str | None
    security_groups: list[str]
    availability_zone: str
    metadata: dict
    tags: list[str]
    user_data: str | None
    created: float
    boot_delay: float
    status: str = "BUILD"
    task_state: str | None = "spawning"
    fault: dict | None = None
    console: list[str] = field(default_factory=list)
    worker: dict | None = None           # the local Spark worker's process record
    injected: list[str] = field(default_factory=list)
    deleting: bool = False
    boot: object = None
    security_group_ids: list[str] = field(default_factory=list)   # what Neutron's ports hold

    def console_line(self, text: str) -> None:
        t = time.time() - self.created
        self.console.append(f"[{t:10.6f}] {text}")


class EmulatorError(Exception):
    pass


def request_kind(method: str, path: str) -> str:
    """``("POST", "/compute/v2.1/servers")`` -> ``"servers.create"``; used by faults and calls."""
    p = path.rstrip("/")
    if p.startswith("/identity"):
        return "identity.auth" if p.endswith("/auth/tokens") else "identity.discovery"
    if p.startswith("/compute"):
        rest = p[len("/compute"):]
        rest = re.sub(r"^/v2(\.1)?", "", rest)
        if rest == "":
            return "compute.discovery"
        if rest.startswith("/servers"):
            if rest in ("/servers", "/servers/detail"):
                return "servers.create" if method == "POST" else "servers.list"
            if rest.endswith("/action"):
                return "servers.action"
            if method == "DELETE" and rest.count("/") == 2:
                return "servers.delete"
            return "servers.get"
        if rest.startswith("/flavors"):
            return "flavors"
        if rest.startswith("/limits"):
            return "limits"
        if rest.startswith("/os-keypairs"):
            return "keypairs"
        if rest.startswith("/os-availability-zone"):
            return "availability_zones"
        return "compute.other"
    if p.startswith("/image"):
        return "images" if "/images" in p else "image.discovery"
    if p.startswith("/network"):
        if "/security-group" in p:
            return "security_groups"
        if "/networks" in p:
            return "networks"
        return "network.other" if "/v2.0" in p else "network.discovery"
    return "other"


class _Reply(Exception):
    """Raised by handlers to answer an error the way the service would."""

    def __init__(self, status: int, body: dict | str | None = None, headers: dict | None = None):
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or {}


def _nova_error(status: int, message: str) -> _Reply:
    key = {400: "badRequest", 401: "unauthorized", 403: "forbidden", 404: "itemNotFound",
           406: "notAcceptable", 409: "conflictingRequest", 413: "overLimit",
           503: "serviceUnavailable"}.get(status, "computeFault")
    return _Reply(status, {key: {"code": status, "message": message}})


def _neutron_error(status: int, typ: str, message: str) -> _Reply:
    return _Reply(status, {"NeutronError": {"type": typ, "message": message, "detail": ""}})


class Emulator:
    """The emulated cloud. :meth:`start` serves it from a background thread; :meth:`stop`
    deletes every server (stopping their workers) and the server."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, boot_delay: float = 2.0,
                 delete_delay: float = 0.3, spark_mode: str = "jvm",
                 run_dir: str | os.PathLike | None = None, quota: dict | None = None,
                 seed: int = 1234, worker_stop_timeout: float = 15.0, vm_nice: int = 10):
        if host not in ("127.0.0.1", "localhost"):
            raise ValueError(f"host: {host!r} is not allowed; expected 127.0.0.1 or localhost")
        if spark_mode not in SPARK_MODES:
            raise ValueError(f"spark_mode: {spark_mode!r} is not allowed; expected one of {SPARK_MODES}")
        self.host = host
        self.port = int(port)
        self.boot_delay = float(boot_delay)
        self.delete_delay = float(delete_delay)
        self.spark_mode = spark_mode
        self.worker_stop_timeout = worker_stop_timeout
        # the "VMs" stand for other machines: their worker JVMs run at low CPU priority so
        # they take as little as possible from the host under test (hub, notebook servers)
        from ...core.spark.daemons import check_nice  # noqa: PLC0415

        self.vm_nice = check_nice(vm_nice, "vm_nice")
        self._own_run_dir = run_dir is None
        self.run_dir = Path(run_dir) if run_dir else Path(tempfile.mkdtemp(prefix="os-emulator-"))
        self.faults = FaultSet(seed)
        self.quota = {"cores": 64, "instances": 100, "ram": 512 * 1024, "key_pairs": 100,
                      "metadata_items": 128, "server_groups": 10, "server_group_members": 10}
        self.quota.update(quota or {})
        self._lock = threading.RLock()
        self._calls: list[Call] = []
        self._tokens: set[str] = set()
        self._vms: dict[str, VM] = {}
        self._tasks: set[asyncio.Task] = set()
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="emulator-vm")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._http: tornado.httpserver.HTTPServer | None = None
        self._stopped = threading.Event()
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._ids = itertools.count(1)
        self.flavors = [self._flavor(i, n, c, r, d) for i, (n, c, r, d) in enumerate([
            ("m1.small", 1, 2048, 20), ("m1.medium", 2, 4096, 40), ("m1.large", 4, 8192, 80),
            ("m1.xlarge", 8, 16384, 160)], start=1)]
        self.images = [
            {"id": "5b1e5a8e-8f43-4c3e-9d39-3f2b6a6c0001", "name": "spark-worker-4.0"},
            {"id": "5b1e5a8e-8f43-4c3e-9d39-3f2b6a6c0002", "name": "ubuntu-24.04"},
        ]
        self.networks = [{"id": "a3c5d1f0-6b57-4b8e-8a8c-000000000001", "name": "private",
                          "cidr": "10.0.0.0/24"}]
        self.keypairs = [{"name": "demo-key", "fingerprint": "aa:bb:cc:dd:ee:ff:00:11:22:33:44:55:66:77:88:99",
                          "public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEmulatorKeyOnlyForTests demo",
                          "type": "ssh"}]
        self.security_groups: list[dict] = [
            {"id": "0e3a1b6c-0000-4000-8000-000000000001", "name": "default",
             "description": "Default security group", "rules": []}]
        self.availability_zones = ["nova"]

    # ---- life cycle ---------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def auth_url(self) -> str:
        return f"{self.url}/identity"

    def start(self) -> Emulator:
        self._thread = threading.Thread(target=self._run, name="os-emulator", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._start_error:
            raise self._start_error
        if not self._ready.is_set():
            raise EmulatorError("emulator did not start within 30 s")
        log.info("OpenStack emulator listening on %s (boot delay %.1fs, spark mode %s)",
                 self.url, self.boot_delay, self.spark_mode)
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            app = tornado.web.Application(log_function=lambda h: None, handlers=[(r"/_emulator/(.*)", _Control, {"emu": self}),
                                           (r"(.*)", _Api, {"emu": self})])
            socks = tornado.netutil.bind_sockets(self.port, self.host, family=2, backlog=256)
            self.port = socks[0].getsockname()[1]
            self._http = tornado.httpserver.HTTPServer(app, idle_connection_timeout=60)
            self._http.add_sockets(socks)
        except BaseException as e:  # noqa: BLE001
            self._start_error = e
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            self._stopped.set()

    def stop(self) -> None:
        """Delete every server (stopping their workers), then stop serving."""
        if self._loop is None:
            return
        with self._lock:
            vms = list(self._vms.values())
            self._vms.clear()
        for vm in vms:
            vm.deleting = True
        futs = [self._pool.submit(self._stop_worker, vm) for vm in vms]
        for f in futs:
            try:
                f.result(timeout=self.worker_stop_timeout + 30)
            except Exception as e:  # noqa: BLE001
                log.warning("could not stop a worker: %s", e)

        async def shutdown():
            for t in list(self._tasks):
                t.cancel()
            if self._http:
                self._http.stop()
                await self._http.close_all_connections()
            asyncio.get_running_loop().stop()

        if self._loop.is_running():
            asyncio.run_coroutine_threadsafe(shutdown(), self._loop)
            self._stopped.wait(30)
        if self._thread:
            self._thread.join(30)
        self._pool.shutdown(wait=True)
        self._loop = None
        if self._own_run_dir:
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- configuration for clients -------------------------------------------------------
    def cloud_config(self) -> dict:
        """The ``clouds:`` entry of clouds.yaml for this emulator (cloud name ``emulator``)."""
        return {"auth": {"auth_url": self.auth_url, "username": USERNAME, "password": PASSWORD,
                         "project_name": PROJECT, "user_domain_name": "Default",
                         "project_domain_name": "Default"},
                "region_name": "RegionOne", "identity_api_version": 3, "interface": "public"}

    def write_clouds_yaml(self, path: str | os.PathLike, cloud: str = "emulator") -> str:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            yaml.safe_dump({"clouds": {cloud: self.cloud_config()}}, f, sort_keys=False)
        return str(path)

    # ---- Python API for tests ---------------------------------------------------------------
    def add_fault(self, fault: Fault | None = None, **kwargs) -> Fault:
        return self.faults.add(fault, **kwargs)

    def clear_faults(self) -> None:
        self.faults.clear()

    def calls(self, kind: str | None = None, method: str | None = None) -> list[Call]:
        with self._lock:
            return [c for c in self._calls if (kind is None or c.kind == kind)
                    and (method is None or c.method == method)]

    def clear_calls(self) -> None:
        with self._lock:
            self._calls.clear()

    def servers(self) -> list[dict]:
        """Every server that exists (deleting ones included), with its user-data and worker."""
        with self._lock:
            return [self._server_debug(vm) for vm in self._vms.values()]

    def set_quota(self, **limits: int) -> None:
        with self._lock:
            for k, v in limits.items():
                if k not in self.quota:
                    raise ValueError(f"quota: {k!r} is not allowed; expected one of {sorted(self.quota)}")
                self.quota[k] = int(v)

    def worker_processes(self) -> list[dict]:
        with self._lock:
            return [dict(vm.worker) for vm in self._vms.values() if vm.worker]

    def usage(self) -> dict:
        with self._lock:
            vms = [vm for vm in self._vms.values()]
            return {"instances": len(vms), "cores": sum(vm.flavor["vcpus"] for vm in vms),
                    "ram": sum(vm.flavor["ram"] for vm in vms)}

    def _server_debug(self, vm: VM) -> dict:
        return {"id": vm.id, "name": vm.name, "status": vm.status, "metadata": dict(vm.metadata),
                "tags": list(vm.tags), "user_data": vm.user_data, "flavor": vm.flavor["name"],
                "deleting": vm.deleting, "worker": dict(vm.worker) if vm.worker else None,
                "console": list(vm.console), "injected": list(vm.injected),
                "security_groups": list(vm.security_groups), "key_name": vm.key_name,
                "availability_zone": vm.availability_zone, "networks": list(vm.networks),
                "image_id": vm.image_id, "fault": vm.fault}

    # ---- resources ---------------------------------------------------------------------------
    @staticmethod
    def _flavor(i: int, name: str, vcpus: int, ram: int, disk: int) -> dict:
        return {"id": str(i), "name": name, "vcpus": vcpus, "ram": ram, "disk": disk,
                "OS-FLV-EXT-DATA:ephemeral": 0, "swap": 0, "rxtx_factor": 1.0,
                "os-flavor-access:is_public": True, "OS-FLV-DISABLED:disabled": False,
                "description": None, "extra_specs": {}}

    def _links(self, kind: str, ident: str) -> list[dict]:
        return [{"rel": "self", "href": f"{self.url}/compute/v2.1/{kind}/{ident}"},
                {"rel": "bookmark", "href": f"{self.url}/compute/{kind}/{ident}"}]

    def _find_flavor(self, ref: str) -> dict | None:
        ref = str(ref).rstrip("/").rsplit("/", 1)[-1]
        return next((f for f in self.flavors if f["id"] == ref), None)

    def record(self, call: Call) -> None:
        with self._lock:
            self._calls.append(call)

    # ---- VM life -----------------------------------------------------------------------------
    def _spawn_task(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _boot(self, vm: VM, faults: list[Fault]) -> None:
        loop = asyncio.get_running_loop()
        delay = vm.boot_delay
        for f in faults:
            if f.action == "slow_boot":
                delay = max(delay, f.seconds)
        await asyncio.sleep(delay)
        if vm.deleting:
            return
        err = next((f for f in faults if f.action == "boot_error"), None)
        if err:
            msg = err.message or "No valid host was found. There are not enough hosts available."
            with self._lock:
                vm.status, vm.task_state = "ERROR", None
                vm.fault = {"code": 500, "message": msg, "created": _now_iso()}
            return
        with self._lock:
            vm.status, vm.task_state = "ACTIVE", None
        vm.console_line("Linux version 6.8.0-emulated; booting")
        vm.console_line("cloud-init[612]: Cloud-init v. 24.4 running 'init' (emulated)")
        vanish = next((f for f in faults if f.action == "vanish"), None)
        if vanish:
            self._spawn_task(self._vanish(vm, vanish.seconds))
        if vm.user_data is None:
            vm.console_line("cloud-init[612]: no user-data; nothing to do")
            return
        try:
            boot = read_worker_boot(vm.user_data)
        except CloudConfigError as e:
            vm.console_line(f"cloud-init[612]: {_now_iso()} - util.py[WARNING]: {e}")
            vm.console_line("cloud-init[612]: Invalid cloud-config provided: Please run "
                            "'sudo cloud-init schema --system' to see the schema errors.")
            vm.console_line("cloud-init[612]: spark-openstack-worker.service was not started")
            return
        vm.boot = boot
        vm.console_line(f"cloud-init[612]: hostname set to {boot.hostname}; /etc/hosts updated")
        if boot.install_mode == "download":
            vm.console_line(f"cloud-init[612]: (emulated) downloaded {boot.spark_url}, "
                            "sha512 OK, unpacked to /opt/spark")
        if any(f.action == "no_worker" for f in faults):
            vm.console_line("systemd[1]: spark-openstack-worker.service: start request repeated "
                            "too quickly; Failed to start Spark worker (jupyter-spark-openstack).")
            return
        if self.spark_mode == "none":
            vm.console_line("systemd[1]: Started Spark worker (jupyter-spark-openstack). "
                            "[emulator without JVM: no process]")
            return
        host = boot.master_url[len("spark://"):].rsplit(":", 1)[0] if boot.master_url.startswith("spark://") else ""
        if host not in ("127.0.0.1", "localhost"):
            vm.console_line(f"spark-class[901]: cannot reach master {boot.master_url} "
                            "(the emulator only reaches 127.0.0.1)")
            return
        try:
            rec = await loop.run_in_executor(self._pool, self._start_worker, vm, boot)
        except Exception as e:  # noqa: BLE001
            vm.console_line(f"systemd[1]: Failed to start Spark worker: {e}")
            return
        with self._lock:
            if vm.deleting:
                stop_now = True
            else:
                vm.worker, stop_now = rec, False
        if stop_now:
            await loop.run_in_executor(self._pool, self._stop_rec, rec)
            return
        vm.console_line(f"systemd[1]: Started Spark worker (jupyter-spark-openstack), pid {rec['pid']}")

    def _start_worker(self, vm: VM, boot) -> dict:
        from ...core.spark import daemons  # noqa: PLC0415
        from ...core.spark.ports import free_ports  # noqa: PLC0415

        port, webui = free_ports(2, "127.0.0.1")
        props = {"spark.authenticate": "true"} if boot.secret else {}
        env = {"_SPARK_AUTH_SECRET": boot.secret} if boot.secret else {}
        return daemons.start_worker(self.run_dir / "vms" / vm.id, master_url=boot.master_url,
                                    host="127.0.0.1", cores=boot.cores, memory=boot.memory,
                                    webui_port=webui, port=port, name=boot.hostname,
                                    properties=props, extra_env=env, nice=self.vm_nice)

    def _stop_rec(self, rec: dict) -> None:
        from ...core.spark import daemons  # noqa: PLC0415

        daemons.stop_daemon(rec, timeout=self.worker_stop_timeout)

    def _stop_worker(self, vm: VM) -> None:
        with self._lock:
            rec, vm.worker = vm.worker, None
        if rec:
            self._stop_rec(rec)
        shutil.rmtree(self.run_dir / "vms" / vm.id, ignore_errors=True)

    async def _vanish(self, vm: VM, after: float) -> None:
        await asyncio.sleep(after)
        with self._lock:
            present = self._vms.pop(vm.id, None)
        if present:
            vm.deleting = True
            log.info("server %s vanished (injected fault)", vm.id)
            await asyncio.get_running_loop().run_in_executor(self._pool, self._stop_worker, vm)

    async def _delete(self, vm: VM) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._pool, self._stop_worker, vm)
        await asyncio.sleep(self.delete_delay)
        with self._lock:
            self._vms.pop(vm.id, None)

    # ---- Nova representation -------------------------------------------------------------------
    def server_view(self, vm: VM, mv: tuple[int, int]) -> dict:
        net_names = {n["id"]: n["name"] for n in self.networks}
        addresses = {}
        if vm.status == "ACTIVE":
            for i, nid in enumerate(vm.networks):
                addresses[net_names.get(nid, nid)] = [{
                    "version": 4, "addr": "127.0.0.1", "OS-EXT-IPS:type": "fixed",
                    "OS-EXT-IPS-MAC:mac_addr": f"fa:16:3e:{i:02x}:{int(vm.id[:2], 16):02x}:01"}]
        v = {
            "id": vm.id, "name": vm.name, "status": vm.status,
            "tenant_id": PROJECT_ID, "user_id": USER_ID, "metadata": dict(vm.metadata),
            "hostId": "" if vm.status == "BUILD" else "e1a5" + vm.id.replace("-", "")[:52],
            "image": {"id": vm.image_id, "links": [{"rel": "bookmark", "href": f"{self.url}/compute/images/{vm.image_id}"}]},
            "flavor": {"vcpus": vm.flavor["vcpus"], "ram": vm.flavor["ram"], "disk": vm.flavor["disk"],
                       "ephemeral": 0, "swap": 0, "original_name": vm.flavor["name"], "extra_specs": {}},
            "created": _now_iso(vm.created), "updated": _now_iso(),
            "addresses": addresses, "accessIPv4": "", "accessIPv6": "",
            "links": self._links("servers", vm.id),
            "OS-DCF:diskConfig": "MANUAL", "progress": 0,
            "OS-EXT-AZ:availability_zone": vm.availability_zone,
            "config_drive": "", "key_name": vm.key_name,
            "OS-SRV-USG:launched_at": None if vm.status == "BUILD" else _now_iso(vm.created + vm.boot_delay),
            "OS-SRV-USG:terminated_at": None,
            "security_groups": [{"name": s} for s in vm.security_groups],
            "OS-EXT-STS:task_state": "deleting" if vm.deleting else vm.task_state,
            "OS-EXT-STS:vm_state": {"BUILD": "building", "ACTIVE": "active", "ERROR": "error"}.get(vm.status, "active"),
            "OS-EXT-STS:power_state": 1 if vm.status == "ACTIVE" else 0,
            "os-extended-volumes:volumes_attached": [],
            "locked": False, "description": None, "tags": list(vm.tags),
            "trusted_image_certificates": None, "server_groups": [],
            "locked_reason": None, "host_status": "UP" if vm.status == "ACTIVE" else "",
        }
        if vm.fault:
            v["fault"] = dict(vm.fault)
        if mv < (2, 73):
            v.pop("locked_reason")
        if mv < (2, 47):
            v["flavor"] = {"id": vm.flavor["id"], "links": self._links("flavors", vm.flavor["id"])}
        return v


# ============================================================================================
class _Base(tornado.web.RequestHandler):
    SUPPORTED_METHODS = ("GET", "POST", "PUT", "DELETE", "HEAD", "PATCH")

    def initialize(self, emu: Emulator):
        self.emu = emu

    def check_xsrf_cookie(self):
        pass

    def json_body(self) -> dict:
        if not self.request.body:
            return {}
        try:
            body = json.loads(self.request.body)
        except ValueError:
            raise _Reply(400, {"badRequest": {"code": 400, "message": "Malformed request body"}}) from None
        if not isinstance(body, dict):
            raise _Reply(400, {"badRequest": {"code": 400, "message": "Malformed request body"}})
        return body

    def send(self, status: int, body, headers: dict | None = None) -> None:
        self.set_status(status)
        for k, v in (headers or {}).items():
            self.set_header(k, v)
        if body is None:
            self.finish()
            return
        if isinstance(body, str):
            self.set_header("Content-Type", "text/plain; charset=UTF-8")
            self.finish(body)
            return
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))


class _Control(_Base):
    """``/_emulator/calls`` (GET, DELETE), ``/_emulator/servers`` (GET),
    ``/_emulator/faults`` (GET, POST one fault as JSON, DELETE all), ``/_emulator/quota``
    (GET, POST ``{"cores": 8, ...}``), ``/_emulator/health`` (GET)."""

    async def get(self, what):
        if what == "calls":
            since = int(self.get_argument("since", "0"))
            self.send(200, {"calls": [c.to_dict() for c in self.emu.calls()[since:]]})
        elif what == "servers":
            self.send(200, {"servers": self.emu.servers()})
        elif what == "faults":
            self.send(200, {"faults": self.emu.faults.list()})
        elif what == "quota":
            self.send(200, {"quota": dict(self.emu.quota), "usage": self.emu.usage()})
        elif what == "health":
            self.send(200, {"ok": True, "spark_mode": self.emu.spark_mode,
                            "boot_delay": self.emu.boot_delay})
        else:
            self.send(404, {"error": f"no such emulator endpoint: {what}"})

    async def post(self, what):
        try:
            body = json.loads(self.request.body or b"{}")
            if not isinstance(body, dict):
                raise ValueError("body: expected a JSON object")
            if what == "faults":
                f = self.emu.add_fault(**body)
                self.send(201, {"fault": f.to_dict()})
            elif what == "quota":
                self.emu.set_quota(**body)
                self.send(200, {"quota": dict(self.emu.quota)})
            else:
                self.send(404, {"error": f"no such emulator endpoint: {what}"})
        except (TypeError, ValueError) as e:
            self.send(400, {"error": str(e)})

    async def delete(self, what):
        if what == "faults":
            self.emu.clear_faults()
        elif what == "calls":
            self.emu.clear_calls()
        else:
            self.send(404, {"error": f"no such emulator endpoint: {what}"})
            return
        self.send(204, None)


class _Api(_Base):
    async def get(self, path):
        await self._dispatch(path)

    post = put = delete = head = patch = get

    # ---- dispatch ---------------------------------------------------------------------------
    async def _dispatch(self, path: str) -> None:
        emu = self.emu
        t0 = time.time()
        method = self.request.method
        kind = request_kind(method, path)
        fault_name = None
        status = 500
        recorded = False

        def record():
            nonlocal recorded
            if not recorded:
                recorded = True
                emu.record(Call(method=method, path=path, query=self.request.query, kind=kind,
                                status=status, time=t0, duration=time.time() - t0, fault=fault_name))

        try:
            try:
                errs = emu.faults.take(kind, ("error",))
                if errs:
                    f = errs[0]
                    fault_name = f"error:{f.status}"
                    msg = f.message or ("The server has either erred or is incapable of performing "
                                        "the requested operation.")
                    raise _nova_error(f.status, msg)
                status, body, headers = await self._route(method, path, kind)
            except _Reply as r:
                status, body, headers = r.status, r.body, r.headers
            delays = emu.faults.take(kind, ("delay",))
            if delays:
                fault_name = f"delay:{delays[0].seconds}"
                await asyncio.sleep(max(d.seconds for d in delays))
            if self.request.connection.stream.closed():
                status = 499  # the client gave up (timeout); nginx's code for it
                return
            headers = dict(headers or {})
            if path.startswith("/compute") and kind != "compute.discovery":
                mv = getattr(self, "_mv", (2, 1))
                headers.update({"OpenStack-API-Version": f"compute {mv[0]}.{mv[1]}",
                                "X-OpenStack-Nova-API-Version": f"{mv[0]}.{mv[1]}",
                                "Vary": "OpenStack-API-Version, X-OpenStack-Nova-API-Version"})
            headers.setdefault("X-Openstack-Request-Id", f"req-{uuid.uuid4()}")
            record()  # before answering: a client that got its answer finds its call logged
            self.send(status, body, headers)
        finally:
            record()

    def _auth(self) -> None:
        token = self.request.headers.get("X-Auth-Token")
        with self.emu._lock:
            ok = token in self.emu._tokens
        if not ok:
            raise _Reply(401, {"error": {"code": 401, "title": "Unauthorized",
                                         "message": "The request you have made requires authentication."}},
                         {"WWW-Authenticate": f'Keystone uri="{self.emu.auth_url}"'})

    def _microversion(self) -> tuple[int, int]:
        h = self.request.headers
        want = None
        for v in h.get_list("OpenStack-API-Version"):
            for part in v.split(","):
                svc, _, ver = part.strip().partition(" ")
                if svc.lower() == "compute":
                    want = ver.strip()
        if want is None:
            want = h.get("X-OpenStack-Nova-API-Version")
        if want is None:
            return COMPUTE_MIN
        if want == "latest":
            return COMPUTE_MAX
        m = re.fullmatch(r"(\d+)\.(\d+)", want)
        mv = (int(m.group(1)), int(m.group(2))) if m else None
        if mv is None or not COMPUTE_MIN <= mv <= COMPUTE_MAX:
            raise _nova_error(406, f"Version {want} is not supported by the API. Minimum is "
                                   f"{COMPUTE_MIN[0]}.{COMPUTE_MIN[1]} and maximum is "
                                   f"{COMPUTE_MAX[0]}.{COMPUTE_MAX[1]}.")
        return mv

    async def _route(self, method: str, path: str, kind: str):
        p = path.rstrip("/") or "/"
        if p == "/":
            return 300, {"versions": {"values": [self._identity_version()]}}, None
        if p.startswith("/identity"):
            return await self._identity(method, p[len("/identity"):])
        if p.startswith("/compute"):
            return await self._compute(method, re.sub(r"^/compute", "", p))
        if p.startswith("/image"):
            return self._image(method, p[len("/image"):])
        if p.startswith("/network"):
            return self._network(method, p[len("/network"):])
        raise _Reply(404, {"error": {"code": 404, "message": f"no service at {path}"}})

    # ---- Keystone ---------------------------------------------------------------------------
    def _identity_version(self) -> dict:
        return {"id": "v3.14", "status": "stable", "updated": "2020-04-07T00:00:00Z",
                "links": [{"rel": "self", "href": f"{self.emu.url}/identity/v3/"}],
                "media-types": [{"base": "application/json",
                                 "type": "application/vnd.openstack.identity-v3+json"}]}

    async def _identity(self, method: str, rest: str):
        if rest == "" and method == "GET":
            return 300, {"versions": {"values": [self._identity_version()]}}, None
        if rest == "/v3" and method == "GET":
            return 200, {"version": self._identity_version()}, None
        if rest == "/v3/auth/tokens" and method == "POST":
            return self._issue_token(self.json_body())
        if rest == "/v3/auth/tokens" and method in ("GET", "HEAD"):
            self._auth()
            return 200, {"token": self._token_body()}, {"X-Subject-Token": self.request.headers.get("X-Subject-Token", "")}
        if rest == "/v3/auth/tokens" and method == "DELETE":
            return 204, None, None
        raise _Reply(404, {"error": {"code": 404, "title": "Not Found",
                                     "message": f"The resource could not be found: {rest}"}})

    def _token_body(self) -> dict:
        u = self.emu.url
        endpoints = {"identity": ("keystone", f"{u}/identity"),
                     "compute": ("nova", f"{u}/compute/v2.1"),
                     "image": ("glance", f"{u}/image"),
                     "network": ("neutron", f"{u}/network")}
        catalog = []
        for i, (typ, (name, url)) in enumerate(endpoints.items()):
            catalog.append({"type": typ, "name": name, "id": f"{i:032x}",
                            "endpoints": [{"id": f"{i:031x}{j}", "interface": iface,
                                           "region": "RegionOne", "region_id": "RegionOne",
                                           "url": url}
                                          for j, iface in enumerate(("public", "internal", "admin"))]})
        now = time.time()
        return {
            "methods": ["password"],
            "user": {"id": USER_ID, "name": USERNAME, "domain": {"id": DOMAIN_ID, "name": "Default"},
                     "password_expires_at": None},
            "project": {"id": PROJECT_ID, "name": PROJECT, "domain": {"id": DOMAIN_ID, "name": "Default"}},
            "roles": [{"id": "00000000000000000000000000000aaa", "name": "member"},
                      {"id": "00000000000000000000000000000bbb", "name": "reader"}],
            "is_domain": False,
            "catalog": catalog,
            "issued_at": datetime.fromtimestamp(now, tz=UTC).isoformat().replace("+00:00", "000Z"),
            "expires_at": (datetime.fromtimestamp(now, tz=UTC) + timedelta(hours=12)).isoformat().replace("+00:00", "000Z"),
            "audit_ids": [uuid.uuid4().hex[:22]],
        }

    def _issue_token(self, body: dict):
        try:
            ident = body["auth"]["identity"]
            user = ident["password"]["user"]
            name, password = user.get("name") or user.get("id"), user["password"]
        except (KeyError, TypeError):
            raise _Reply(400, {"error": {"code": 400, "title": "Bad Request",
                                         "message": "Expecting to find identity password user in auth."}}) from None
        if name not in (USERNAME, USER_ID) or password != PASSWORD:
            raise _Reply(401, {"error": {"code": 401, "title": "Unauthorized",
                                         "message": "The request you have made requires authentication."}})
        token = "gAAAAA" + uuid.uuid4().hex + uuid.uuid4().hex
        with self.emu._lock:
            self.emu._tokens.add(token)
        return 201, {"token": self._token_body()}, {"X-Subject-Token": token}

    # ---- Nova ------------------------------------------------------------------------------
    def _compute_version(self) -> dict:
        return {"id": "v2.1", "status": "CURRENT",
                "version": f"{COMPUTE_MAX[0]}.{COMPUTE_MAX[1]}",
                "min_version": f"{COMPUTE_MIN[0]}.{COMPUTE_MIN[1]}",
                "updated": "2013-07-23T11:33:21Z",
                "links": [{"rel": "self", "href": f"{self.emu.url}/compute/v2.1/"}],
                "media-types": [{"base": "application/json",
                                 "type": "application/vnd.openstack.compute+json;version=2.1"}]}

    async def _compute(self, method: str, rest: str):
        emu = self.emu
        if rest == "" and method == "GET":
            return 200, {"versions": [self._compute_version()]}, None
        if rest in ("/v2.1",) and method == "GET":
            return 200, {"version": self._compute_version()}, None
        if not rest.startswith("/v2.1/"):
            raise _nova_error(404, "Not found")
        self._auth()
        self._mv = mv = self._microversion()
        r = rest[len("/v2.1"):]
        q = {k: v[-1] for k, v in parse_qs(urlsplit(self.request.uri).query).items()}
        if r == "/servers" and method == "POST":
            return await self._create_server(mv)
        if r in ("/servers", "/servers/detail") and method == "GET":
            return 200, self._list_servers(q, mv, detail=r.endswith("detail")), None
        m = re.fullmatch(r"/servers/([^/]+)(/.*)?", r)
        if m:
            sid, sub = m.group(1), m.group(2) or ""
            with emu._lock:
                vm = emu._vms.get(sid)
            if vm is None:
                raise _nova_error(404, f"Instance {sid} could not be found.")
            if sub == "" and method == "GET":
                return 200, {"server": emu.server_view(vm, mv)}, None
            if sub == "" and method == "DELETE":
                with emu._lock:
                    first = not vm.deleting
                    vm.deleting = True
                if first:
                    emu._spawn_task(emu._delete(vm))
                return 204, None, None
            if sub == "/action" and method == "POST":
                return self._server_action(vm, self.json_body())
            if sub == "/metadata" and method == "GET":
                return 200, {"metadata": dict(vm.metadata)}, None
            if sub == "/tags" and method == "GET":
                return 200, {"tags": list(vm.tags)}, None
            if sub == "/os-interface" and method == "GET":
                return 200, {"interfaceAttachments": []}, None
            raise _nova_error(404, "Not found")
        if r in ("/flavors", "/flavors/detail") and method == "GET":
            fl = emu.flavors
            if "name" in q:
                fl = [f for f in fl if f["name"] == q["name"]]
            if r == "/flavors":
                return 200, {"flavors": [{"id": f["id"], "name": f["name"], "description": None,
                                          "links": emu._links("flavors", f["id"])} for f in fl]}, None
            return 200, {"flavors": [dict(f, links=emu._links("flavors", f["id"])) for f in fl]}, None
        m = re.fullmatch(r"/flavors/([^/]+)(/os-extra_specs)?", r)
        if m and method == "GET":
            f = emu._find_flavor(m.group(1))
            if f is None:
                raise _nova_error(404, f"Flavor {m.group(1)} could not be found.")
            if m.group(2):
                return 200, {"extra_specs": {}}, None
            return 200, {"flavor": dict(f, links=emu._links("flavors", f["id"]))}, None
        if r == "/limits" and method == "GET":
            return 200, self._limits(), None
        if r == "/os-keypairs" and method == "GET":
            return 200, {"keypairs": [{"keypair": dict(k)} for k in emu.keypairs]}, None
        m = re.fullmatch(r"/os-keypairs/([^/]+)", r)
        if m and method == "GET":
            k = next((k for k in emu.keypairs if k["name"] == m.group(1)), None)
            if k is None:
                raise _nova_error(404, f"Keypair {m.group(1)} not found for user {USER_ID}")
            return 200, {"keypair": dict(k, user_id=USER_ID, id=1, deleted=False,
                                         created_at="2026-01-01T00:00:00.000000",
                                         updated_at=None, deleted_at=None)}, None
        if r in ("/os-availability-zone", "/os-availability-zone/detail") and method == "GET":
            return 200, {"availabilityZoneInfo": [{"zoneName": z, "zoneState": {"available": True},
                                                   "hosts": None} for z in emu.availability_zones]}, None
        raise _nova_error(404, "Not found")

    def _limits(self) -> dict:
        emu = self.emu
        use = emu.usage()
        qt = emu.quota
        return {"limits": {"rate": [], "absolute": {
            "maxTotalCores": qt["cores"], "totalCoresUsed": use["cores"],
            "maxTotalInstances": qt["instances"], "totalInstancesUsed": use["instances"],
            "maxTotalRAMSize": qt["ram"], "totalRAMUsed": use["ram"],
            "maxTotalKeypairs": qt["key_pairs"], "maxServerMeta": qt["metadata_items"],
            "maxServerGroups": qt["server_groups"], "maxServerGroupMembers": qt["server_group_members"],
            "totalServerGroupsUsed": 0}}}

    def _list_servers(self, q: dict, mv, *, detail: bool) -> dict:
        emu = self.emu
        with emu._lock:
            vms = list(emu._vms.values())
        if "name" in q:
            try:
                rx = re.compile(q["name"])
            except re.error:
                raise _nova_error(400, f"Invalid regex in name filter: {q['name']}") from None
            vms = [v for v in vms if rx.search(v.name)]
        if "status" in q:
            vms = [v for v in vms if v.status == q["status"].upper()]
        if "tags" in q:
            want = set(q["tags"].split(","))
            vms = [v for v in vms if want <= set(v.tags)]
        if "tags-any" in q:
            want = set(q["tags-any"].split(","))
            vms = [v for v in vms if want & set(v.tags)]
        if "not-tags" in q:
            want = set(q["not-tags"].split(","))
            vms = [v for v in vms if not want <= set(v.tags)]
        if "uuid" in q:
            vms = [v for v in vms if v.id == q["uuid"]]
        vms.sort(key=lambda v: (-v.created, v.id))
        if "marker" in q:
            ids = [v.id for v in vms]
            if q["marker"] not in ids:
                raise _nova_error(400, f"marker [{q['marker']}] not found")
            vms = vms[ids.index(q["marker"]) + 1:]
        limit = int(q.get("limit", "1000"))
        page = vms[:limit]
        out: dict = {"servers": [emu.server_view(v, mv) if detail else
                                 {"id": v.id, "name": v.name, "links": emu._links("servers", v.id)}
                                 for v in page]}
        if len(vms) > limit:
            out["servers_links"] = [{"rel": "next", "href": f"{emu.url}/compute/v2.1/servers"
                                     f"{'/detail' if detail else ''}?limit={limit}&marker={page[-1].id}"}]
        return out

    def _server_action(self, vm: VM, body: dict):
        if "os-getConsoleOutput" in body:
            length = (body["os-getConsoleOutput"] or {}).get("length")
            lines = list(vm.console)
            if length not in (None, -1, "-1"):
                try:
                    n = int(length)
                except (TypeError, ValueError):
                    raise _nova_error(400, "Invalid input for field/attribute length.") from None
                lines = lines[-n:] if n > 0 else []
            return 200, {"output": "\n".join(lines) + ("\n" if lines else "")}, None
        if any(k in body for k in ("reboot", "os-stop", "os-start")):
            return 202, None, None
        raise _nova_error(400, f"There is no such action: {next(iter(body), '')}")

    async def _create_server(self, mv):
        emu = self.emu
        body = self.json_body()
        s = body.get("server")
        if not isinstance(s, dict):
            raise _nova_error(400, "Invalid input for field/attribute server.")
        unknown_min = {"tags": (2, 52), "trusted_image_certificates": (2, 63),
                       "host": (2, 74), "hypervisor_hostname": (2, 74), "hostname": (2, 90)}
        for k, v in unknown_min.items():
            if k in s and mv < v:
                raise _nova_error(400, f"Invalid input for field/attribute server. Value: {s}. "
                                       f"Additional properties are not allowed ('{k}' was unexpected)")
        name = s.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 255:
            raise _nova_error(400, "Invalid input for field/attribute name.")
        flavor = emu._find_flavor(str(s.get("flavorRef", "")))
        if flavor is None:
            raise _nova_error(400, f"Flavor {s.get('flavorRef')} could not be found.")
        image_ref = str(s.get("imageRef", "")).rstrip("/").rsplit("/", 1)[-1]
        if not any(i["id"] == image_ref for i in emu.images):
            raise _nova_error(400, "Can not find requested image")
        nets = s.get("networks", "auto")
        net_ids: list[str] = []
        if isinstance(nets, list):
            for n in nets:
                nid = (n or {}).get("uuid") if isinstance(n, dict) else None
                if not any(x["id"] == nid for x in emu.networks):
                    raise _nova_error(400, f"Network {nid} could not be found.")
                net_ids.append(nid)
        elif nets == "auto":
            net_ids = [emu.networks[0]["id"]]
        key = s.get("key_name")
        if key is not None and not any(k["name"] == key for k in emu.keypairs):
            raise _nova_error(400, "Invalid key_name provided.")
        az = s.get("availability_zone") or "nova"
        if az not in emu.availability_zones:
            raise _nova_error(400, "The requested availability zone is not available")
        sgs, sg_ids = [], []
        for g in s.get("security_groups") or [{"name": "default"}]:
            gname = g.get("name") if isinstance(g, dict) else None
            with emu._lock:   # like Nova: an id, else a name that must be unique
                match = [x for x in emu.security_groups if x["id"] == gname] or \
                    [x for x in emu.security_groups if x["name"] == gname]
            if not match:
                raise _nova_error(400, f"Security group {gname} not found for project {PROJECT_ID}.")
            if len(match) > 1:
                raise _nova_error(409, f"Multiple security groups found matching '{gname}'. "
                                       "Use an ID to be more specific.")
            sgs.append(match[0]["name"])
            sg_ids.append(match[0]["id"])
        md = s.get("metadata") or {}
        if not isinstance(md, dict) or any(not isinstance(k, str) or not isinstance(v, str)
                                           or len(k) > 255 or len(v) > 255 for k, v in md.items()):
            raise _nova_error(400, "Invalid input for field/attribute metadata.")
        if len(md) > emu.quota["metadata_items"]:
            raise _nova_error(403, "Quota exceeded for metadata_items")
        tags = s.get("tags") or []
        if not isinstance(tags, list) or len(tags) > 50 or any(
                not isinstance(t, str) or not t or len(t) > 60 or "/" in t or "," in t for t in tags):
            raise _nova_error(400, f"Invalid input for field/attribute tags. Value: {tags}.")
        user_data = s.get("user_data")
        if user_data is not None:
            try:
                raw = base64.b64decode(user_data, validate=True)
            except (binascii.Error, ValueError):
                raise _nova_error(400, "User data needs to be valid base 64.") from None
            if len(user_data) > 65535:
                raise _nova_error(400, "User data too large. User data must be no larger than 65535 bytes once base64 encoded.")
            try:
                user_data = raw.decode("utf-8")
            except UnicodeDecodeError:
                user_data = raw.decode("latin-1")
        faults = emu.faults.take("servers.create", ("quota", "boot_error", "slow_boot", "no_worker", "vanish"))
        with emu._lock:
            use = emu.usage()
            over = []
            if any(f.action == "quota" for f in faults):
                over.append(("cores", flavor["vcpus"], emu.quota["cores"], emu.quota["cores"]))
            else:
                for res, need, used in (("cores", flavor["vcpus"], use["cores"]),
                                        ("ram", flavor["ram"], use["ram"]),
                                        ("instances", 1, use["instances"])):
                    lim = emu.quota[res]
                    if lim >= 0 and used + need > lim:
                        over.append((res, need, used, lim))
            if over:
                res = ", ".join(o[0] for o in over)
                req = ", ".join(str(o[1]) for o in over)
                used = ", ".join(str(o[2]) for o in over)
                lim = ", ".join(str(o[3]) for o in over)
                raise _nova_error(403, f"Quota exceeded for {res}: Requested {req}, but already "
                                       f"used {used} of {lim} {res}")
            vm = VM(id=str(uuid.uuid4()), name=name, flavor=flavor, image_id=image_ref,
                    networks=net_ids, key_name=key, security_groups=sgs, availability_zone=az,
                    metadata=dict(md), tags=list(tags), user_data=user_data, created=time.time(),
                    boot_delay=emu.boot_delay, injected=[f.action for f in faults],
                    security_group_ids=sg_ids)
            emu._vms[vm.id] = vm
        emu._spawn_task(emu._boot(vm, faults))
        return 202, {"server": {"id": vm.id, "links": emu._links("servers", vm.id),
                                "OS-DCF:diskConfig": "MANUAL",
                                "security_groups": [{"name": g} for g in sgs],
                                "adminPass": uuid.uuid4().hex[:12]}}, \
            {"Location": f"{emu.url}/compute/v2.1/servers/{vm.id}"}

    # ---- Glance ----------------------------------------------------------------------------
    def _image_view(self, i: dict) -> dict:
        return {"id": i["id"], "name": i["name"], "status": "active", "visibility": "public",
                "container_format": "bare", "disk_format": "qcow2", "min_disk": 0, "min_ram": 0,
                "size": 1073741824, "virtual_size": None, "checksum": "0" * 32,
                "os_hash_algo": "sha512", "os_hash_value": "0" * 128, "protected": False,
                "os_hidden": False, "owner": PROJECT_ID, "tags": [],
                "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
                "self": f"/v2/images/{i['id']}", "file": f"/v2/images/{i['id']}/file",
                "schema": "/v2/schemas/image"}

    def _image(self, method: str, rest: str):
        emu = self.emu
        if rest == "" and method == "GET":
            return 300, {"versions": [
                {"id": "v2.16", "status": "CURRENT", "links": [{"rel": "self", "href": f"{emu.url}/image/v2/"}]},
                {"id": "v2.0", "status": "SUPPORTED", "links": [{"rel": "self", "href": f"{emu.url}/image/v2/"}]}]}, None
        self._auth()
        q = {k: v[-1] for k, v in parse_qs(urlsplit(self.request.uri).query).items()}
        if rest == "/v2/images" and method == "GET":
            imgs = emu.images
            if "name" in q:
                imgs = [i for i in imgs if i["name"] == q["name"]]
            if "id" in q:
                imgs = [i for i in imgs if i["id"] == q["id"]]
            return 200, {"images": [self._image_view(i) for i in imgs],
                         "first": "/v2/images", "schema": "/v2/schemas/images"}, None
        m = re.fullmatch(r"/v2/images/([^/]+)", rest)
        if m and method == "GET":
            i = next((i for i in emu.images if i["id"] == m.group(1)), None)
            if i is None:
                raise _Reply(404, f"404 Not Found\n\nNo image found with ID {m.group(1)}\n\n")
            return 200, self._image_view(i), None
        raise _Reply(404, "404 Not Found\n\nThe resource could not be found.\n\n")

    # ---- Neutron ---------------------------------------------------------------------------
    def _net_view(self, n: dict) -> dict:
        return {"id": n["id"], "name": n["name"], "status": "ACTIVE", "admin_state_up": True,
                "subnets": [], "shared": False, "tenant_id": PROJECT_ID, "project_id": PROJECT_ID,
                "router:external": False, "mtu": 1450, "port_security_enabled": True,
                "tags": [], "description": "", "availability_zones": ["nova"],
                "ipv4_address_scope": None, "ipv6_address_scope": None, "is_default": False,
                "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
                "revision_number": 1}

    def _sg_view(self, g: dict) -> dict:
        created = g.get("created_at", "2026-01-01T00:00:00Z")
        return {"id": g["id"], "name": g["name"], "description": g.get("description", ""),
                "tenant_id": PROJECT_ID, "project_id": PROJECT_ID, "stateful": True,
                "security_group_rules": [dict(r) for r in g["rules"]], "tags": [],
                "created_at": created, "updated_at": created, "revision_number": 1}

    def _sg_rule_body(self, b: dict) -> dict:
        """A rule as Neutron would store it, or Neutron's 400/404 (remote group, CIDR, ports)."""
        import ipaddress  # noqa: PLC0415

        emu = self.emu
        keys = ("direction", "ethertype", "protocol", "port_range_min", "port_range_max",
                "remote_ip_prefix", "remote_group_id")
        r = {k: b.get(k) for k in keys}
        r["ethertype"] = r["ethertype"] or "IPv4"
        if r["direction"] not in ("ingress", "egress"):
            raise _neutron_error(400, "HTTPBadRequest", f"Invalid input for direction. Reason: "
                                 f"{r['direction']!r} is not in ['ingress', 'egress'].")
        if r["ethertype"] not in ("IPv4", "IPv6"):
            raise _neutron_error(400, "HTTPBadRequest", f"Invalid input for ethertype. Reason: "
                                 f"{r['ethertype']!r} is not in ['IPv4', 'IPv6'].")
        if r["remote_ip_prefix"] is not None and r["remote_group_id"] is not None:
            raise _neutron_error(400, "SecurityGroupRemoteGroupAndRemoteIpPrefix",
                                 "Only remote_ip_prefix or remote_group_id may be provided.")
        if r["remote_ip_prefix"] is not None:
            try:
                net = ipaddress.ip_network(str(r["remote_ip_prefix"]), strict=False)
            except ValueError:
                raise _neutron_error(400, "HTTPBadRequest", "Invalid input for remote_ip_prefix. "
                                     f"Reason: '{r['remote_ip_prefix']}' is not a valid IP subnet.") from None
            if f"IPv{net.version}" != r["ethertype"]:
                raise _neutron_error(400, "SecurityGroupRuleParameterConflict",
                                     f"Conflicting value ethertype {r['ethertype']} for CIDR {net}")
            r["remote_ip_prefix"] = str(net)
        if r["remote_group_id"] is not None and not any(
                g["id"] == r["remote_group_id"] for g in emu.security_groups):
            raise _neutron_error(404, "SecurityGroupNotFound",
                                 f"Security group {r['remote_group_id']} does not exist")
        lo, hi = r["port_range_min"], r["port_range_max"]
        if any(p is not None and (isinstance(p, bool) or not isinstance(p, int)) for p in (lo, hi)):
            raise _neutron_error(400, "HTTPBadRequest", "Invalid input for port_range_min/max: "
                                 "expected integers.")
        if lo is not None and hi is not None and not 0 <= lo <= hi <= 65535:
            raise _neutron_error(400, "SecurityGroupInvalidPortRange",
                                 "For TCP/UDP protocols, port_range_min must be <= port_range_max")
        return r

    def _network(self, method: str, rest: str):
        emu = self.emu
        if rest == "" and method == "GET":
            return 200, {"versions": [{"id": "v2.0", "status": "CURRENT",
                                       "links": [{"rel": "self", "href": f"{emu.url}/network/v2.0/"}]}]}, None
        if rest == "/v2.0" and method == "GET":
            return 200, {"resources": [{"name": "network", "collection": "networks", "links": []},
                                       {"name": "security_group", "collection": "security_groups",
                                        "links": []}]}, None
        self._auth()
        qs = parse_qs(urlsplit(self.request.uri).query)
        q = {k: v[-1] for k, v in qs.items()}
        if rest == "/v2.0/networks" and method == "GET":
            nets = emu.networks
            if "name" in q:
                nets = [n for n in nets if n["name"] == q["name"]]
            if "id" in q:
                nets = [n for n in nets if n["id"] == q["id"]]
            return 200, {"networks": [self._net_view(n) for n in nets]}, None
        m = re.fullmatch(r"/v2.0/networks/([^/]+)", rest)
        if m and method == "GET":
            n = next((n for n in emu.networks if n["id"] == m.group(1)), None)
            if n is None:
                raise _neutron_error(404, "NetworkNotFound", f"Network {m.group(1)} could not be found.")
            return 200, {"network": self._net_view(n)}, None
        if rest == "/v2.0/security-groups" and method == "GET":
            with emu._lock:
                gs = list(emu.security_groups)
            if "name" in q:
                gs = [g for g in gs if g["name"] == q["name"]]
            if "id" in q:
                gs = [g for g in gs if g["id"] == q["id"]]
            return 200, {"security_groups": [self._sg_view(g) for g in gs]}, None
        if rest == "/v2.0/security-groups" and method == "POST":
            b = self.json_body().get("security_group") or {}
            if not isinstance(b.get("name"), str) or not b["name"]:
                raise _neutron_error(400, "HTTPBadRequest", "Invalid input for name.")
            g = {"id": str(uuid.uuid4()), "name": b["name"], "description": b.get("description") or "",
                 "rules": [], "created_at": _now_iso()}
            for eth in ("IPv4", "IPv6"):
                g["rules"].append({"id": str(uuid.uuid4()), "security_group_id": g["id"],
                                   "direction": "egress", "ethertype": eth, "protocol": None,
                                   "port_range_min": None, "port_range_max": None,
                                   "remote_ip_prefix": None, "remote_group_id": None,
                                   "tenant_id": PROJECT_ID, "project_id": PROJECT_ID,
                                   "description": ""})
            with emu._lock:
                emu.security_groups.append(g)
            return 201, {"security_group": self._sg_view(g)}, None
        m = re.fullmatch(r"/v2.0/security-groups/([^/]+)", rest)
        if m and method in ("GET", "DELETE"):
            with emu._lock:
                g = next((g for g in emu.security_groups if g["id"] == m.group(1)), None)
                if g is None:
                    raise _neutron_error(404, "SecurityGroupNotFound",
                                         f"Security group {m.group(1)} does not exist")
                if method == "GET":
                    return 200, {"security_group": self._sg_view(g)}, None
                if g["name"] == "default":
                    raise _neutron_error(409, "SecurityGroupCannotRemoveDefault",
                                         "Insufficient rights for removing default security group.")
                # a server's ports hold it until the server is gone (deleting ones too)
                if any(g["id"] in vm.security_group_ids for vm in emu._vms.values()):
                    raise _neutron_error(409, "SecurityGroupInUse",
                                         f"Security Group {g['id']} in use.")
                emu.security_groups.remove(g)
                for other in emu.security_groups:   # rules naming it as remote group go too
                    other["rules"] = [r for r in other["rules"] if r.get("remote_group_id") != g["id"]]
            return 204, None, None
        if rest == "/v2.0/security-group-rules" and method == "GET":
            rules = [r for g in emu.security_groups for r in g["rules"]]
            if "security_group_id" in q:
                rules = [r for r in rules if r["security_group_id"] == q["security_group_id"]]
            return 200, {"security_group_rules": rules}, None
        if rest == "/v2.0/security-group-rules" and method == "POST":
            b = self.json_body().get("security_group_rule") or {}
            g = next((g for g in emu.security_groups if g["id"] == b.get("security_group_id")), None)
            if g is None:
                raise _neutron_error(404, "SecurityGroupNotFound",
                                     f"Security group {b.get('security_group_id')} does not exist")
            keys = ("direction", "ethertype", "protocol", "port_range_min", "port_range_max",
                    "remote_ip_prefix", "remote_group_id")
            r = self._sg_rule_body(b)
            with emu._lock:
                for old in g["rules"]:
                    if all(old.get(k) == r[k] for k in keys):
                        raise _neutron_error(409, "SecurityGroupRuleExists",
                                             f"Security group rule already exists. Rule id is {old['id']}.")
                r.update({"id": str(uuid.uuid4()), "security_group_id": g["id"],
                          "tenant_id": PROJECT_ID, "project_id": PROJECT_ID,
                          "description": b.get("description") or ""})
                g["rules"].append(r)
            return 201, {"security_group_rule": dict(r)}, None
        m = re.fullmatch(r"/v2.0/security-group-rules/([^/]+)", rest)
        if m and method in ("GET", "DELETE"):
            with emu._lock:
                g, r = next(((g, r) for g in emu.security_groups for r in g["rules"]
                             if r["id"] == m.group(1)), (None, None))
                if r is None:
                    raise _neutron_error(404, "SecurityGroupRuleNotFound",
                                         f"Security group rule {m.group(1)} does not exist")
                if method == "DELETE":
                    g["rules"].remove(r)
                    return 204, None, None
            return 200, {"security_group_rule": dict(r)}, None
        raise _neutron_error(404, "HTTPNotFound", "The resource could not be found.")
