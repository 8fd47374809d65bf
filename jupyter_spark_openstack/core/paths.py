"""Where this package keeps files at run time (one place, shared by kernel, server and CLI)."""

from __future__ import annotations

import os
import re
from pathlib import Path


def runtime_root() -> Path:
    """``$JUPYTER_RUNTIME_DIR/spark-openstack`` (jupyter_core's runtime dir)."""
    from jupyter_core.paths import jupyter_runtime_dir  # noqa: PLC0415

    return Path(jupyter_runtime_dir()) / "spark-openstack"


def kernel_log_dir() -> Path:
    return Path(os.environ.get("SPARK_OPENSTACK_KERNEL_LOG_DIR") or runtime_root() / "kernel-logs")


def kernel_id_from_connection_file(connection_file: str) -> str:
    """``.../kernel-<id>.json`` -> ``<id>`` (the name jupyter_client gives connection files)."""
    base = os.path.basename(connection_file)
    m = re.match(r"^kernel-(.+)\.json$", base)
    return m.group(1) if m else os.path.splitext(base)[0]


def kernel_log_path(kernel_id: str) -> Path:
    """The kernel's own log: startup errors, SparkSession failures (written by the kernel)."""
    return kernel_log_dir() / f"kernel-{kernel_id}.log"


def kernel_output_path(kernel_id: str) -> Path:
    """The kernel process's stdout/stderr as captured by the notebook server."""
    return kernel_log_dir() / f"kernel-{kernel_id}.output.log"
