#!/usr/bin/env python
"""Head placement ``hub`` vs ``cluster`` with N users (default 5) on one real JupyterHub, in one run.

One emulator in container mode (real machines: systemd-nspawn, systemd, the real cloud-init) and,
for each placement in turn, a real JupyterHub (``openstack`` provisioner, the same hub config but
``head_placement``) where N users spawn at once, each 1 small worker (1 core, 1g), then each runs
``spark.range(1000).count()`` in a new Connect kernel ``--kernels`` times (default 3):

* ``hub``: her Spark master and Connect server are JVMs on the hub host; her kernel reaches
  Connect on loopback (``sc://localhost``, local credentials);
* ``cluster``: a head machine of her cluster runs them; her kernel reaches Connect over TLS
  (HAProxy on the head, her cluster's CA).

Measured, per placement:

1. hub-host memory per active user: once every user's kernel has run a job (her kernel still
   open), the RSS and PSS of every process of this hub in the hub host's PID namespace (its
   notebook servers, kernels and, with ``hub``, her JVMs; found by command line or working
   directory under the hub's directory) minus the same measured before any spawn (the hub and
   its proxy), divided by N. Machines are not on the hub host: their processes are in PID
   namespaces of their own and not counted;
2. JVMs on the hub host per user: java processes of this hub in the hub's PID namespace / N;
3. kernel start to first result: POST of a new kernel -> the output of
   ``spark.range(1000).count()``, for each user and round (N x rounds samples), median;
4. spawn to ready: POST of her server -> the hub says ready, median over the N users.

Ratios are ``cluster`` over ``hub``, from medians of the same run. Targets (issue 12): RSS per user
<= 0.35; JVMs per user 0; kernel start over TLS <= 1.25x loopback. The machine is shared and has
few CPUs: absolute times are noisy, the ratios within one run are the figures.

Usage: sudo .venv/bin/python bench/bench_head_placement.py [--users 5] [--kernels 3]
Results: bench/results/head_placement.json
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import psutil  # noqa: E402

from jupyter_spark_openstack.demo.client import HubClient  # noqa: E402
from jupyter_spark_openstack.demo.hubconfig import write_hub_config  # noqa: E402
from jupyter_spark_openstack.demo.hubprocess import HubProcess, kill_processes, processes_under  # noqa: E402

MIB = 1024 * 1024
JOB = "print(spark.range(1000).count())"
SIZES = [{"name": "small", "cores": 1, "memory": "1g", "description": "small (1 core, 1 GB)"}]


def hub_processes(hub_dir: Path) -> list[psutil.Process]:
    """Processes of this hub in this PID namespace (machines' processes are in their own)."""
    mine = os.readlink("/proc/self/ns/pid")
    out = []
    for p in processes_under(hub_dir):
        try:
            if os.readlink(f"/proc/{p.pid}/ns/pid") == mine:
                out.append(p)
        except OSError:
            continue
    return out


def memory(hub_dir: Path) -> dict:
    rss = pss = 0
    jvms = 0
    for p in hub_processes(hub_dir):
        try:
            m = p.memory_full_info()
            rss += m.rss
            pss += m.pss
            jvms += p.name() == "java"
        except psutil.Error:
            continue
    return {"rss_mib": rss / MIB, "pss_mib": pss / MIB, "jvms": jvms}


def kernel_round(c: HubClient, user: str) -> float:
    t0 = time.perf_counter()
    kid = c.start_kernel(user, "pyspark")
    try:
        res = c.execute(user, kid, JOB, timeout=300)
        if res["error"] or res["text"].strip().splitlines()[-1:] != ["1000"]:
            raise RuntimeError(f"{user}: {res}")
        return time.perf_counter() - t0
    finally:
        c.delete_kernel(user, kid)


def run_placement(placement: str, emu, root: Path, args) -> dict:
    from jupyter_spark_openstack.testing.emulator.helpers import provisioner_config  # noqa: PLC0415

    d = root / placement
    cfg = provisioner_config(emu, d / "clouds.yaml", retry_backoff=0.2, poll_interval=0.5,
                             master_host=emu.hub_address, hub_cidr=str(emu.network.network),
                             head_flavor="m1.medium")
    cfg["install"] = {"mode": "preinstalled", "spark_home": "/opt/spark"}
    extra = "\n".join([f"c.SparkClusterMixin.master_host = {emu.hub_address!r}",
                       f"c.SparkClusterMixin.head_placement = {placement!r}",
                       "c.JupyterHub.tornado_settings = {'slow_spawn_timeout': 0}"])
    info = write_hub_config(d / "hub", provisioner="openstack", provisioner_config=cfg, extra=extra,
                            spawner_overrides={"cluster_start_timeout": 900.0, "hub_id": f"bench{placement}",
                                               "worker_sizes": SIZES, "default_workers": 1,
                                               "max_workers_total": 4 * args.users,
                                               "reconcile_interval": 0.0})
    hub = HubProcess(info).start()
    c = HubClient(info["url"], info["api_token"])
    users = [f"user{i}" for i in range(args.users)]
    out: dict = {"placement": placement}
    try:
        for u in users:
            c.ensure_user(u)
        time.sleep(2)
        out["baseline"] = memory(d / "hub")
        t0 = time.perf_counter()

        def spawn(u: str) -> float:
            r = c.spawn(u, {"workers": 1, "size": "small"})
            if r.status_code not in (201, 202):
                raise RuntimeError(f"{u}: {r.status_code} {r.text}")
            c.wait_ready(u, timeout=1200)
            return time.perf_counter() - t0

        with concurrent.futures.ThreadPoolExecutor(len(users)) as pool:
            out["spawn_to_ready_s"] = list(pool.map(spawn, users))
        print(f"{placement:7s} {args.users} users ready: spawn-to-ready median "
              f"{statistics.median(out['spawn_to_ready_s']):.1f} s", flush=True)
        out["servers"] = len(emu.model.list_servers())
        # kernel start to first result, users one after the other, rounds
        out["kernel_start_s"] = []
        for r in range(args.kernels):
            for u in users:
                s = kernel_round(c, u)
                out["kernel_start_s"].append({"user": u, "round": r + 1, "s": s})
        print(f"{placement:7s} kernel start -> spark.range(1000).count(): median "
              f"{statistics.median(x['s'] for x in out['kernel_start_s']):.2f} s", flush=True)
        # memory with every user active: her kernel open, one job run in it
        kids = []
        for u in users:
            kid = c.start_kernel(u, "pyspark")
            kids.append((u, kid))
            res = c.execute(u, kid, JOB, timeout=300)
            if res["error"]:
                raise RuntimeError(f"{u}: {res}")
        time.sleep(3)
        out["active"] = memory(d / "hub")
        for u, kid in kids:
            c.delete_kernel(u, kid)
        with concurrent.futures.ThreadPoolExecutor(len(users)) as pool:
            list(pool.map(lambda u: c.stop(u, timeout=600), users))
        out["servers_left"] = len(emu.model.list_servers())
    finally:
        hub.stop()
        left = processes_under(d)
        kill_processes(left)
    per_user = {k: (out["active"][k] - out["baseline"][k]) / args.users
                for k in ("rss_mib", "pss_mib", "jvms")}
    out["per_user"] = per_user
    print(f"{placement:7s} per active user on the hub host: RSS {per_user['rss_mib']:.0f} MiB, "
          f"PSS {per_user['pss_mib']:.0f} MiB, JVMs {per_user['jvms']:.1f}", flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--users", type=int, default=5)
    ap.add_argument("--kernels", type=int, default=3, help="kernel rounds per user")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "head_placement.json"))
    args = ap.parse_args()
    if args.users < 1 or args.kernels < 1:
        ap.error("--users >= 1, --kernels >= 1")
    if os.geteuid() != 0 or shutil.which("systemd-nspawn") is None:
        raise SystemExit("bench_head_placement: needs root and systemd-nspawn (container mode)")
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
    from jupyter_spark_openstack.testing.emulator import Emulator  # noqa: PLC0415
    from jupyter_spark_openstack.testing.machines.image import build_image  # noqa: PLC0415

    build_image()
    date = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    load_start = os.getloadavg()
    t_all = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="bench-head-placement-"))
    os.chmod(root, 0o755)
    emu = Emulator(boot_delay=0.5, boot_backend="container", run_dir=root / "emu").start()
    emu.set_quota(instances=100, cores=200, ram=1024 * 1024)
    try:
        runs = {p: run_placement(p, emu, root, args) for p in ("hub", "cluster")}
    finally:
        emu.stop()
        shutil.rmtree(root, ignore_errors=True)
    med = statistics.median
    hub, cl = runs["hub"], runs["cluster"]
    k_hub = med(x["s"] for x in hub["kernel_start_s"])
    k_cl = med(x["s"] for x in cl["kernel_start_s"])
    s_hub, s_cl = med(hub["spawn_to_ready_s"]), med(cl["spawn_to_ready_s"])
    result = {
        "benchmark": "head_placement",
        "date": date,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "loadavg_start": load_start, "loadavg_end": os.getloadavg()},
        "setup": {"users": args.users, "workers_per_user": 1, "worker": "1 core, 1g, m1.small",
                  "head_flavor": "m1.medium", "kernel_rounds": args.kernels, "job": JOB,
                  "emulator": "container mode (real machines, real cloud-init)",
                  "memory": "processes of the hub in its PID namespace, active minus before any "
                            "spawn, / users"},
        "per_user_hub_host": {"hub": hub["per_user"], "cluster": cl["per_user"]},
        "ratio_rss_per_user_cluster_over_hub": cl["per_user"]["rss_mib"] / hub["per_user"]["rss_mib"],
        "ratio_pss_per_user_cluster_over_hub": cl["per_user"]["pss_mib"] / hub["per_user"]["pss_mib"],
        "jvms_per_user_on_hub_host": {"hub": hub["per_user"]["jvms"], "cluster": cl["per_user"]["jvms"]},
        "median_kernel_start_to_result_s": {"hub_loopback": k_hub, "cluster_tls": k_cl},
        "ratio_kernel_start_tls_over_loopback": k_cl / k_hub,
        "median_spawn_to_ready_s": {"hub": s_hub, "cluster": s_cl},
        "ratio_spawn_to_ready_cluster_over_hub": s_cl / s_hub,
        "targets": {"ratio_rss_per_user_cluster_over_hub": "<= 0.35",
                    "jvms_per_user_on_hub_host_cluster": "0",
                    "ratio_kernel_start_tls_over_loopback": "<= 1.25"},
        "total_s": time.monotonic() - t_all,
        "raw": runs,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("raw", "setup", "machine")}, indent=2))
    return 0 if all(r["servers_left"] == 0 for r in runs.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
