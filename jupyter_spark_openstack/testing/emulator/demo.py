"""The emulator side of ``make demo-openstack`` (used by ``python -m jupyter_spark_openstack.demo
--provisioner openstack``): an emulator in this process, its clouds.yaml, and the hub settings
that point the ``openstack`` provisioner at it."""

from __future__ import annotations

import os
from pathlib import Path

from .app import Emulator
from .helpers import provisioner_config

DEMO_SIZES = [
    {"name": "small", "cores": 1, "memory": "1g", "flavor": "m1.small",
     "description": "small: flavor m1.small (1 core, 1 GB)"},
    {"name": "medium", "cores": 2, "memory": "2g", "flavor": "m1.medium",
     "description": "medium: flavor m1.medium (2 cores, 2 GB)"},
]


def start_demo_emulator(directory: str | os.PathLike, *, boot_delay: float = 3.0,
                        spark_mode: str = "jvm") -> tuple[Emulator, dict, str]:
    """Start an emulator; return ``(emulator, provisioner_config, extra hub config lines)``."""
    d = Path(directory) / "emulator"
    d.mkdir(parents=True, exist_ok=True)
    emu = Emulator(boot_delay=boot_delay, spark_mode=spark_mode, run_dir=d / "vms").start()
    clouds = emu.write_clouds_yaml(d / "clouds.yaml")
    cfg = provisioner_config(emu, clouds, retry_backoff=0.5, poll_interval=1.0, api_timeout=30)
    extra = "\n".join([
        "# openstack provisioner against the bundled emulator " + emu.url,
        f"c.SparkClusterMixin.worker_sizes = {DEMO_SIZES!r}",
        "c.SparkClusterMixin.master_host = '127.0.0.1'",
    ])
    print(f"OpenStack emulator on {emu.url} (boot delay {boot_delay:.0f}s; clouds.yaml {clouds}; "
          f"API calls: {emu.url}/_emulator/calls, servers: {emu.url}/_emulator/servers)", flush=True)
    return emu, cfg, extra
