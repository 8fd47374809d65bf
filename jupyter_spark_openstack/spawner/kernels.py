"""The per-user kernelspecs the spawner writes once the user's cluster is up.

They go into the cluster's session directory (made fresh at this start, writable by the hub
alone): directories 0755 and ``kernel.json`` 0644 of the hub's (nothing secret in them), her
copies of the secret and the Connect token created new and owned by her (0600).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..core import safefs
from ..core.cluster import SparkCluster
from ..core.kernelspec import build_kernel_json, logo_dir
from ..core.models import KernelSettings, parse_kernel_name
from ..core.options import ClusterOptions


def _private_copy(src: str, dst: Path, owner) -> str:
    with open(src, "rb") as s:
        return safefs.write_file(dst, s.read(), 0o600, owner, replace=True)


def user_kernel_settings(spawner, cluster: SparkCluster, options: ClusterOptions,
                         user_dir: Path, owner=None) -> list[KernelSettings]:
    """Kernel settings for this user's cluster: executor = one per worker, cores.max = all."""
    secret_file = (_private_copy(cluster.secret_file, user_dir / "spark-secret", owner)
                   if cluster.secret_file else None)
    size = options.size
    common = dict(
        master=cluster.master_url,
        executor_memory=size.memory,
        executor_cores=size.cores,
        cores_max=options.total_cores,
        driver_memory=spawner.kernel_driver_memory,
        conf={**cluster.spark_conf, **dict(spawner.kernel_conf)},
        secret_file=secret_file,
        cluster_name=cluster.cluster_id,
        webui_url=cluster.webui_url,
        executor_python=cluster.provisioner.executor_python,
    )
    desc = options.describe()
    specs = []
    connect = cluster.state.connect
    if connect is not None and connect.url:
        token_file = _private_copy(connect.token_file, user_dir / "connect-token", owner)
        tls = {}
        if connect.ca_file:   # her head, over TLS: she trusts her cluster's CA only
            tls = {"connect_ca_file": _private_copy(connect.ca_file, user_dir / "connect-ca.pem", owner),
                   "connect_tls_name": connect.server_name}
        specs.append(KernelSettings.parse(
            name="pyspark", display_name=f"PySpark ({desc})", connect_url=connect.url,
            connect_token_file=token_file, **tls, **common))
        specs.append(KernelSettings.parse(
            name="pyspark-classic", display_name=f"PySpark classic, RDD API ({desc})", **common))
    else:
        specs.append(KernelSettings.parse(name="pyspark", display_name=f"PySpark ({desc})", **common))
    return specs


def write_user_kernelspecs(spawner, cluster: SparkCluster, options: ClusterOptions,
                           user_dir: Path, owner=None) -> list[str]:
    """Write the kernelspecs into ``<user_dir>/jupyter/kernels/`` (put on JUPYTER_PATH)."""
    kdir = user_dir / "jupyter" / "kernels"
    safefs.make_dirs(kdir, 0o755)
    python = spawner.user_python or None
    spark_home = spawner.spark_home or None
    ldir = logo_dir()
    logos = sorted(ldir.glob("logo-*")) if ldir else []
    paths = []
    for settings in user_kernel_settings(spawner, cluster, options, user_dir, owner):
        dest = safefs.make_dir(kdir / parse_kernel_name("name", settings.name), 0o755)
        spec = build_kernel_json(settings, python=python, spark_home=spark_home)
        safefs.write_file(dest / "kernel.json",
                          json.dumps(spec, indent=1, sort_keys=True) + "\n", 0o644)
        for logo in logos:
            safefs.write_file(dest / logo.name, logo.read_bytes(), 0o644)
        paths.append(str(dest))
    return paths
