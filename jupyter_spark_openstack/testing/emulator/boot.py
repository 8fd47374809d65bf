"""Boot backends: what runs a server once the emulated Nova has made it ACTIVE.

Contract (:class:`BootBackend`): the emulator owns a server's cloud life (BUILD, the boot delay,
the ``boot_error``/``slow_boot``/``vanish`` faults, ACTIVE or ERROR, removal after delete) and
calls its backend for the machine:

* ``create(server)``: Nova has the server (BUILD): the backend may give it what Neutron's port
  would (``server.address``, shown in its ``addresses``); blocking, cheap;
* ``await boot(server)``: the server just went ACTIVE; power it on and let it run its
  user-data (returns once the boot is as far as the backend takes it; it may record the
  worker with :meth:`.model.CloudModel.attach_worker`). ``"no_worker" in server.injected``
  means the worker must not start;
* ``console(server) -> list[str]``: the console lines Nova's ``os-getConsoleOutput`` returns;
* ``await reboot(server)``: Nova's reboot action;
* ``delete(server)``: power off and remove everything the server had; blocking, called from
  the emulator's thread pool (also at :meth:`.app.Emulator.stop`); must be safe to call for a
  server that never booted or is being deleted twice;
* ``status(server) -> dict``: what the backend knows of the machine (``backend``, ``running``).

:class:`ProcessBoot` is today's in-process boot: it reads our user-data with
:func:`...core.provisioners.cloudconfig.read_worker_boot`, writes "(emulated)" console lines
and starts what the systemd unit would, a Spark worker (:func:`...core.spark.daemons.start_worker`)
on 127.0.0.1, or nothing with ``spark_mode="none"``.

:class:`ContainerBoot` boots the server as a real machine (:mod:`..machines.container`): a
system container of the project's image with its own systemd, the real cloud-init reading the
server's user-data from a NoCloud seed, an address on the emulator's tenant network, and the
Spark of this machine bind-mounted read-only where ``preinstalled`` mode expects it. Nothing
is parsed or started for it: whatever the user-data does is what happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import threading
from concurrent.futures import Executor
from pathlib import Path
from typing import Protocol

from ...core.provisioners.cloudconfig import UNIT_NAME, CloudConfigError, read_worker_boot
from .model import VM, CloudModel, now_iso

SPARK_MODES = ("jvm", "none")
BACKENDS = ("process", "container")


class BootBackend(Protocol):
    """The interface the emulator boots its servers through (see the module docstring)."""

    name: str   # "process", "container"

    def create(self, server: VM) -> None: ...

    async def boot(self, server: VM) -> None: ...

    def console(self, server: VM) -> list[str]: ...

    async def reboot(self, server: VM) -> None: ...

    def delete(self, server: VM) -> None: ...

    def status(self, server: VM) -> dict: ...


class ProcessBoot:
    """Emulated cloud-init and a local Spark worker process per server (niceness ``vm_nice``,
    run directory ``run_dir/vms/<server id>``), or no process in ``spark_mode="none"``."""

    name = "process"

    def __init__(self, model: CloudModel, pool: Executor, *, run_dir: Path, spark_mode: str = "jvm",
                 vm_nice: int = 10, worker_stop_timeout: float = 15.0):
        if spark_mode not in SPARK_MODES:
            raise ValueError(f"spark_mode: {spark_mode!r} is not allowed; expected one of {SPARK_MODES}")
        self.model = model
        self.pool = pool
        self.run_dir = Path(run_dir)
        self.spark_mode = spark_mode
        self.vm_nice = vm_nice
        self.worker_stop_timeout = worker_stop_timeout

    def create(self, vm: VM) -> None:
        """Its worker binds to 127.0.0.1: that is its address."""
        vm.address = "127.0.0.1"

    async def boot(self, vm: VM) -> None:
        vm.console_line("Linux version 6.8.0-emulated; booting")
        vm.console_line("cloud-init[612]: Cloud-init v. 24.4 running 'init' (emulated)")
        if vm.user_data is None:
            vm.console_line("cloud-init[612]: no user-data; nothing to do")
            return
        try:
            boot = read_worker_boot(vm.user_data)
        except CloudConfigError as e:
            vm.console_line(f"cloud-init[612]: {now_iso()} - util.py[WARNING]: {e}")
            vm.console_line("cloud-init[612]: Invalid cloud-config provided: Please run "
                            "'sudo cloud-init schema --system' to see the schema errors.")
            vm.console_line("cloud-init[612]: spark-openstack-worker.service was not started")
            return
        vm.boot = boot
        vm.console_line(f"cloud-init[612]: hostname set to {boot.hostname}; /etc/hosts updated")
        if boot.install_mode == "download":
            vm.console_line(f"cloud-init[612]: (emulated) downloaded {boot.spark_url}, "
                            "sha512 OK, unpacked to /opt/spark")
        if "no_worker" in vm.injected:
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
        loop = asyncio.get_running_loop()
        try:
            rec = await loop.run_in_executor(self.pool, self._start_worker, vm, boot)
        except Exception as e:  # noqa: BLE001
            vm.console_line(f"systemd[1]: Failed to start Spark worker: {e}")
            return
        if not self.model.attach_worker(vm, rec):
            await loop.run_in_executor(self.pool, self._stop_rec, rec)
            return
        vm.console_line(f"systemd[1]: Started Spark worker (jupyter-spark-openstack), pid {rec['pid']}")

    def console(self, vm: VM) -> list[str]:
        return list(vm.console)

    async def reboot(self, vm: VM) -> None:
        """The in-process boot has no machine to reboot: the worker keeps running."""

    def delete(self, vm: VM) -> None:
        rec = self.model.detach_worker(vm)
        if rec:
            self._stop_rec(rec)
        shutil.rmtree(self.run_dir / "vms" / vm.id, ignore_errors=True)

    def status(self, vm: VM) -> dict:
        """``running``: the server's worker process is recorded (never in ``spark_mode="none"``)."""
        return {"backend": self.name, "running": vm.worker is not None,
                "worker": dict(vm.worker) if vm.worker else None}

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


class ContainerBoot:
    """Each server a system container (:class:`..machines.container.Machine`) on ``network``
    (a started :class:`..machines.container.TenantNetwork`), from the image at ``rootfs``
    (default: the current image's), in ``run_dir/machines``; ``spark_home`` (a host
    directory, default the pyspark wheel's Spark) is bind-mounted read-only where the server's
    image has Spark (the catalog image's ``spark_home``, e.g. ``spark-worker-4.0``:
    ``/opt/spark``, what ``preinstalled`` mode expects); an image without it (``ubuntu-24.04``)
    boots with no Spark, as ``download`` mode expects.

    * the server's address is allocated when it is created (like a Neutron port) and shown in
      its ``addresses``; released when its machine is deleted;
    * the console is the machine's own (systemd, cloud-init, the getty), ANSI codes removed;
    * Nova's reboot: status ``REBOOT`` while the machine's systemd reboots it, then ``ACTIVE``;
    * the ``no_worker`` fault masks the worker unit (``systemd.mask=`` on the machine's command
      line), so the user-data's ``systemctl enable --now`` fails inside, as on a broken image;
    * ``spark_mode="none"`` is not offered: a machine runs what its user-data says;
    * ``enforce_security_groups`` (default): each server's security groups are enforced on the
      tenant network (:mod:`.firewall`, nftables in the network's namespace), from the moment it
      has its address; the rules follow every change of the groups' rules and servers.
    """

    name = "container"

    def __init__(self, model: CloudModel, pool: Executor, *, run_dir: Path, network,
                 rootfs: str | Path | None = None, spark_home: str | Path | None = None,
                 delete_timeout: float = 60.0, enforce_security_groups: bool = True):
        from ..machines import container  # noqa: PLC0415

        self._ct = container
        if network is None or network.network is None:
            raise ValueError("network: a started TenantNetwork is required by the container backend")
        self.model = model
        self.pool = pool
        self.run_dir = Path(run_dir) / "machines"
        self.network = network
        self.rootfs = Path(rootfs) if rootfs is not None else container.current_image_rootfs()
        if spark_home is None:
            import pyspark  # noqa: PLC0415

            spark_home = Path(pyspark.__file__).parent
        self.spark_home = Path(spark_home)
        if not (self.spark_home / "bin" / "spark-class").is_file():
            raise ValueError(f"spark_home: {self.spark_home} has no bin/spark-class")
        self.delete_timeout = delete_timeout
        self._machines: dict[str, object] = {}
        self._lock = threading.Lock()
        self.firewall = None
        if enforce_security_groups:
            from .firewall import SecurityGroupFirewall  # noqa: PLC0415

            self.firewall = SecurityGroupFirewall(lambda: network.netns_path, self._addressed)
            self.firewall.apply()
            model.on_rules_changed(self.firewall.apply)

    def _addressed(self) -> tuple[list[tuple[str, list[str]]], list[dict]]:
        """What the firewall enforces: each live server's address (still its own) and groups,
        and the groups with their rules."""
        servers = [(vm.address, list(vm.security_group_ids)) for vm in self.model.list_servers()
                   if vm.address and not vm.deleting and self.network.owner(vm.address) == vm.id]
        return servers, self.model.list_security_groups()

    def create(self, vm: VM) -> None:
        vm.address = self.network.allocate(vm.id)
        if self.firewall is not None:
            try:
                self.firewall.apply()
            except Exception:
                self.network.release(vm.address)
                raise

    async def boot(self, vm: VM) -> None:
        if vm.deleting:
            return
        init = [f"systemd.mask={UNIT_NAME}"] if "no_worker" in vm.injected else []
        meta = {"availability-zone": vm.availability_zone}
        image = next((i for i in self.model.images if i["id"] == vm.image_id), {})
        spark = (self.spark_home, image["spark_home"]) if image.get("spark_home") else None
        try:
            m = await asyncio.get_running_loop().run_in_executor(self.pool, lambda: self._ct.Machine.boot(
                _hostname(vm.name), vm.id, vm.user_data or "", meta,
                spark, run_dir=self.run_dir, rootfs=self.rootfs,
                network=self.network, address=vm.address, init_args=init))
        except Exception as e:  # noqa: BLE001
            self.model.set_state(vm, "ERROR", {"code": 500, "created": now_iso(),
                                               "message": f"Failed to power on the instance: {e}"})
            return
        with self._lock:
            self._machines[vm.id] = m
        if vm.deleting:   # deleted while it powered on: delete() may have missed it
            await asyncio.get_running_loop().run_in_executor(self.pool, self.delete, vm)

    def machine(self, vm: VM):
        """The server's :class:`..machines.container.Machine`, if it was powered on."""
        with self._lock:
            return self._machines.get(vm.id)

    def console(self, vm: VM) -> list[str]:
        m = self.machine(vm)
        if m is None:
            return list(vm.console)
        return m.console(plain=True).splitlines()

    async def reboot(self, vm: VM) -> None:
        m = self.machine(vm)
        if m is None or vm.deleting or vm.status != "ACTIVE":
            return
        self.model.set_state(vm, "REBOOT")
        try:
            await asyncio.get_running_loop().run_in_executor(self.pool, m.reboot)
        except Exception as e:  # noqa: BLE001
            if not vm.deleting:
                self.model.set_state(vm, "ERROR", {"code": 500, "created": now_iso(),
                                                   "message": f"Failed to reboot the instance: {e}"})
            return
        if not vm.deleting:
            self.model.set_state(vm, "ACTIVE")

    def delete(self, vm: VM) -> None:
        with self._lock:
            m = self._machines.pop(vm.id, None)
        try:
            if m is not None and not m.deleted:
                m.delete(timeout=self.delete_timeout)
            elif vm.address and self.network.owner(vm.address) == vm.id:
                self.network.release(vm.address)
        finally:
            if self.firewall is not None and self.network.holder_pid is not None:
                with contextlib.suppress(Exception):   # the network may be closing
                    self.firewall.apply()

    def status(self, vm: VM) -> dict:
        m = self.machine(vm)
        return {"backend": self.name, "running": bool(m is not None and m.running),
                "machine": m.machine if m is not None else None, "address": vm.address,
                "boots": m.boots if m is not None else 0}


def _hostname(name: str) -> str:
    """A server name as the machine's host name (what Nova's metadata gives cloud-init:
    letters, digits and '-', at most 63 characters)."""
    out = "".join(c if c.isascii() and (c.isalnum() or c == "-") else "-" for c in name)[:63].strip("-")
    return out or "server"
