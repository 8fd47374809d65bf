"""Boot backends: what runs a server once the emulated Nova has made it ACTIVE.

Contract (:class:`BootBackend`): the emulator owns a server's cloud life (BUILD, the boot delay,
the ``boot_error``/``slow_boot``/``vanish`` faults, ACTIVE or ERROR, removal after delete) and
calls its backend for the machine:

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
on 127.0.0.1, or nothing with ``spark_mode="none"``. A ``ContainerBoot`` on
:mod:`..machines.container` fits the same interface.
"""

from __future__ import annotations

import asyncio
import shutil
from concurrent.futures import Executor
from pathlib import Path
from typing import Protocol

from ...core.provisioners.cloudconfig import CloudConfigError, read_worker_boot
from .model import VM, CloudModel, now_iso

SPARK_MODES = ("jvm", "none")


class BootBackend(Protocol):
    """The interface the emulator boots its servers through (see the module docstring)."""

    name: str   # "process", "container"

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
