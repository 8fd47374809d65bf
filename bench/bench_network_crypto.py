#!/usr/bin/env python
"""Cost of Spark's RPC/shuffle encryption on a shuffle-heavy job, against no encryption, in one run.

One local standalone cluster (master + 2 workers x 1 core x 1g, ``spark.authenticate`` with a
fresh secret; started here, stopped at the end) serves every run. Each run is a fresh driver
process (a classic PySpark ``SparkSession`` in a subprocess, so the two settings never share a
JVM) with ``spark.authenticate=true`` + the secret and ``spark.network.crypto.enabled`` true
("on") or false ("off"); executors take the driver's conf, so driver <-> executor RPC and
executor <-> executor shuffle fetches are AES-encrypted when it is on. (The cluster's own
daemons run without it: the driver -> master and executor -> worker control connections fall
back to SASL, authenticated but not encrypted, as ``spark.network.crypto.saslFallback``
allows by default.) ``spark.shuffle.readHostLocalDisk=false`` in both: the two executors
share this host, and Spark would otherwise read the other executor's shuffle files straight
from disk instead of fetching them over the (encrypted) network -- on a real cluster they are
on different VMs.

In each driver: wait for both executors, a warm-up run of the same job on 1/10 of the rows,
then the timed job (only it is timed):

    spark.range(0, ROWS, numPartitions=8)
         .selectExpr("id % 1000 as k", "sha2(cast(id as string), 512) as v")
         .repartition(16, "k").groupBy("k").agg(count("*"), sum(length("v"))).collect()

``v`` is 128 hex characters that lz4 (the shuffle codec) can hardly compress, so the shuffle
carries what it says; the result is checked (1000 groups, ROWS/1000 rows and 128 * ROWS/1000
characters each). From the driver's REST API: the shuffle bytes written / read / fetched
remotely and the task CPU time of the timed job's stages, and ``spark.network.crypto.enabled``
from the app's environment; from the executor processes (psutil): the crypto setting on their
command lines and the CPU time of all their threads during the timed job (the AES work is done
in Netty's network threads, which the task CPU time leaves out). Any mismatch fails the
benchmark, and so does the secret on any process's command line or a JVM left behind.

Runs alternate off/on in ABBA order (off,on / on,off / ...), ``--pairs`` pairs (default 5).
Reported: median job time of each setting, the ratio on/off of the medians (the figure), the
median of the per-pair ratios, the same ratios for the executors' process CPU time (less
sensitive to other load than wall time), and the load average: the
machine is shared, so absolute times are noisy; the ratio within one run is what counts.

Usage: .venv/bin/python bench/bench_network_crypto.py [--pairs 5] [--rows 1000000]
Results: bench/results/network_crypto.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from jupyter_spark_openstack.core.localcluster import LocalCluster  # noqa: E402
from jupyter_spark_openstack.core.spark.home import find_spark_home  # noqa: E402
from jupyter_spark_openstack.core.spark.master_client import fetch_master_state  # noqa: E402

ROWS = 1_000_000
GROUPS = 1000
PAYLOAD_CHARS = 128  # sha2(..., 512) in hex
JOB = ('spark.range(0, ROWS, numPartitions=8)'
       '.selectExpr("id % 1000 as k", "sha2(cast(id as string), 512) as v")'
       '.repartition(16, "k").groupBy("k").agg(count("*"), sum(length("v"))).collect()')
MARK = "BENCH_RESULT "

# The driver: its settings come as JSON on stdin; the secret comes in a 0600 properties file
# (PYSPARK_SUBMIT_ARGS --properties-file), never on a command line: builder .config() values
# become `spark-submit --conf k=v` arguments, visible to anyone running `ps`.
DRIVER = textwrap.dedent(r'''
    import json, os, sys, time, urllib.request
    import psutil
    cfg = json.loads(sys.stdin.read())
    t_start = time.perf_counter()
    from pyspark.sql import SparkSession
    from pyspark.sql.functions import count, length, sum as sum_

    crypto = "true" if cfg["crypto"] else "false"
    b = (SparkSession.builder.master(cfg["master"]).appName(cfg["app_name"])
         .config("spark.authenticate", "true")
         .config("spark.network.crypto.enabled", crypto)
         .config("spark.driver.host", "127.0.0.1").config("spark.driver.bindAddress", "127.0.0.1")
         .config("spark.driver.memory", "512m")
         .config("spark.executor.memory", "512m").config("spark.executor.cores", "1")
         .config("spark.cores.max", "2")
         .config("spark.ui.port", "0")           # a free port: the REST API is read below
         .config("spark.shuffle.readHostLocalDisk", "false")
         .config("spark.local.dir", cfg["local_dir"]))
    spark = b.getOrCreate()
    sc = spark.sparkContext
    app_id = sc.applicationId
    deadline = time.time() + 180
    while sc._jsc.sc().getExecutorMemoryStatus().size() - 1 < 2:
        if time.time() > deadline:
            sys.exit("fewer than 2 executors registered within 180 s")
        time.sleep(0.2)
    session_s = time.perf_counter() - t_start

    def job(n):
        return (spark.range(0, n, numPartitions=8)
                .selectExpr("id % 1000 as k", "sha2(cast(id as string), 512) as v")
                .repartition(16, "k").groupBy("k").agg(count("*").alias("c"),
                                                       sum_(length("v")).alias("l")))

    def check(rows, n):
        per = n // 1000
        bad = [r for r in rows if r["c"] != per or r["l"] != per * 128]
        if len(rows) != 1000 or len({r["k"] for r in rows}) != 1000 or bad:
            sys.exit(f"WRONG RESULT for {n} rows: {len(rows)} groups, e.g. {bad[:3]}")

    n_warm = cfg["rows"] // 10
    t = time.perf_counter()
    check(job(n_warm).collect(), n_warm)
    warmup_s = time.perf_counter() - t

    # what the executors were started with (the crypto settings are executor start-up conf)
    # ... and that no process shows the secret on its command line
    secret = dict(ln.split("=", 1) for ln in open(cfg["props"]).read().splitlines())[
        "spark.authenticate.secret"]
    executors, secret_shown, procs = [], [], []
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info["cmdline"] or []
        if any(secret in a for a in cmd):
            secret_shown.append(p.pid)
        if "org.apache.spark.executor.CoarseGrainedExecutorBackend" in cmd and app_id in cmd:
            flags = [a for a in cmd if a.startswith("-Dspark.network.crypto.")]
            executors.append({"pid": p.pid, "crypto_flags": flags})
            procs.append(p)

    def exec_cpu():
        return sum(sum(p.cpu_times()[:2]) for p in procs)

    sc.setJobGroup("timed", "the timed shuffle job")
    cpu0 = exec_cpu()
    t = time.perf_counter()
    rows = job(cfg["rows"]).collect()
    job_s = time.perf_counter() - t
    # all the executor JVMs' threads (tasks, Netty's network threads where the AES work is
    # done, GC), unlike executorCpuTime below (task threads only)
    exec_process_cpu_s = exec_cpu() - cpu0
    sc.setJobGroup("after", "not timed")
    check(rows, cfg["rows"])

    def get(path):
        with urllib.request.urlopen(f"{sc.uiWebUrl}/api/v1/applications/{app_id}{path}",
                                    timeout=30) as r:
            return json.loads(r.read())

    env = dict(get("/environment")["sparkProperties"])
    # the listener behind the REST API is asynchronous: wait until the timed stages are complete
    deadline = time.time() + 60
    while True:
        jobs = [j for j in get("/jobs") if j.get("jobGroup") == "timed"]
        stages = [a for sid in sorted({s for j in jobs for s in j["stageIds"]})
                  for a in get(f"/stages/{sid}")]
        done = [s for s in stages if s["status"] == "COMPLETE"]
        if (jobs and all(j["status"] == "SUCCEEDED" for j in jobs) and done
                and all(s["status"] in ("COMPLETE", "SKIPPED") for s in stages)):
            break
        if time.time() > deadline:
            sys.exit(f"timed job's stages not complete in the REST API: {[(s['stageId'], s['status']) for s in stages]}")
        time.sleep(0.5)
    tot = lambda key: sum(s.get(key, 0) for s in done)

    out = {"app_id": app_id, "spark_version": spark.version, "session_s": session_s,
           "warmup_s": warmup_s, "warmup_rows": n_warm, "job_s": job_s,
           "env_network_crypto_enabled": env.get("spark.network.crypto.enabled"),
           "env_authenticate": env.get("spark.authenticate"),
           "env_secret_set": "spark.authenticate.secret" in env,  # the value is redacted
           "env_read_host_local_disk": env.get("spark.shuffle.readHostLocalDisk"),
           "executors": executors, "secret_on_a_command_line": secret_shown,
           "stages": [{"stage_id": s["stageId"], "tasks": s["numCompleteTasks"],
                       "shuffle_write_bytes": s["shuffleWriteBytes"],
                       "shuffle_read_bytes": s["shuffleReadBytes"]} for s in done],
           "shuffle_write_bytes": tot("shuffleWriteBytes"),
           "shuffle_read_bytes": tot("shuffleReadBytes"),
           "shuffle_remote_bytes_read": tot("shuffleRemoteBytesRead"),
           "shuffle_local_bytes_read": tot("shuffleLocalBytesRead"),
           "executor_run_s": tot("executorRunTime") / 1e3,
           "executor_task_cpu_s": tot("executorCpuTime") / 1e9,
           "executor_process_cpu_s": exec_process_cpu_s}
    spark.stop()
    print("BENCH_RESULT " + json.dumps(out), flush=True)
''')


def run_driver(tmp: Path, master: str, secret: str, crypto: bool, rows: int, name: str) -> dict:
    """One fresh driver process; returns what it measured (+ its wall time and the load)."""
    local_dir = tmp / "driver-local" / name
    local_dir.mkdir(parents=True)
    conf_dir = tmp / "driver-conf"  # empty: no global spark-defaults.conf
    conf_dir.mkdir(exist_ok=True)
    props = local_dir / "driver.properties"
    fd = os.open(props, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"spark.authenticate=true\nspark.authenticate.secret={secret}\n")
    env = dict(os.environ)
    env.update({"PYSPARK_SUBMIT_ARGS": f"--properties-file {props} pyspark-shell",
                "SPARK_HOME": find_spark_home(),  # the Spark the cluster runs
                "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_CONF_DIR": str(conf_dir),
                "PYSPARK_PYTHON": sys.executable})
    cfg = {"master": master, "crypto": crypto, "rows": rows,
           "app_name": name, "local_dir": str(local_dir), "props": str(props)}
    load_before = os.getloadavg()[0]
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", DRIVER], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True, cwd=str(local_dir))
    try:
        out, err = proc.communicate(json.dumps(cfg), timeout=600)
    except BaseException:
        # the driver's process group: python + its JVM
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        raise
    wall = time.perf_counter() - t
    lines = [ln for ln in out.splitlines() if ln.startswith(MARK)]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"driver {name} failed (rc {proc.returncode}):\n{out[-2000:]}\n"
                         f"{err[-4000:]}")
    r = json.loads(lines[-1][len(MARK):])
    r.update({"name": name, "crypto": crypto, "driver_process_s": wall,
              "load1_before": load_before, "load1_after": os.getloadavg()[0]})
    verify(r)
    return r


def verify(r: dict) -> None:
    """Fail loudly unless the run really had the setting it claims."""
    want = "true" if r["crypto"] else "false"
    problems = []
    if r["env_network_crypto_enabled"] != want:
        problems.append(f"app environment says spark.network.crypto.enabled="
                        f"{r['env_network_crypto_enabled']!r}, expected {want!r}")
    if r["env_authenticate"] != "true" or not r["env_secret_set"]:
        problems.append(f"spark.authenticate={r['env_authenticate']!r}, "
                        f"secret set: {r['env_secret_set']}")
    if r["env_read_host_local_disk"] != "false":
        problems.append(f"spark.shuffle.readHostLocalDisk={r['env_read_host_local_disk']!r}")
    if r["secret_on_a_command_line"]:
        problems.append(f"the secret is on the command line of pids {r['secret_on_a_command_line']}")
    if len(r["executors"]) != 2:
        problems.append(f"{len(r['executors'])} executor processes found, expected 2")
    for e in r["executors"]:
        if f"-Dspark.network.crypto.enabled={want}" not in e["crypto_flags"]:
            problems.append(f"executor pid {e['pid']} started with {e['crypto_flags']}")
    if r["shuffle_remote_bytes_read"] <= 0:
        problems.append("no shuffle bytes were fetched over the network")
    if problems:
        raise SystemExit(f"run {r['name']}: " + "; ".join(problems))


def wait_cluster_idle(webui: str, timeout: float = 60) -> None:
    """Next run starts only when the previous app has released its cores."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = fetch_master_state(webui)
        if st.reachable and not st.active_apps and st.cores_used == 0:
            return
        time.sleep(0.5)
    raise SystemExit(f"the cluster still runs an app after {timeout:.0f} s")


def leftover_jvms(tmp: Path) -> list[int]:
    """Java processes started from this run (their command lines name its temp dir)."""
    pids = []
    for p in psutil.process_iter(["cmdline", "name"]):
        try:
            cmd = " ".join(p.info["cmdline"] or [])
        except psutil.Error:
            continue
        if "java" in (p.info["name"] or "") and str(tmp) in cmd:
            pids.append(p.pid)
    return pids


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=int, default=5, help="off/on pairs (ABBA order)")
    ap.add_argument("--rows", type=int, default=ROWS, help="rows of the timed job (multiple of 1000)")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "network_crypto.json"))
    args = ap.parse_args()
    if args.rows % (10 * GROUPS) or args.rows <= 0 or args.pairs < 1:
        ap.error("--rows must be a positive multiple of 10000 and --pairs >= 1")
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))

    load_start = os.getloadavg()
    date = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    secret = secrets.token_hex(32)
    tmp = Path(tempfile.mkdtemp(prefix="bench-network-crypto-"))
    cluster = LocalCluster(tmp / "cluster")
    rows: list[dict] = []
    try:
        t = time.monotonic()
        state = cluster.start(workers=2, worker_cores=1, worker_memory="1g", secret=secret)
        cluster_s = time.monotonic() - t
        print(f"local cluster {state['master_url']} (spark.authenticate) up in {cluster_s:.1f} s; "
              f"timed job: {args.rows:,} rows", flush=True)
        for i in range(args.pairs):
            order = (False, True) if i % 2 == 0 else (True, False)
            for crypto in order:
                wait_cluster_idle(state["webui_url"])
                name = f"crypto-{'on' if crypto else 'off'}-{i + 1}"
                r = run_driver(tmp, state["master_url"], secret, crypto, args.rows, name)
                r["pair"] = i + 1
                rows.append(r)
                print(f"pair {i + 1} {'on ' if crypto else 'off'}  job {r['job_s']:6.2f} s  "
                      f"executor CPU {r['executor_process_cpu_s']:6.2f} s  "
                      f"shuffle {r['shuffle_write_bytes'] / 1e6:6.1f} MB written, "
                      f"{r['shuffle_remote_bytes_read'] / 1e6:6.1f} MB fetched remotely  "
                      f"(session {r['session_s']:4.1f} s, load {r['load1_after']:.1f})", flush=True)
    finally:
        cluster.stop()
        left = leftover_jvms(tmp)
        shutil.rmtree(tmp, ignore_errors=True)
    if left:
        raise SystemExit(f"JVMs left behind: {left}")
    load_end = os.getloadavg()

    def med(crypto: bool, key: str) -> float:
        return statistics.median(r[key] for r in rows if r["crypto"] is crypto)

    keys = ("job_s", "executor_process_cpu_s", "executor_task_cpu_s", "executor_run_s",
            "session_s", "shuffle_write_bytes", "shuffle_read_bytes", "shuffle_remote_bytes_read")
    medians = {"off": {k: med(False, k) for k in keys}, "on": {k: med(True, k) for k in keys}}
    pair_ratios = []
    for i in range(1, args.pairs + 1):
        off, on = ([r for r in rows if r["pair"] == i and r["crypto"] is c][0] for c in (False, True))
        pair_ratios.append({"pair": i, "job_s": on["job_s"] / off["job_s"],
                            "executor_process_cpu_s": (on["executor_process_cpu_s"]
                                                       / off["executor_process_cpu_s"])})
    ratio = medians["on"]["job_s"] / medians["off"]["job_s"]
    cpu_ratio = medians["on"]["executor_process_cpu_s"] / medians["off"]["executor_process_cpu_s"]
    result = {
        "benchmark": "network_crypto",
        "date": date,
        "spark_version": rows[0]["spark_version"],
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "loadavg_start": load_start, "loadavg_end": load_end},
        "cluster": {"workers": 2, "worker_cores": 1, "worker_memory": "1g",
                    "spark.authenticate": True, "start_s": cluster_s},
        "job": {"code": JOB.replace("ROWS", f"{args.rows}"), "rows": args.rows,
                "map_partitions": 8, "reduce_partitions": 16, "groups": GROUPS,
                "payload_chars_per_row": PAYLOAD_CHARS,
                "warmup": "the same job on rows/10 in the same driver, not timed",
                "timed": "wall time of collect() of the timed job in the driver",
                "executor_process_cpu_s": "user+system CPU of both executor JVMs during it"},
        "settings": {
            "common": {"spark.authenticate": "true",
                       "spark.authenticate.secret": "the cluster's (a 0600 --properties-file)",
                       "spark.executor.cores": "1",
                       "spark.executor.memory": "512m", "spark.cores.max": "2",
                       "spark.driver.memory": "512m", "spark.shuffle.readHostLocalDisk": "false",
                       "spark.shuffle.compress": "true (default, lz4)",
                       "spark.io.encryption.enabled": "false (default: shuffle files on disk are not encrypted)"},
            "off": {"spark.network.crypto.enabled": "false"},
            "on": {"spark.network.crypto.enabled": "true"},
        },
        "pairs": args.pairs,
        "order": "ABBA: off,on / on,off / ... ; each run a fresh driver process",
        "medians": medians,
        "ratio_on_over_off": ratio,
        "overhead_pct": (ratio - 1) * 100,
        "median_pair_ratio_on_over_off": statistics.median(p["job_s"] for p in pair_ratios),
        "executor_process_cpu_ratio_on_over_off": cpu_ratio,
        "median_pair_executor_process_cpu_ratio": statistics.median(
            p["executor_process_cpu_s"] for p in pair_ratios),
        "pair_ratios": pair_ratios,
        "verified": {"every_result_correct": True,
                     "crypto_setting_in_app_environment_and_executor_command_lines": True,
                     "shuffle_fetched_over_network": True},
        "runs_detail": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")

    print()
    print(f"{'median of ' + str(args.pairs) + ' runs':18s} {'off':>9s} {'on':>9s} {'on/off':>8s}")
    for k, label in (("job_s", "job wall time"), ("executor_process_cpu_s", "executor CPU")):
        print(f"{label:18s} {medians['off'][k]:8.2f}s {medians['on'][k]:8.2f}s "
              f"{medians['on'][k] / medians['off'][k]:7.2f}x")
    print(f"median of per-pair ratios: {result['median_pair_ratio_on_over_off']:.2f}x wall, "
          f"{result['median_pair_executor_process_cpu_ratio']:.2f}x CPU; "
          f"shuffle per run {medians['off']['shuffle_write_bytes'] / 1e6:.0f} MB written, "
          f"{medians['off']['shuffle_remote_bytes_read'] / 1e6:.0f} MB fetched between executors")
    print(f"load average {load_start[0]:.1f} -> {load_end[0]:.1f} on {os.cpu_count()} CPUs "
          f"(Spark {result['spark_version']})")
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
