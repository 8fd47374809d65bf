"""Benchmark: ``GET spark-openstack/api/cluster`` under 200 concurrent clients.

A real local Spark cluster (master + 2 workers), a real jupyter_server (``jupyter server`` in a
subprocess on 127.0.0.1) with this extension, and between them a counting pass-through in front
of the master's web UI, so every upstream request the server sends is counted.

Measured, in the same run:

* burst: 200 concurrent GETs of the cluster endpoint (token auth), ``runs`` times, each run
  right after the cache expired (so one of the 200 waits for the upstream read) — p50/p99 per
  run, medians over runs, and the upstream requests each burst caused;
* baseline A: the same burst against jupyter_server's own ``GET api/status`` (same server, same
  auth, no Spark): what the server costs by itself;
* baseline B: the same burst straight to the master's ``/json/`` (what every poller would cost
  the master without the cache);
* keep-alive: both bursts again on 200 connections opened beforehand, one request on each at
  the same moment -- 200 JupyterLab tabs, each with its open connection, polling at once (a
  fresh-connection burst also measures TCP connects and the listen backlog of 128);
* sustained: 200 clients polling in a loop for ``--duration`` seconds: upstream requests per
  refresh interval (target: 1).

Targets: p99 < 20 ms; one upstream request per interval. Results: bench/results/bench_cluster_endpoint.json.
Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tornado import httpclient, httpserver, web

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from jupyter_spark_openstack.core.localcluster import LocalCluster  # noqa: E402
from jupyter_spark_openstack.core.spark.ports import free_port  # noqa: E402

RESULTS = REPO / "bench" / "results" / "bench_cluster_endpoint.json"


class CountingProxy(web.RequestHandler):
    """GET pass-through to the master UI that counts what it forwards."""

    def initialize(self, upstream: str, counter: dict):
        self.upstream = upstream
        self.counter = counter

    async def get(self, path):
        self.counter["n"] += 1
        self.counter.setdefault("paths", []).append(path)
        client = httpclient.AsyncHTTPClient(force_instance=True)
        try:
            r = await client.fetch(self.upstream + "/" + path, raise_error=False)
        finally:
            client.close()
        self.set_status(r.code)
        self.set_header("Content-Type", r.headers.get("Content-Type", "application/json"))
        self.finish(r.body)


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(p / 100 * len(s) + 0.5)) - 1))
    return s[k]


async def burst(client, url: str, headers: dict, n: int) -> tuple[list[float], int]:
    async def one():
        t = time.perf_counter()
        try:
            r = await client.fetch(url, headers=headers, raise_error=False, request_timeout=60)
            code = r.code
        except Exception:  # noqa: BLE001 - a timeout is a result here (counted as not 200)
            code = 599
        return (time.perf_counter() - t) * 1000, code

    res = await asyncio.gather(*[one() for _ in range(n)])
    bad = sum(1 for _, c in res if c != 200)
    return [ms for ms, _ in res], bad


class KeepAlive:
    """One persistent HTTP/1.1 connection, as each open JupyterLab tab keeps one: requests on
    it pay no TCP connect (a fresh-connection burst of 200 also fills the server's listen
    backlog of 128, and a dropped SYN costs a 1 s retransmit)."""

    def __init__(self, base: str, headers: dict):
        hostport = base.split("://", 1)[1]
        self.host, port = hostport.rsplit(":", 1)
        self.port = int(port)
        self.extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())

    async def open(self) -> KeepAlive:
        self.r, self.w = await asyncio.open_connection(self.host, self.port)
        return self

    async def get(self, path: str) -> tuple[float, int]:
        t = time.perf_counter()
        self.w.write(f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{self.extra}\r\n".encode())
        head = (await self.r.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(head[0].split()[1])
        length = next((int(h.split(":", 1)[1]) for h in head if h.lower().startswith("content-length:")), 0)
        await self.r.readexactly(length)
        return (time.perf_counter() - t) * 1000, status

    def close(self) -> None:
        self.w.close()


async def burst_keepalive(conns: list[KeepAlive], path: str) -> tuple[list[float], int]:
    res = await asyncio.gather(*[c.get(path) for c in conns])
    return [ms for ms, _ in res], sum(1 for _, st in res if st != 200)


async def sustained(client, url, headers, clients: int, duration: float) -> int:
    stop = time.monotonic() + duration
    done = 0

    async def loop():
        nonlocal done
        while time.monotonic() < stop:
            await client.fetch(url, headers=headers, raise_error=False)
            done += 1

    await asyncio.gather(*[loop() for _ in range(clients)])
    return done


def wait_http(url: str, timeout: float = 60.0) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except Exception:  # noqa: BLE001
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer")


async def main_async(args, cluster_state, tmp: Path) -> dict:
    counter = {"n": 0}
    proxy_port = free_port()
    app = web.Application([(r"/(.*)", CountingProxy, {"upstream": cluster_state["webui_url"], "counter": counter})])
    server = httpserver.HTTPServer(app)
    server.listen(proxy_port, "127.0.0.1")
    webui = f"http://127.0.0.1:{proxy_port}"

    port, token = free_port(), secrets.token_hex(16)
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp / "rt"), "JUPYTER_DATA_DIR": str(tmp / "data"),
           "JUPYTER_CONFIG_DIR": str(tmp / "cfg")}
    for k in list(env):
        if k.startswith("SPARK_OPENSTACK_"):
            env.pop(k)
    argv = [sys.executable, "-m", "jupyter_server", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
            *(["--allow-root"] if os.geteuid() == 0 else []),
            f"--IdentityProvider.token={token}", "--ServerApp.log_level=WARN",
            "--ServerApp.jpserver_extensions={'jupyter_spark_openstack': True}",
            f"--SparkOpenStack.master_url={cluster_state['master_url']}",
            f"--SparkOpenStack.master_webui_url={webui}",
            f"--SparkOpenStack.refresh_interval={args.interval}",
            f"--ServerApp.root_dir={tmp}"]
    log = open(tmp / "server.log", "w")
    proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        try:
            await asyncio.to_thread(wait_http, f"{base}/api/status?token={token}")
        except RuntimeError:
            log.flush()
            print((tmp / "server.log").read_text()[-3000:], file=sys.stderr)
            raise
        headers = {"Authorization": f"token {token}"}
        client = httpclient.AsyncHTTPClient(force_instance=True, max_clients=args.clients)
        cluster_url = f"{base}/spark-openstack/api/cluster"
        first = json.loads((await client.fetch(cluster_url, headers=headers)).body)
        assert first["master"]["reachable"], first
        # warm-up (connections, imports)
        await burst(client, cluster_url, headers, args.clients)
        await burst(client, f"{base}/api/status", headers, args.clients)

        conns = [await KeepAlive(base, headers).open() for _ in range(args.clients)]
        await burst_keepalive(conns, "/spark-openstack/api/cluster")  # warm-up
        runs = {"cluster": [], "status": [], "master_direct": [], "cluster_keepalive": [],
                "status_keepalive": []}
        upstream_per_burst = []
        master_errors = []
        for _ in range(args.runs):
            await asyncio.sleep(args.interval + 0.1)  # cache expired: this burst triggers one read
            before = counter["n"]
            ms, bad = await burst(client, cluster_url, headers, args.clients)
            assert bad == 0
            upstream_per_burst.append(counter["n"] - before)
            runs["cluster"].append(ms)
            ms, bad = await burst(client, f"{base}/api/status", headers, args.clients)
            assert bad == 0
            runs["status"].append(ms)
            ms, bad = await burst(client, cluster_state["webui_url"] + "/json/", {}, args.clients)
            runs["master_direct"].append(ms)
            master_errors.append(bad)
            # the same bursts on 200 open connections (browser tabs), cache expired again
            await asyncio.sleep(args.interval + 0.1)
            before = counter["n"]
            ms, bad = await burst_keepalive(conns, "/spark-openstack/api/cluster")
            assert bad == 0
            upstream_per_burst.append(counter["n"] - before)
            runs["cluster_keepalive"].append(ms)
            ms, bad = await burst_keepalive(conns, "/api/status")
            assert bad == 0
            runs["status_keepalive"].append(ms)
        for c in conns:
            c.close()

        # one client, 200 GETs one after another: the endpoint's own latency without queueing
        seq = {"cluster": [], "status": []}
        for _ in range(args.runs):
            for key, u in (("cluster", cluster_url), ("status", f"{base}/api/status")):
                ms = []
                for _ in range(args.clients):
                    t = time.perf_counter()
                    await client.fetch(u, headers=headers)
                    ms.append((time.perf_counter() - t) * 1000)
                seq[key].append(ms)

        await asyncio.sleep(args.interval + 0.1)
        before = counter["n"]
        t0 = time.monotonic()
        done = await sustained(client, cluster_url, headers, args.clients, args.duration)
        elapsed = time.monotonic() - t0
        sustained_upstream = counter["n"] - before
        client.close()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
        server.stop()

    def summary(key, src=None):
        src = runs if src is None else src
        p50s = [pct(r, 50) for r in src[key]]
        p99s = [pct(r, 99) for r in src[key]]
        return {"p50_ms_median": statistics.median(p50s), "p99_ms_median": statistics.median(p99s),
                "p99_ms_runs": [round(x, 2) for x in p99s]}

    res = {
        "clients": args.clients, "runs": args.runs, "refresh_interval_s": args.interval,
        "cluster_endpoint": summary("cluster"),
        "baseline_api_status": summary("status"),
        "baseline_master_json_direct": summary("master_direct"),
        "cluster_endpoint_keepalive": summary("cluster_keepalive"),
        "baseline_api_status_keepalive": summary("status_keepalive"),
        "sequential_cluster_endpoint": summary("cluster", seq),
        "sequential_api_status": summary("status", seq),
        "upstream_requests_per_burst": upstream_per_burst,
        "master_direct_failed_requests_per_burst": master_errors,
        "sustained": {"seconds": round(elapsed, 2), "requests": done,
                      "upstream_requests": sustained_upstream,
                      "intervals": round(elapsed / args.interval, 2),
                      "upstream_per_interval": round(sustained_upstream / (elapsed / args.interval), 2)},
    }
    res["ratio_p99_cluster_vs_api_status"] = round(
        res["cluster_endpoint"]["p99_ms_median"] / res["baseline_api_status"]["p99_ms_median"], 2)
    res["targets"] = {"p99_below_20ms_200_concurrent": res["cluster_endpoint"]["p99_ms_median"] < 20,
                      "p99_below_20ms_200_concurrent_keepalive":
                          res["cluster_endpoint_keepalive"]["p99_ms_median"] < 20,
                      "p99_below_20ms_sequential": res["sequential_cluster_endpoint"]["p99_ms_median"] < 20,
                      "one_upstream_per_interval": all(n == 1 for n in upstream_per_burst)
                      and res["sustained"]["upstream_per_interval"] <= 1.0 + 1.0 / max(1.0, elapsed / args.interval)}
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--interval", type=float, default=2.0, help="SparkOpenStack.refresh_interval")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of sustained polling")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-cluster-endpoint-"))
    cluster = LocalCluster(tmp / "cluster")
    try:
        state = cluster.start(workers=2, worker_cores=1, worker_memory="1g")
        res = asyncio.run(main_async(args, state, tmp))
    finally:
        cluster.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    c, a, m = res["cluster_endpoint"], res["baseline_api_status"], res["baseline_master_json_direct"]
    print(f"\n{args.clients} concurrent GETs, {args.runs} runs (medians), refresh interval {args.interval}s")
    print(f"{'endpoint':42s} {'p50 ms':>8s} {'p99 ms':>8s}")
    print(f"{'spark-openstack/api/cluster (cache expired)':42s} {c['p50_ms_median']:8.1f} {c['p99_ms_median']:8.1f}")
    print(f"{'api/status (baseline: server alone)':42s} {a['p50_ms_median']:8.1f} {a['p99_ms_median']:8.1f}")
    print(f"{'master /json/ direct (baseline: no cache)':42s} {m['p50_ms_median']:8.1f} {m['p99_ms_median']:8.1f}")
    ck, ak = res["cluster_endpoint_keepalive"], res["baseline_api_status_keepalive"]
    print(f"{'api/cluster, 200 open connections':42s} {ck['p50_ms_median']:8.1f} {ck['p99_ms_median']:8.1f}")
    print(f"{'api/status, 200 open connections':42s} {ak['p50_ms_median']:8.1f} {ak['p99_ms_median']:8.1f}")
    print(f"master /json/ direct: failed (timeout > 60 s) per burst: {res['master_direct_failed_requests_per_burst']}")
    sc, sa = res["sequential_cluster_endpoint"], res["sequential_api_status"]
    print(f"{'api/cluster, one client, sequential':42s} {sc['p50_ms_median']:8.1f} {sc['p99_ms_median']:8.1f}")
    print(f"{'api/status, one client, sequential':42s} {sa['p50_ms_median']:8.1f} {sa['p99_ms_median']:8.1f}")
    print(f"p99 ratio cluster/api-status: {res['ratio_p99_cluster_vs_api_status']}")
    print(f"upstream requests per 200-GET burst: {res['upstream_requests_per_burst']}")
    s = res["sustained"]
    print(f"sustained {s['seconds']}s, {s['requests']} GETs: {s['upstream_requests']} upstream requests "
          f"over {s['intervals']} intervals = {s['upstream_per_interval']} per interval")
    print(f"targets: {res['targets']}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(res, indent=2))
    print(f"written {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
