#!/usr/bin/env python
"""Spark Connect kernel vs classic PySpark kernel, on the same local cluster, in one run.

For each kernel kind, ``--runs`` times (default 5): start a kernel with jupyter_client's
KernelManager from a kernelspec written by ``jupyter-spark-openstack kernel install``, run
``spark.range(1000).count()``, take the time from ``start_kernel()`` to the result (it must be
1000), then the RSS of the kernel process and all its children (psutil) while a first kernel of
the same kind keeps running (the memory an *extra* kernel costs), then shut it down.

The Connect server is started once (its start-up time and RSS are reported apart: a per-user
cost, not a per-kernel one). Targets (issue 7): Connect median <= 2.5 s and >= 5x faster than
classic; memory per extra Connect kernel <= 0.35 x classic.

Usage: .venv/bin/python bench/bench_connect_vs_classic.py [--runs 5]
Results: bench/results/bench_connect_vs_classic.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from jupyter_spark_openstack.core.localcluster import LocalCluster  # noqa: E402
from jupyter_spark_openstack.core.spark import connect as cc  # noqa: E402

CLI = [sys.executable, "-m", "jupyter_spark_openstack.cli"]
CODE = "spark.range(1000).count()"


def install(prefix: Path, name: str, args: list[str]) -> None:
    res = subprocess.run([*CLI, "kernel", "install", "--name", name, "--prefix", str(prefix),
                          *args], capture_output=True, text=True, timeout=60)
    if res.returncode != 0:
        raise SystemExit(f"kernel install failed: {res.stderr}")


class Kernel:
    def __init__(self, prefix: Path, name: str):
        from jupyter_client.kernelspec import KernelSpecManager
        from jupyter_client.manager import KernelManager

        ksm = KernelSpecManager(kernel_dirs=[str(prefix / "share" / "jupyter" / "kernels")])
        self.km = KernelManager(kernel_name=name, kernel_spec_manager=ksm)
        env = {k: v for k, v in os.environ.items() if k != cc.TOKEN_ENV}
        self.t0 = time.perf_counter()
        self.km.start_kernel(env=env)
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=120)

    def first_count(self, timeout: float = 300) -> tuple[float, str]:
        outs = []
        reply = self.kc.execute_interactive(
            CODE, timeout=timeout, store_history=False,
            output_hook=lambda m: outs.append(m))
        elapsed = time.perf_counter() - self.t0
        if reply["content"]["status"] != "ok":
            errs = [f"{m['content']['ename']}: {m['content']['evalue']}" for m in outs
                    if m["msg_type"] == "error"]
            raise RuntimeError(f"{CODE} failed: {errs}")
        text = "".join(m["content"]["data"].get("text/plain", "") for m in outs
                       if m["msg_type"] == "execute_result")
        return elapsed, text

    def _tree(self) -> list[psutil.Process]:
        p = psutil.Process(self.km.provisioner.process.pid)
        return [p, *p.children(recursive=True)]

    def rss_mb(self) -> float:
        total = 0
        for q in self._tree():
            try:
                total += q.memory_info().rss
            except psutil.Error:
                pass
        return total / 2**20

    def cpu_s(self) -> float:
        """CPU seconds (user + system) the kernel and its children used so far: a figure that
        depends less on how busy the machine is than the wall-clock time."""
        total = 0.0
        for q in self._tree():
            try:
                t = q.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
        return total

    def stop(self):
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


def measure(prefix: Path, name: str, runs: int) -> dict:
    """A first kernel stays up (so every measured one is an *extra* kernel), then ``runs``
    measured kernels one after the other."""
    first = Kernel(prefix, name)
    warm_s, text = first.first_count()
    assert text == "1000", text
    times, rss, cpu = [], [], []
    try:
        for i in range(runs):
            k = Kernel(prefix, name)
            try:
                t, text = k.first_count()
                assert text == "1000", text
                c = k.cpu_s()
                time.sleep(0.5)
                m = k.rss_mb()
            finally:
                k.stop()
            times.append(t)
            rss.append(m)
            cpu.append(c)
            print(f"  {name:8s} run {i + 1}: {t:6.2f} s, {m:6.0f} MB, kernel CPU {c:5.2f} s",
                  flush=True)
    finally:
        first.stop()
    return {"first_kernel_s": warm_s, "times_s": times, "rss_mb": rss, "kernel_cpu_s": cpu,
            "median_s": statistics.median(times), "median_rss_mb": statistics.median(rss),
            "median_kernel_cpu_s": statistics.median(cpu)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--only", choices=["connect", "classic"], default=None,
                    help="measure one kind only (no ratios; for development)")
    args = ap.parse_args()
    runs = max(5, args.runs)

    tmp = Path(tempfile.mkdtemp(prefix="bench-connect-"))
    os.environ["JUPYTER_RUNTIME_DIR"] = str(tmp / "runtime")
    cluster = LocalCluster(tmp / "cluster")
    results: dict = {"runs": runs, "machine": {"cpus": os.cpu_count(),
                                               "python": platform.python_version(),
                                               "loadavg_1m_start": os.getloadavg()[0]}}
    try:
        t = time.perf_counter()
        # 3 scheduling slots (1 core each): the Connect server's executor, the first classic
        # kernel's and the measured (extra) classic kernel's
        state = cluster.start(workers=1, worker_cores=3, worker_memory="3g", connect=True,
                              connect_options={"driver_memory": "512m",
                                               "conf": {"spark.cores.max": "1",
                                                        "spark.executor.memory": "512m"}})
        results["cluster_and_connect_start_s"] = time.perf_counter() - t
        crec = state["connect"]
        results["connect_server_rss_mb"] = sum(
            q.memory_info().rss for q in [psutil.Process(crec["pid"]),
                                          *psutil.Process(crec["pid"]).children(recursive=True)]
        ) / 2**20
        prefix = tmp / "kernels"
        install(prefix, "bench-connect", ["--connect", crec["url"],
                                          "--connect-token-file", crec["token_file"]])
        if args.only != "connect":
            install(prefix, "bench-classic", ["--master", state["master_url"], "--cores-max", "1",
                                              "--executor-memory", "512m", "--driver-memory", "512m"])
        print(f"cluster + Connect server ready in {results['cluster_and_connect_start_s']:.1f} s "
              f"(Connect server RSS {results['connect_server_rss_mb']:.0f} MB)", flush=True)
        for kind in ("connect", "classic"):
            if args.only in (None, kind):
                results[kind] = measure(prefix, f"bench-{kind}", runs)
    finally:
        cluster.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    if args.only:
        print(json.dumps(results, indent=2))
        return 0

    results["machine"]["loadavg_1m_end"] = os.getloadavg()[0]
    con, cla = results["connect"], results["classic"]
    speedup = cla["median_s"] / con["median_s"]
    mem_ratio = con["median_rss_mb"] / cla["median_rss_mb"]
    results["speedup"] = speedup
    results["memory_ratio"] = mem_ratio
    results["targets"] = {
        "connect_median_le_2.5s": con["median_s"] <= 2.5,
        "speedup_ge_5x": speedup >= 5.0,
        "memory_ratio_le_0.35": mem_ratio <= 0.35,
    }
    out = REPO / "bench" / "results" / "bench_connect_vs_classic.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))

    print()
    print(f"kernel start -> first {CODE}  (medians of {runs}; a first kernel of the same kind running)")
    print(f"{'kernel':10s} {'median s':>9s} {'min s':>7s} {'max s':>7s} {'RSS MB/extra kernel':>20s} "
          f"{'kernel CPU s':>13s}")
    for name, r in (("connect", con), ("classic", cla)):
        print(f"{name:10s} {r['median_s']:9.2f} {min(r['times_s']):7.2f} {max(r['times_s']):7.2f} "
              f"{r['median_rss_mb']:20.0f} {r['median_kernel_cpu_s']:13.2f}")
    print(f"speedup classic/connect: {speedup:.1f}x (target >= 5x)   "
          f"memory connect/classic: {mem_ratio:.2f} (target <= 0.35)   "
          f"connect median target <= 2.5 s: {'met' if con['median_s'] <= 2.5 else 'NOT met'}")
    print(f"Connect server (once per user): RSS {results['connect_server_rss_mb']:.0f} MB; "
          f"load average {results['machine']['loadavg_1m_start']:.1f} -> "
          f"{results['machine']['loadavg_1m_end']:.1f} on {os.cpu_count()} CPUs")
    print(f"results: {out.relative_to(REPO)}")
    return 0 if all(results["targets"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
