#!/usr/bin/env python
"""The live progress display's cost: a 200-task job with progress on vs off, in one run.

One local cluster (one worker; 2 executor cores for each application) with a Spark Connect
server. For each kernel kind
(Connect, classic) two kernels run side by side from the same kernelspec, one with
``SPARK_OPENSTACK_PROGRESS=1`` (the default) and one with ``=0``; each is warmed with three
jobs, then the 200-task job runs ``--runs`` times in each, alternating which goes first. Figures: the median
wall time of ``execute`` (request to reply, as a notebook sees it) on and off, their ratio
(target <= 1.03), and, from the display messages themselves, how often the display moved while
tasks ran (the median and the largest gap between two updates; the display should move at least
every second).

Usage: .venv/bin/python bench/bench_progress.py [--runs 15]
Results: bench/results/progress_overhead.json
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

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from jupyter_spark_openstack.core.localcluster import LocalCluster  # noqa: E402
from jupyter_spark_openstack.core.spark import connect as cc  # noqa: E402
from jupyter_spark_openstack.kernel.progress import ENV_PROGRESS, MIME  # noqa: E402

CLI = [sys.executable, "-m", "jupyter_spark_openstack.cli"]
TASKS = 200
#: jobs run in each kernel before measuring: the first few are much slower (JIT, executors)
WARM_UP = 3
#: JVM work on the executors, a few tens of ms per task; the same DataFrame code in both kernels
JOB = (f"spark.range(0, {TASKS} * 400000, 1, {TASKS})"
       ".selectExpr('sum(crc32(cast(id as string))) AS s').collect()[0][0]")
JOBS = {"connect": JOB, "classic": JOB}


def install(prefix: Path, name: str, args: list[str]) -> None:
    res = subprocess.run([*CLI, "kernel", "install", "--name", name, "--prefix", str(prefix),
                          *args], capture_output=True, text=True, timeout=60)
    if res.returncode != 0:
        raise SystemExit(f"kernel install failed: {res.stderr}")


class Kernel:
    def __init__(self, prefix: Path, name: str, progress: bool):
        from jupyter_client.kernelspec import KernelSpecManager
        from jupyter_client.manager import KernelManager

        ksm = KernelSpecManager(kernel_dirs=[str(prefix / "share" / "jupyter" / "kernels")])
        self.km = KernelManager(kernel_name=name, kernel_spec_manager=ksm)
        env = {k: v for k, v in os.environ.items() if k != cc.TOKEN_ENV}
        env[ENV_PROGRESS] = "1" if progress else "0"
        self.km.start_kernel(env=env)
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=120)

    def run(self, code: str) -> tuple[float, list[tuple[float, dict]]]:
        """Wall seconds of one execute, and ``[(arrival, payload)]`` of its progress display."""
        shown: list[tuple[float, dict]] = []
        result: list[str] = []

        def hook(msg):
            now = time.perf_counter()
            data = msg["content"].get("data") or {}
            if MIME in data:
                shown.append((now, data[MIME]))
            elif msg["msg_type"] == "execute_result":
                result.append(data.get("text/plain", ""))

        t0 = time.perf_counter()
        reply = self.kc.execute_interactive(code, timeout=600, store_history=False,
                                            output_hook=hook)
        wall = time.perf_counter() - t0
        if reply["content"]["status"] != "ok" or not result:
            raise SystemExit(f"the job failed: {reply['content']}")
        return wall, shown

    def stop(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


def gaps(shown: list[tuple[float, dict]]) -> list[float]:
    """Seconds between two display updates while tasks were running."""
    live = [t for t, p in shown if not p["done"]
            and any(0 < op["completed"] < op["tasks"] for op in p["operations"])]
    return [b - a for a, b in zip(live, live[1:], strict=False)]


def measure(prefix: Path, kind: str, runs: int) -> dict:
    on, off = Kernel(prefix, f"bench-{kind}", True), Kernel(prefix, f"bench-{kind}", False)
    try:
        for _ in range(WARM_UP):   # session, executors and the JIT warm up in both first
            for k in (on, off):
                k.run(JOBS[kind])
        walls = {"on": [], "off": []}
        all_gaps: list[float] = []
        updates = []
        for r in range(runs):
            for name, k in (("on", on), ("off", off)) if r % 2 == 0 else (("off", off), ("on", on)):
                wall, shown = k.run(JOBS[kind])
                walls[name].append(wall)
                if name == "on":
                    if not shown or not shown[-1][1]["done"]:
                        raise SystemExit(f"{kind}: no progress display with progress on")
                    all_gaps += gaps(shown)
                    updates.append(len(shown))
                elif shown:
                    raise SystemExit(f"{kind}: a progress display with progress off")
            print(f"{kind:8s} round {r + 1}: on {walls['on'][-1]:.2f} s, off {walls['off'][-1]:.2f} s",
                  flush=True)
    finally:
        on.stop()
        off.stop()
    med_on, med_off = statistics.median(walls["on"]), statistics.median(walls["off"])
    return {"wall_s": walls, "median_on_s": med_on, "median_off_s": med_off,
            "ratio_on_over_off": med_on / med_off,
            "display_messages_per_job": updates,
            "update_gap_while_running_s": {"median": statistics.median(all_gaps) if all_gaps else None,
                                           "max": max(all_gaps) if all_gaps else None,
                                           "n": len(all_gaps)}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    runs = max(5, args.runs)
    tmp = Path(tempfile.mkdtemp(prefix="bench-progress-"))
    os.environ["JUPYTER_RUNTIME_DIR"] = str(tmp / "runtime")
    cluster = LocalCluster(tmp / "cluster")
    results: dict = {"benchmark": "progress_overhead",
                     "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                     "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                 "loadavg_start": os.getloadavg()},
                     "setup": {"tasks": TASKS, "runs": runs, "warm_up_jobs": WARM_UP, "jobs": JOBS,
                               "cluster": "1 worker with 6 slots on the machine's CPUs; the "
                                          "Connect server and each classic kernel with "
                                          "spark.cores.max=2 (one job runs at a time)"}}
    t_all = time.perf_counter()
    try:
        # 6 scheduling slots on the 2 CPUs: each application (the Connect server, the classic
        # "on" and "off" kernels) keeps its 2 executors' slots; one job runs at a time
        state = cluster.start(workers=1, worker_cores=6, worker_memory="4g", connect=True,
                              connect_options={"driver_memory": "768m",
                                               "conf": {"spark.cores.max": "2",
                                                        "spark.executor.memory": "768m"}})
        crec = state["connect"]
        prefix = tmp / "kernels"
        install(prefix, "bench-connect", ["--connect", crec["url"],
                                          "--connect-token-file", crec["token_file"]])
        install(prefix, "bench-classic", ["--master", state["master_url"], "--cores-max", "2",
                                          "--executor-memory", "768m", "--driver-memory", "768m"])
        for kind in ("connect", "classic"):
            results[kind] = measure(prefix, kind, runs)
    finally:
        cluster.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    results["machine"]["loadavg_end"] = os.getloadavg()
    results["total_s"] = time.perf_counter() - t_all
    results["targets"] = {"ratio_on_over_off": "<= 1.03", "update_gap_while_running_s_max": "<= 1.0"}
    out = REPO / "bench" / "results" / "progress_overhead.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print()
    print(f"a {TASKS}-task job, progress on vs off (medians of {runs})")
    for kind in ("connect", "classic"):
        r = results[kind]
        g = r["update_gap_while_running_s"]
        every = (f"every {g['median']:.2f} s median, {g['max']:.2f} s at most" if g["n"]
                 else "no two updates while tasks ran")
        print(f"{kind:8s} on {r['median_on_s']:.2f} s  off {r['median_off_s']:.2f} s  "
              f"ratio {r['ratio_on_over_off']:.3f} (target <= 1.03)  display updates: {every}")
    print(f"results: {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
