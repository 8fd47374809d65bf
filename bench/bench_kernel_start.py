#!/usr/bin/env python
"""Kernel start latency: the lazy PySpark kernel against an eager baseline, in one run.

Both kernels are the same kernelspec (written by ``install_kernelspec``) on the same local
Spark cluster (master + 2 workers x 1 core x 1g, started here and stopped at the end):

* lazy  -- the kernel as shipped: the SparkSession is created in a background thread while
  the kernel already answers requests;
* eager -- the same kernel with ``SPARK_OPENSTACK_EAGER=1``: it creates the SparkSession
  (same code) during its start-up, once the shell exists, and serves no request before it
  is there -- what the classic recipe does (``PYTHONSTARTUP=$SPARK_HOME/python/pyspark/shell.py``
  in kernel.json).

Each run, from ``KernelManager.start_kernel()``: time to the result of ``1+1`` (the client
waits for the kernel to be ready, then sends ``1+1``), then time to the result of
``sc.parallelize(range(1000)).sum()`` (checked == 499500) sent right after. Runs alternate
lazy/eager/plain; ``--runs`` of each (default 5). "plain" is ipykernel's own ``python3``
kernel (``1+1`` only): the floor any IPython kernel pays on this machine at this moment, so a
loaded machine shows as such. Medians and the lazy/eager ratios are printed.
Targets (issue 2): first ``1+1`` median <= 1.5 s (lazy); first Spark job lazy <= eager.

Usage: .venv/bin/python bench/bench_kernel_start.py [--runs 5]
Results: bench/results/kernel_start.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402
from jupyter_client.manager import KernelManager  # noqa: E402

from jupyter_spark_openstack.core.kernelspec import install_kernelspec  # noqa: E402
from jupyter_spark_openstack.core.localcluster import LocalCluster  # noqa: E402
from jupyter_spark_openstack.core.models import KernelSettings  # noqa: E402
from jupyter_spark_openstack.core.spark.master_client import fetch_master_state  # noqa: E402

JOB = "sc.parallelize(range(1000)).sum()"


def run_plain(tmp: Path) -> dict:
    """ipykernel's own python3 kernel: start -> 1+1."""
    kid = str(uuid.uuid4())
    km = KernelManager(kernel_name="python3", kernel_spec_manager=KernelSpecManager(kernel_dirs=[]),
                       connection_file=str(tmp / f"kernel-{kid}.json"))
    t0 = time.monotonic()
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=120)
        t_ready = time.monotonic() - t0
        reply = kc.execute_interactive("1+1", timeout=120, output_hook=lambda m: None)
        t_first = time.monotonic() - t0
        assert reply["content"]["status"] == "ok"
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)
        km.cleanup_resources()
    return {"kind": "plain", "ready_s": t_ready, "first_1plus1_s": t_first, "first_job_s": None}


def run_once(tmp: Path, kdir: Path, eager: bool) -> dict:
    kid = str(uuid.uuid4())
    km = KernelManager(kernel_name="pyspark-bench",
                       kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kdir)]),
                       connection_file=str(tmp / f"kernel-{kid}.json"))
    # a generous start timeout: on a shared, loaded machine a driver JVM may need minutes
    env = {**os.environ, "SPARK_OPENSTACK_KERNEL_LOG_DIR": str(tmp / "logs"),
           "SPARK_OPENSTACK_START_TIMEOUT": "300"}
    if eager:
        env["SPARK_OPENSTACK_EAGER"] = "1"
    t0 = time.monotonic()
    km.start_kernel(env=env)
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=400)
        t_ready = time.monotonic() - t0
        results = {}

        def hook(msg):
            if msg["msg_type"] == "execute_result":
                results["value"] = msg["content"]["data"]["text/plain"]

        reply = kc.execute_interactive("1+1", timeout=300, output_hook=hook)
        t_first = time.monotonic() - t0
        assert reply["content"]["status"] == "ok" and results["value"] == "2", reply
        reply = kc.execute_interactive(JOB, timeout=400, output_hook=hook)
        t_job = time.monotonic() - t0
        if reply["content"]["status"] != "ok" or results.get("value") != "499500":
            log = tmp / "logs" / f"kernel-{kid}.log"
            lines = [ln for ln in log.read_text().splitlines() if "jvm | \tat " not in ln]
            raise SystemExit(f"Spark job failed: {reply['content'].get('evalue')}\n"
                             + "\n".join(lines[-40:]))
        # how long the SparkSession itself took, as the kernel measured it
        kc.execute_interactive("__import__('jupyter_spark_openstack.kernel').kernel"
                               ".session_status()['elapsed']", timeout=60, output_hook=hook)
        session_s = float(results["value"])
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)
        km.cleanup_resources()
    return {"kind": "eager" if eager else "lazy", "ready_s": t_ready, "first_1plus1_s": t_first,
            "first_job_s": t_job, "session_s": session_s, "load1": os.getloadavg()[0]}


def wait_cluster_idle(webui: str, timeout: float = 60) -> None:
    """Next run starts only when the previous app has released its cores."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = fetch_master_state(webui)
        if st.reachable and not st.active_apps and st.cores_used == 0:
            return
        time.sleep(0.5)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="runs of each kind (>= 5 for the figures)")
    args = ap.parse_args()
    # Ctrl-C / kill: leave through the finally below (the cluster is stopped, tmp removed).
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
    stop = {"flag": False}

    def on_sigint(*_a):
        stop["flag"] = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)
    tmp = Path(tempfile.mkdtemp(prefix="bench-kernel-start-"))
    cluster = LocalCluster(tmp / "cluster")
    rows: list[dict] = []
    try:
        t = time.monotonic()
        state = cluster.start(workers=2, worker_cores=1, worker_memory="1g")
        print(f"local cluster {state['master_url']} up in {time.monotonic() - t:.1f} s", flush=True)
        settings = KernelSettings.parse(master=state["master_url"], name="pyspark-bench",
                                        executor_memory="512m", cores_max=2)
        kdir = install_kernelspec(settings, prefix=tmp / "prefix").parent
        for i in range(args.runs):
            for eager in (False, True):
                if stop["flag"]:
                    raise KeyboardInterrupt
                wait_cluster_idle(state["webui_url"])
                r = run_once(tmp, kdir, eager)
                rows.append(r)
                print(f"run {i + 1} {r['kind']:5s}  ready {r['ready_s']:6.2f} s  "
                      f"1+1 {r['first_1plus1_s']:6.2f} s  first job {r['first_job_s']:6.2f} s  "
                      f"(session {r['session_s']:5.1f} s, load {r['load1']:.1f})", flush=True)
            r = run_plain(tmp)
            rows.append(r)
            print(f"run {i + 1} plain  ready {r['ready_s']:6.2f} s  1+1 {r['first_1plus1_s']:6.2f} s",
                  flush=True)
    finally:
        cluster.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    def med(kind: str, key: str) -> float:
        return statistics.median(r[key] for r in rows if r["kind"] == kind)

    summary = {k: {m: med(k, m) for m in ("ready_s", "first_1plus1_s", "first_job_s", "session_s")}
               for k in ("lazy", "eager")}
    summary["plain_ipykernel"] = {m: med("plain", m) for m in ("ready_s", "first_1plus1_s")}
    ratios = {m: summary["lazy"][m] / summary["eager"][m]
              for m in ("first_1plus1_s", "first_job_s")}
    targets = {"lazy_first_1plus1_le_1.5s": summary["lazy"]["first_1plus1_s"] <= 1.5,
               "lazy_first_job_le_eager": summary["lazy"]["first_job_s"] <= summary["eager"]["first_job_s"]}
    print()
    print(f"{'median over ' + str(args.runs) + ' runs':24s} {'lazy':>9s} {'eager':>9s} {'lazy/eager':>11s}")
    for m, label in (("first_1plus1_s", "start -> 1+1 result"), ("first_job_s", "start -> first Spark job")):
        print(f"{label:24s} {summary['lazy'][m]:8.2f}s {summary['eager'][m]:8.2f}s {ratios[m]:10.2f}x")
    print(f"{'plain ipykernel 1+1':24s} {summary['plain_ipykernel']['first_1plus1_s']:8.2f}s "
          "(floor of any IPython kernel here, same run)")
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"targets: first 1+1 <= 1.5 s: {'PASS' if targets['lazy_first_1plus1_le_1.5s'] else 'FAIL'}; "
          f"first job lazy <= eager: {'PASS' if targets['lazy_first_job_le_eager'] else 'FAIL'}")
    out = REPO / "bench" / "results" / "kernel_start.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "benchmark": "kernel_start", "runs": args.runs, "job": JOB,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "loadavg_at_end": os.getloadavg()},
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "medians_s": summary, "ratios_lazy_over_eager": ratios, "targets_met": targets,
        "runs_detail": rows}, indent=2) + "\n")
    print(f"results: {out}")
    return 0 if all(targets.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
