"""The emulator side of ``make demo-openstack`` (used by ``python -m jupyter_spark_openstack.demo
--provisioner openstack``): an emulator in this process, its clouds.yaml, and the hub settings
that point the ``openstack`` provisioner at it.

Boot mode: ``container`` (each worker a real machine with systemd and cloud-init, on a tenant
network; the per-user masters bind to the hub's address there) when this machine allows it
(:func:`container_mode_problem` finds nothing missing), else ``process`` (in-process workers on
127.0.0.1), with a message saying why."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from .app import Emulator
from .helpers import provisioner_config

#: the sizes the demo offers; their flavors are the provisioner's ``flavors`` (helpers.py)
DEMO_SIZES = [
    {"name": "small", "cores": 1, "memory": "1g", "description": "small: flavor m1.small (1 core, 1 GB)"},
    {"name": "medium", "cores": 2, "memory": "2g", "description": "medium: flavor m1.medium (2 cores, 2 GB)"},
]


def container_mode_problem() -> str | None:
    """Why the container boot mode cannot run here (None: it can)."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        return "booting machines needs root on Linux"
    for tool, package in (("systemd-nspawn", "systemd-container"), ("debootstrap", "debootstrap")):
        if shutil.which(tool) is None and not os.path.exists(f"/usr/sbin/{tool}"):
            return f"'{tool}' is missing (apt-get install {package})"
    return None


def start_demo_emulator(directory: str | os.PathLike, *, boot_delay: float = 3.0,
                        spark_mode: str = "jvm", boot_backend: str | None = None,
                        ) -> tuple[Emulator, dict, str]:
    """Start an emulator; return ``(emulator, provisioner_config, extra hub config lines)``.
    ``boot_backend``: ``"container"``, ``"process"`` or None (container when possible)."""
    d = Path(directory) / "emulator"
    d.mkdir(parents=True, exist_ok=True)
    if boot_backend is None:
        problem = container_mode_problem() if spark_mode == "jvm" else "spark_mode is not 'jvm'"
        if problem is None:
            try:
                from ..machines.image import build_image  # noqa: PLC0415

                print("Machine image: building or reusing the cached one (about 90 s the "
                      "first time) ...", flush=True)
                build_image()
                boot_backend = "container"
            except Exception as e:  # noqa: BLE001
                problem = f"the machine image could not be built: {e}"
        if problem is not None:
            boot_backend = "process"
            print(f"Boot mode: process (in-process Spark workers on 127.0.0.1), because {problem}.",
                  flush=True)
    emu = Emulator(boot_delay=boot_delay, spark_mode=spark_mode, run_dir=d / "vms",
                   boot_backend=boot_backend).start()
    clouds = emu.write_clouds_yaml(d / "clouds.yaml")
    overrides = {}
    if emu.network is not None:
        overrides = {"master_host": emu.hub_address, "hub_cidr": str(emu.network.network),
                     "install": {"mode": "preinstalled", "spark_home": "/opt/spark"},
                     "head_flavor": "m1.medium"}
    cfg = provisioner_config(emu, clouds, retry_backoff=0.5, poll_interval=1.0, api_timeout=30,
                             **overrides)
    extra = "\n".join([
        "# openstack provisioner against the bundled emulator " + emu.url,
        f"c.SparkClusterMixin.worker_sizes = {DEMO_SIZES!r}",
        f"c.SparkClusterMixin.master_host = {emu.hub_address!r}",
        # machines can run her head; in-process workers cannot (the head stays on the hub)
        f"c.SparkClusterMixin.head_placement = {'cluster' if boot_backend == 'container' else 'hub'!r}",
    ])
    if boot_backend == "container":
        print(f"Boot mode: container (each worker a machine with systemd and cloud-init on the "
              f"tenant network {emu.network.network}; each user's head, her Spark master and "
              f"Connect server behind TLS, is a machine of her cluster too)", flush=True)
    print(f"OpenStack emulator on {emu.url} (boot delay {boot_delay:.0f}s; clouds.yaml {clouds}; "
          f"API calls: {emu.url}/_emulator/calls, servers: {emu.url}/_emulator/servers)", flush=True)
    return emu, cfg, extra
