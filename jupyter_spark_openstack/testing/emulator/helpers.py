"""Small helpers for tests, benchmarks and the demo that use the emulator with the
``openstack`` provisioner."""

from __future__ import annotations

import os

from .app import Emulator


def provisioner_config(emu: Emulator, clouds_yaml: str | os.PathLike, **overrides) -> dict:
    """A valid ``openstack`` provisioner config for ``emu`` (clouds.yaml written if missing)."""
    clouds_yaml = str(clouds_yaml)
    if not os.path.exists(clouds_yaml):
        emu.write_clouds_yaml(clouds_yaml)
    cfg = {
        "cloud": "emulator",
        "clouds_yaml": os.path.abspath(clouds_yaml),
        "flavors": {"small": "m1.small", "medium": "m1.medium", "large": "m1.large"},
        "image": "spark-worker-4.0",
        "networks": ["private"],
        "key_name": "demo-key",
        "security_groups": ["default"],
        "availability_zone": "nova",
        "hub_cidr": "10.0.0.0/24",
        "install": {"mode": "preinstalled", "spark_home": "/opt/spark",
                    "java_home": "/usr/lib/jvm/java-17-openjdk-amd64"},
        "retry_backoff": 0.05,
        "poll_interval": 0.25,
        "api_timeout": 10,
    }
    cfg.update(overrides)
    return cfg
