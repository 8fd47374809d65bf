"""Spawn-to-ready and stop times of a real JupyterHub with the local provisioner.

For 1, 2 and 4 workers: POST /hub/api/users/{u}/server with {"workers": n} -> server ready
(master, workers registered, Connect server ready, notebook server up), then DELETE -> gone
(every process stopped). Medians over --runs runs, all in one run of this script, so the
figures compare with each other (ratio to the 1-worker spawn).

    .venv/bin/python bench/bench_spawn.py [--runs 3] [--workers 1 2 4]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from jupyter_spark_openstack.demo.client import HubClient
from jupyter_spark_openstack.demo.hubprocess import kill_processes, processes_under, start_hub


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--no-connect", action="store_true", help="without the per-user Connect server")
    args = ap.parse_args()
    d = Path(tempfile.mkdtemp(prefix="bench-spawn-"))
    hub = start_hub(d, spawner_overrides={"max_workers_per_user": max(args.workers),
                                          "max_workers_total": max(args.workers),
                                          "connect_server": not args.no_connect})
    c = HubClient(hub.url, hub.token)
    results: dict[str, dict] = {}
    try:
        for n in args.workers:
            ready, stop = [], []
            for i in range(args.runs):
                user = f"bench{n}x{i}"
                t0 = time.perf_counter()
                r = c.spawn(user, {"workers": n, "size": "small"})
                if r.status_code not in (201, 202):
                    raise SystemExit(f"spawn failed: {r.status_code} {r.text}")
                c.wait_ready(user)
                ready.append(time.perf_counter() - t0)
                t1 = time.perf_counter()
                c.stop(user)
                stop.append(time.perf_counter() - t1)
                left = processes_under(d / "clusters" / user)
                if left:
                    raise SystemExit(f"processes left after stop: {[p.pid for p in left]}")
                print(f"  {n} worker(s) run {i + 1}: ready {ready[-1]:.1f}s, stop {stop[-1]:.1f}s", flush=True)
            results[str(n)] = {"ready_s": ready, "stop_s": stop,
                               "ready_median_s": statistics.median(ready),
                               "stop_median_s": statistics.median(stop)}
    finally:
        hub.stop()
        kill_processes(processes_under(d))
    base = results[str(args.workers[0])]["ready_median_s"]
    print(f"\nspawn-to-ready and stop, local provisioner, medians of {args.runs} (connect server: {not args.no_connect})")
    print(f"{'workers':>8} {'ready s':>9} {'ratio':>7} {'stop s':>8}")
    for n in args.workers:
        r = results[str(n)]
        r["ready_ratio_to_first"] = r["ready_median_s"] / base
        print(f"{n:>8} {r['ready_median_s']:>9.1f} {r['ready_ratio_to_first']:>7.2f} {r['stop_median_s']:>8.1f}")
    out = Path(__file__).parent / "results" / "spawn.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"runs": args.runs, "connect_server": not args.no_connect,
                               "results": results}, indent=2))
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
