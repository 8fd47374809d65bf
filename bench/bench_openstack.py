#!/usr/bin/env python
"""OpenStack provisioner benchmark against the bundled emulator (3 s emulated boot delay).

Two measurements, in one run, each median of ``--runs`` (default 5), sizes interleaved so a
machine whose load changes affects all sizes alike:

* **api** -- the provisioner path alone, emulator in no-JVM mode: from ``check_capacity`` +
  parallel ``request_worker`` of N workers to every server reporting ``running`` (ACTIVE with
  its cloud-config accepted); then ``stop`` = parallel ``delete_worker`` of all N until each
  answers 404. This isolates what the provisioner controls (parallel API calls, polling,
  retries) from JVM start-up on this 2-core host. Targets (issue 4): spawn(8) <= 1.15 x
  spawn(1); stop(8) <= 1.2 x stop(1).
* **spark** -- the full lifecycle (``SparkCluster.start``: per-user master + N workers booted
  by the emulator's cloud-init as real Spark worker JVMs, ready = all registered with the
  master; no Spark Connect server) and ``SparkCluster.stop``; ``--spark-runs`` (default 3, 0 to skip). Here 8 worker
  JVMs start at once on 2 cores, so the 8/1 ratio also measures this host's CPU.

The 30-user storm on the hub (p99 of ``GET /hub/api/``) is in ``bench_hub_openstack.py`` once
the hub side exists.

Usage: .venv/bin/python bench/bench_openstack.py [--runs 5] [--spark-runs 3]
Results: bench/results/openstack.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from jupyter_spark_openstack.core.provisioners.base import WorkerSpec  # noqa: E402
from jupyter_spark_openstack.core.provisioners.openstack import OpenStackProvisioner  # noqa: E402
from jupyter_spark_openstack.testing.emulator import Emulator  # noqa: E402
from jupyter_spark_openstack.testing.emulator.helpers import provisioner_config  # noqa: E402

BOOT_DELAY = 3.0
SIZES = (1, 4, 8)


def specs(n: int, run: int) -> list[WorkerSpec]:
    cid = f"bench-u{run}-n{n}"
    return [WorkerSpec(hub_id="bench", owner=f"u{run}", cluster_id=cid, name=f"{cid}-w{i}",
                       index=i, cores=1, memory="1g", master_url="spark://127.0.0.1:7077",
                       secret="bench-secret", size="small") for i in range(1, n + 1)]


async def api_once(prov: OpenStackProvisioner, n: int, run: int) -> tuple[float, float]:
    ss = specs(n, run)
    t0 = time.perf_counter()
    await prov.check_capacity(ss)
    recs = await asyncio.gather(*(prov.request_worker(s) for s in ss))
    while True:
        sts = await asyncio.gather(*(prov.worker_status(r) for r in recs))
        if all(s.state == "running" for s in sts):
            break
        bad = [s for s in sts if s.state in ("failed", "gone")]
        if bad:
            raise RuntimeError(bad[0].message)
        await asyncio.sleep(0.25)
    spawn = time.perf_counter() - t0
    t0 = time.perf_counter()
    await asyncio.gather(*(prov.delete_worker(r) for r in recs))
    stop = time.perf_counter() - t0
    return spawn, stop


async def spark_once(prov, n: int, run: int, root: Path) -> tuple[float, float]:
    from jupyter_spark_openstack.core.cluster import ClusterConfig, SparkCluster  # noqa: PLC0415
    from jupyter_spark_openstack.core.options import Limits, OptionsSchema  # noqa: PLC0415

    opts = OptionsSchema(sizes=[{"name": "small", "cores": 1, "memory": "1g"}],
                         limits=Limits(max_workers_per_user=8)).parse({"workers": n, "size": "small"})
    cluster = SparkCluster.new(ClusterConfig(hub_id="bench", start_timeout=300, connect_server=False,
                                             head_placement="hub"), prov,
                               owner=f"s{run}n{n}", options=opts, run_dir=root / f"c{run}-{n}")
    t0 = time.perf_counter()
    try:
        await cluster.start()
        spawn = time.perf_counter() - t0
    finally:
        t1 = time.perf_counter()
        await cluster.stop()
        stop = time.perf_counter() - t1
    return spawn, stop


def med(xs):
    return statistics.median(xs) if xs else float("nan")


async def main_async(args) -> dict:
    root = Path(tempfile.mkdtemp(prefix="bench-openstack-"))
    results: dict = {"boot_delay_s": BOOT_DELAY, "runs": args.runs, "spark_runs": args.spark_runs,
                     "api": {}, "spark": {}}
    try:
        emu = Emulator(boot_delay=BOOT_DELAY, delete_delay=0.3, spark_mode="none",
                       run_dir=root / "emu-api").start()
        try:
            prov = OpenStackProvisioner(provisioner_config(emu, root / "clouds-api.yaml"))
            await prov.list_workers(hub_id="warmup")  # auth + discovery, not part of a spawn
            raw = {n: {"spawn": [], "stop": []} for n in SIZES}
            for run in range(args.runs):
                for n in SIZES:
                    sp, st = await api_once(prov, n, run)
                    raw[n]["spawn"].append(sp)
                    raw[n]["stop"].append(st)
                    print(f"  api   run {run + 1}/{args.runs} n={n}: spawn {sp:6.2f}s  stop {st:5.2f}s", flush=True)
            await prov.close()
            assert emu.servers() == [], "servers left behind"
            results["api"] = {str(n): {"spawn_median_s": med(r["spawn"]), "stop_median_s": med(r["stop"]),
                                       "spawn_s": r["spawn"], "stop_s": r["stop"]} for n, r in raw.items()}
            results["api_calls"] = len(emu.calls())
        finally:
            emu.stop()
        if args.spark_runs:
            emu = Emulator(boot_delay=BOOT_DELAY, delete_delay=0.3, spark_mode="jvm",
                           run_dir=root / "emu-spark").start()
            try:
                prov = OpenStackProvisioner(provisioner_config(emu, root / "clouds-spark.yaml"))
                await prov.list_workers(hub_id="warmup")
                raw = {n: {"spawn": [], "stop": []} for n in SIZES}
                for run in range(args.spark_runs):
                    for n in SIZES:
                        sp, st = await spark_once(prov, n, run, root)
                        raw[n]["spawn"].append(sp)
                        raw[n]["stop"].append(st)
                        print(f"  spark run {run + 1}/{args.spark_runs} n={n}: spawn {sp:6.2f}s  stop {st:5.2f}s", flush=True)
                await prov.close()
                assert emu.servers() == [] and emu.worker_processes() == []
                results["spark"] = {str(n): {"spawn_median_s": med(r["spawn"]), "stop_median_s": med(r["stop"]),
                                             "spawn_s": r["spawn"], "stop_s": r["stop"]} for n, r in raw.items()}
            finally:
                emu.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--spark-runs", type=int, default=3)
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    res = asyncio.run(main_async(args))
    res["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(),
                      "load_avg": os.getloadavg()}
    print()
    print(f"OpenStack provisioner on the emulator, boot delay {BOOT_DELAY:.0f}s "
          f"(load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    print(f"{'path':6} {'workers':>7} {'spawn-to-ready':>15} {'x of 1':>7} {'stop':>8} {'x of 1':>7}")
    checks = {}
    for path in ("api", "spark"):
        r = res.get(path) or {}
        if not r:
            continue
        s1, t1 = r["1"]["spawn_median_s"], r["1"]["stop_median_s"]
        for n in SIZES:
            s, t = r[str(n)]["spawn_median_s"], r[str(n)]["stop_median_s"]
            print(f"{path:6} {n:7d} {s:14.2f}s {s / s1:7.2f} {t:7.2f}s {t / t1:7.2f}")
        checks[path] = {"spawn8_over_spawn1": r["8"]["spawn_median_s"] / s1,
                        "stop8_over_stop1": r["8"]["stop_median_s"] / t1}
    res["ratios"] = checks
    a = checks.get("api", {})
    if a:
        ok1 = a["spawn8_over_spawn1"] <= 1.15
        ok2 = a["stop8_over_stop1"] <= 1.2
        print(f"target spawn(8) <= 1.15 x spawn(1): {a['spawn8_over_spawn1']:.3f}  {'PASS' if ok1 else 'FAIL'}")
        print(f"target stop(8)  <= 1.2  x stop(1):  {a['stop8_over_stop1']:.3f}  {'PASS' if ok2 else 'FAIL'}")
        res["targets_met"] = ok1 and ok2
    out = REPO / "bench" / "results" / "openstack.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2))
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
