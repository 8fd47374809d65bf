"""The per-user kernelspecs the spawner writes once the user's cluster is up."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..core.cluster import SparkCluster
from ..core.kernelspec import install_kernelspec
from ..core.models import KernelSettings
from ..core.options import ClusterOptions


def _private_copy(src: str, dst: Path) -> str:
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f, open(src) as s:
        shutil.copyfileobj(s, f)
    return str(dst)


def user_kernel_settings(spawner, cluster: SparkCluster, options: ClusterOptions,
                         user_dir: Path) -> list[KernelSettings]:
    """Kernel settings for this user's cluster: executor = one per worker, cores.max = all."""
    secret_file = _private_copy(cluster.secret_file, user_dir / "spark-secret") if cluster.secret_file else None
    size = options.size
    common = dict(
        master=cluster.master_url,
        executor_memory=size.memory,
        executor_cores=size.cores,
        cores_max=options.total_cores,
        driver_memory=spawner.kernel_driver_memory,
        conf=dict(spawner.kernel_conf),
        secret_file=secret_file,
        cluster_name=cluster.cluster_id,
        webui_url=cluster.webui_url,
    )
    desc = options.describe()
    specs = []
    connect = cluster.state.get("connect") or {}
    if connect.get("url"):
        token_file = _private_copy(connect["token_file"], user_dir / "connect-token")
        specs.append(KernelSettings.parse(
            name="pyspark", display_name=f"PySpark ({desc})", connect_url=connect["url"],
            connect_token_file=token_file, **common))
        specs.append(KernelSettings.parse(
            name="pyspark-classic", display_name=f"PySpark classic, RDD API ({desc})", **common))
    else:
        specs.append(KernelSettings.parse(name="pyspark", display_name=f"PySpark ({desc})", **common))
    return specs


def write_user_kernelspecs(spawner, cluster: SparkCluster, options: ClusterOptions,
                           user_dir: Path) -> list[str]:
    """Write the kernelspecs into ``<user_dir>/jupyter/kernels/`` (put on JUPYTER_PATH)."""
    data_dir = user_dir / "jupyter"
    paths = []
    for settings in user_kernel_settings(spawner, cluster, options, user_dir):
        paths.append(str(install_kernelspec(settings, data_dir=str(data_dir), replace=True)))
    return paths
