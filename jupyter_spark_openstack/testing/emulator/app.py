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
faults``, ``POST quota``), see :mod:`.control`.

Like Nova it never reads user-data when a server is created: the server is BUILD for
``boot_delay`` seconds, then ACTIVE, and its boot backend (:mod:`.boot`) runs it. Two backends:

* ``boot_backend="process"`` (default; the fast tests): like a VM running cloud-init it reads
  the cloud-config (:func:`..core.provisioners.cloudconfig.read_worker_boot`); if it is valid it
  starts what the systemd unit would start, a Spark worker with the env file's master URL,
  cores, memory and secret, as a local process bound to 127.0.0.1 at niceness ``vm_nice``
  (default 10: the VMs stand for other machines, so they yield the CPU to the host under
  test), with the Spark of this machine whatever the cloud-config's paths say (``download``
  mode is checked but nothing is downloaded). If the cloud-config is not valid, the console
  shows cloud-init's error and no worker starts. Nothing from user-data is run as a command.
  ``spark_mode="none"`` (CLI ``--no-jvm``): no JVM at all; the cloud-config is still parsed
  and its result logged on the console (the chaos test: hundreds of servers come and go);
* ``boot_backend="container"`` (root, Linux, the image of :mod:`..machines.image`): each server
  is a real machine, a system container with its own systemd and the real cloud-init running
  its user-data from a NoCloud seed, on a tenant network the emulator creates
  (:class:`..machines.container.TenantNetwork`; :attr:`Emulator.hub_address` is the host's
  address there, where a per-user master binds); the console is the machine's. The servers'
  security groups are enforced there with nftables (:mod:`.firewall`;
  ``enforce_security_groups=False`` turns that off).

Deleting a server stops its worker (or powers its machine off and removes it).

Layout: :class:`Emulator` (this module) is the composition of the cloud model
(:mod:`.model`), the routes of each service declared as data (:mod:`.identity`,
:mod:`.compute`, :mod:`.image`, :mod:`.network`, served by :mod:`.routing`), the control API
(:mod:`.control`), fault injection (:mod:`.faults`) and a boot backend (:mod:`.boot`:
:class:`.boot.ProcessBoot` or :class:`.boot.ContainerBoot`). It owns a server's cloud life (BUILD, boot delay, boot faults,
ACTIVE or ERROR, delete) and hands the machine to the backend.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import tornado.httpserver
import tornado.netutil
import tornado.web
import yaml

from . import compute, identity, image, network
from .boot import BACKENDS, SPARK_MODES, BootBackend, ContainerBoot, ProcessBoot
from .compute import COMPUTE_MAX, COMPUTE_MIN
from .control import ControlHandler
from .faults import Fault, FaultSet
from .model import (
    DOMAIN_ID,
    PASSWORD,
    PROJECT,
    PROJECT_ID,
    USER_ID,
    USERNAME,
    VM,
    Call,
    CloudModel,
    now_iso,
)
from .routing import ApiHandler, Reply, Router, request_kind

__all__ = ["COMPUTE_MAX", "COMPUTE_MIN", "DOMAIN_ID", "PASSWORD", "PROJECT", "PROJECT_ID",
           "SPARK_MODES", "USERNAME", "USER_ID", "VM", "Call", "Emulator", "EmulatorError",
           "ROUTER", "request_kind"]

log = logging.getLogger("jupyter_spark_openstack.emulator")


class EmulatorError(Exception):
    pass


def _no_service(req, path: str):
    raise Reply(404, {"error": {"code": 404, "message": f"no service at {path}"}})


#: every OpenStack route the emulator serves (``/`` answers Keystone's version list)
ROUTER = Router([identity.SERVICE, compute.SERVICE, image.SERVICE, network.SERVICE],
                root=identity.versions, no_service=_no_service)


def _model_list(name: str) -> property:
    return property(lambda self: getattr(self.model, name),
                    doc=f"The cloud model's ``{name}`` (:class:`.model.CloudModel`).")


class Emulator:
    """The emulated cloud. :meth:`start` serves it from a background thread; :meth:`stop`
    deletes every server (stopping their workers) and the server."""

    quota = _model_list("quota")
    flavors = _model_list("flavors")
    images = _model_list("images")
    networks = _model_list("networks")
    keypairs = _model_list("keypairs")
    security_groups = _model_list("security_groups")
    availability_zones = _model_list("availability_zones")

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, boot_delay: float = 2.0,
                 delete_delay: float = 0.3, spark_mode: str = "jvm",
                 run_dir: str | os.PathLike | None = None, quota: dict | None = None,
                 seed: int = 1234, worker_stop_timeout: float = 15.0, vm_nice: int = 10,
                 boot_backend: str = "process", machine_rootfs: str | os.PathLike | None = None,
                 spark_home: str | os.PathLike | None = None, tenant_cidr: str | None = None,
                 enforce_security_groups: bool = True):
        if host not in ("127.0.0.1", "localhost"):
            raise ValueError(f"host: {host!r} is not allowed; expected 127.0.0.1 or localhost")
        if spark_mode not in SPARK_MODES:
            raise ValueError(f"spark_mode: {spark_mode!r} is not allowed; expected one of {SPARK_MODES}")
        if boot_backend not in BACKENDS:
            raise ValueError(f"boot_backend: {boot_backend!r} is not allowed; expected one of {BACKENDS}")
        if boot_backend == "container" and spark_mode != "jvm":
            raise ValueError(f"spark_mode: {spark_mode!r} is not allowed with boot_backend "
                             "'container' (a machine runs what its user-data says); expected 'jvm'")
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
        self.model = CloudModel(quota)
        self._tasks: set[asyncio.Task] = set()
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="emulator-vm")
        self.boot_backend = boot_backend
        self.network = None      # the tenant network (container backend), made by start()
        self._container_args = {"rootfs": machine_rootfs, "spark_home": spark_home,
                                "cidr": tenant_cidr, "enforce": bool(enforce_security_groups)}
        self.backend: BootBackend = ProcessBoot(
            self.model, self._pool, run_dir=self.run_dir, spark_mode=spark_mode,
            vm_nice=self.vm_nice, worker_stop_timeout=worker_stop_timeout)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._http: tornado.httpserver.HTTPServer | None = None
        self._stopped = threading.Event()
        self._ready = threading.Event()
        self._start_error: BaseException | None = None

    # ---- life cycle ---------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def auth_url(self) -> str:
        return f"{self.url}/identity"

    @property
    def hub_address(self) -> str:
        """Where the servers reach the host: the hub's address on the tenant network (container
        backend), else 127.0.0.1 (the in-process workers run on this host)."""
        return self.network.hub_address if self.network is not None else "127.0.0.1"

    def start(self) -> Emulator:
        if self.boot_backend == "container":
            self._start_container_backend()
        self._thread = threading.Thread(target=self._run, name="os-emulator", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._start_error:
            raise self._start_error
        if not self._ready.is_set():
            raise EmulatorError("emulator did not start within 30 s")
        log.info("OpenStack emulator listening on %s (boot delay %.1fs, %s boot, spark mode %s)",
                 self.url, self.boot_delay, self.boot_backend, self.spark_mode)
        return self

    def _start_container_backend(self) -> None:
        from ..machines.container import TenantNetwork  # noqa: PLC0415

        args = self._container_args
        self.network = TenantNetwork(args["cidr"]).start()
        try:
            self.backend = ContainerBoot(self.model, self._pool, run_dir=self.run_dir,
                                         network=self.network, rootfs=args["rootfs"],
                                         spark_home=args["spark_home"],
                                         enforce_security_groups=args["enforce"])
        except BaseException:
            self.network.close(force=True)
            self.network = None
            raise

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            app = tornado.web.Application(log_function=lambda h: None, handlers=[
                (r"/_emulator/(.*)", ControlHandler, {"emu": self}),
                (r"(.*)", ApiHandler, {"emu": self, "router": ROUTER})])
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
        futs = [self._pool.submit(self.backend.delete, vm) for vm in self.model.remove_all_servers()]
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
        if self.network is not None:
            self.network.close(force=True)
            self.network = None
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
        return self.model.calls(kind, method)

    def clear_calls(self) -> None:
        self.model.clear_calls()

    def record(self, call: Call) -> None:
        self.model.record(call)

    def servers(self) -> list[dict]:
        """Every server that exists (deleting ones included), with its user-data and worker."""
        return [self.model.describe(vm, self.backend.console(vm)) for vm in self.model.list_servers()]

    def set_quota(self, **limits: int) -> None:
        self.model.set_quota(**limits)

    def worker_processes(self) -> list[dict]:
        return self.model.worker_records()

    def usage(self) -> dict:
        return self.model.usage()

    # ---- a server's cloud life (called by the compute routes, on the event loop) -------------
    def boot_server(self, vm: VM, faults: list[Fault]) -> None:
        """The backend gets the server (its address), then BUILD for the boot delay, then ERROR
        (``boot_error``) or ACTIVE and the backend boots it."""
        try:
            self.backend.create(vm)
        except Exception as e:  # noqa: BLE001  (e.g. no free address on the tenant network)
            self.model.set_state(vm, "ERROR", {"code": 500, "created": now_iso(),
                                               "message": f"Failed to allocate the network(s): {e}"})
            return
        self._spawn_task(self._boot(vm, faults))

    def delete_server(self, vm: VM) -> None:
        """The backend deletes the machine; the server is gone ``delete_delay`` later."""
        self._spawn_task(self._delete(vm))

    def reboot_server(self, vm: VM) -> None:
        self._spawn_task(self.backend.reboot(vm))

    def console(self, vm: VM) -> list[str]:
        return self.backend.console(vm)

    def _spawn_task(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _boot(self, vm: VM, faults: list[Fault]) -> None:
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
            self.model.set_state(vm, "ERROR", {"code": 500, "message": msg, "created": now_iso()})
            return
        self.model.set_state(vm, "ACTIVE")
        vanish = next((f for f in faults if f.action == "vanish"), None)
        if vanish:
            self._spawn_task(self._vanish(vm, vanish.seconds))
        await self.backend.boot(vm)

    async def _vanish(self, vm: VM, after: float) -> None:
        await asyncio.sleep(after)
        if self.model.remove_server(vm.id):
            self.model.mark_deleting(vm)
            log.info("server %s vanished (injected fault)", vm.id)
            await asyncio.get_running_loop().run_in_executor(self._pool, self.backend.delete, vm)

    async def _delete(self, vm: VM) -> None:
        await asyncio.get_running_loop().run_in_executor(self._pool, self.backend.delete, vm)
        await asyncio.sleep(self.delete_delay)
        self.model.remove_server(vm.id)
