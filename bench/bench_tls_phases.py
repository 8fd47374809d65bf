#!/usr/bin/env python
"""Where a Connect kernel's start-to-result time goes: over TLS to her head vs on the hub host.

The emulator in container mode (real machines, real cloud-init) runs two clusters of one
worker each: head placement ``hub`` (her master and Connect server on this host, the kernel
reaches it over loopback) and ``cluster`` (both on a head machine, reached over the tenant
network through HAProxy's TLS, verified against the cluster's CA). A fresh Python process, as a
kernel would, then times each phase: importing PySpark's Connect client, the probe RPC (TLS
handshake included), creating the session, and three ``spark.range(1000).count()`` jobs;
``--runs`` rounds alternate the two placements. Figures: the median of each phase per placement
and their ratio. This explains ``head_placement``'s kernel-start ratio: the phases that differ.

Usage: .venv/bin/python bench/bench_tls_phases.py [--runs 5]   (root; machines need systemd-nspawn)
Results: bench/results/tls_phases.json
"""
import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from jupyter_spark_openstack.core.cluster import ClusterConfig, SparkCluster  # noqa: E402
from jupyter_spark_openstack.core.options import OptionsSchema  # noqa: E402
from jupyter_spark_openstack.core.provisioners.openstack import OpenStackProvisioner  # noqa: E402
from jupyter_spark_openstack.testing.emulator import Emulator  # noqa: E402
from tests._machines import machines_provisioner_config  # noqa: E402

PHASES = textwrap.dedent("""
    import json, sys, time
    t0 = time.perf_counter(); T = {}
    from jupyter_spark_openstack.core.spark import connect as cc
    from pyspark.sql.connect.session import SparkSession
    T["import"] = time.perf_counter() - t0
    url, token_file, ca_file, name = sys.argv[1:5]
    tls = {"ca_pem": open(ca_file, "rb").read(), "server_name": name} if ca_file != "-" else {}
    tok = cc.read_token_file(token_file)
    t = time.perf_counter(); cc.probe(url, tok, **tls); T["probe"] = time.perf_counter() - t
    t = time.perf_counter()
    spark = SparkSession.builder.channelBuilder(cc.channel_builder(url, tok, **tls)).create()
    spark.version; T["session"] = time.perf_counter() - t
    for i in range(3):
        t = time.perf_counter(); n = spark.range(1000).count(); T[f"count{i}"] = time.perf_counter() - t
    T["total"] = time.perf_counter() - t0
    print(json.dumps(T))
""")

async def main(runs: int) -> dict:
    d = Path(tempfile.mkdtemp(prefix="bench-tls-phases-"))
    emu = Emulator(boot_delay=0.3, boot_backend="container", run_dir=d / "emu").start()
    out: dict = {}
    try:
        prov = OpenStackProvisioner(machines_provisioner_config(
            emu, d, security_groups=[],
            install={"mode": "preinstalled", "spark_home": "/opt/spark",
                     "java_home": "/usr/lib/jvm/java-17-openjdk-amd64"}))
        sizes = [{"name": "small", "cores": 1, "memory": "1g"}]
        clusters = {}
        try:
            for placement in ("hub", "cluster"):
                cfg = ClusterConfig(hub_id="tls" + placement, master_host=emu.hub_address,
                                    start_timeout=600, head_placement=placement,
                                    base_dir=str(d / "c"))
                c = SparkCluster.new(cfg, prov, owner="u" + placement, run_dir=d / "c" / placement,
                                     options=OptionsSchema(sizes=sizes).parse({"workers": 1, "size": "small"}))
                clusters[placement] = c
                t = time.monotonic()
                await c.start()
                print(f"{placement:7s} cluster ready in {time.monotonic() - t:.1f} s", flush=True)
            raw: dict = {"hub": [], "cluster": []}
            for _ in range(runs):
                for placement, c in clusters.items():
                    s = c.state.connect
                    args = [s.url, s.token_file, s.ca_file or "-", s.server_name or "-"]
                    res = subprocess.run([sys.executable, "-c", PHASES, *args], capture_output=True,
                                         text=True, timeout=300)
                    if res.returncode:
                        raise SystemExit(res.stderr[-2000:])
                    t = json.loads(res.stdout.strip().splitlines()[-1])
                    raw[placement].append(t)
                    print(f"{placement:7s} " + "  ".join(f"{k} {v:.3f}" for k, v in t.items()), flush=True)
        finally:
            for c in clusters.values():
                await c.stop()
            await prov.close()
    finally:
        emu.stop()
        shutil.rmtree(d, ignore_errors=True)
    phases = list(raw["hub"][0])
    med = {p: {k: statistics.median(x[k] for x in raw[p]) for k in phases} for p in raw}
    out["median_s"] = med
    out["ratio_cluster_tls_over_hub_loopback"] = {k: med["cluster"][k] / med["hub"][k] for k in phases}
    out["difference_s"] = {k: med["cluster"][k] - med["hub"][k] for k in phases}
    out["raw"] = raw
    return out


def cli() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    runs = max(5, args.runs)
    t0 = time.monotonic()
    results = {"benchmark": "tls_phases", "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                           "loadavg_start": os.getloadavg()},
               "setup": {"runs": runs, "workers": 1, "worker": "1 core, 1g",
                         "job": "spark.range(1000).count(), three times in one session",
                         "emulator": "container mode (real machines, real cloud-init)"}}
    results.update(asyncio.run(main(runs)))
    results["machine"]["loadavg_end"] = os.getloadavg()
    results["total_s"] = time.monotonic() - t0
    path = REPO / "bench" / "results" / "tls_phases.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print()
    print(f"{'phase':8s} {'hub (loopback) s':>17s} {'cluster (TLS) s':>16s} {'ratio':>6s} {'difference s':>13s}")
    for k in results["median_s"]["hub"]:
        h, c = results["median_s"]["hub"][k], results["median_s"]["cluster"][k]
        print(f"{k:8s} {h:17.3f} {c:16.3f} {c / h:6.2f} {c - h:13.3f}")
    print(f"results: {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(cli())
