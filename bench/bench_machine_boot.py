#!/usr/bin/env python
"""Boot-to-registered time and memory of the emulator's container boot backend (real machines:
systemd-nspawn, systemd and the real cloud-init running our user-data), against the in-process
backend, in one run.

Each measurement is a fresh Spark master (on the emulator's hub address: the host's address on
the tenant network for containers, 127.0.0.1 for the process backend; started before the clock
starts and answering its web UI) and the real ``OpenStackProvisioner`` against the emulator
(``boot_delay`` 0.5 s for both backends: the BUILD phase Nova would show). The clock starts
before ``request_worker()`` and stops when the master's ``/json/`` shows the worker(s) ALIVE
(polled every 0.2 s). Workers are small: 1 core, 512m, install mode ``preinstalled``. After each
run its workers are deleted, the emulator shows no server, and the master is stopped, so every
run starts from a clean state.

1. container, 1 worker alone: boot-to-registered, ``--single`` runs (default 3), median;
2. container, 8 workers requested in parallel (``asyncio.gather`` of 8 ``request_worker()``):
   wall time until all 8 are ALIVE, ``--parallel`` runs (default 2), median; ratio
   8-parallel / 1 (medians; 1.0 would be perfect parallelism, 8.0 fully serial);
3. memory per machine once the 8 are registered (each run): ``Machine.memory()`` of every
   server's machine (PSS and RSS of the processes inside it, systemd, journald, cloud-init's
   leftovers and the Spark worker JVM; the supervisor -- ``systemd-nspawn`` -- apart), median
   per machine in MiB;
4. process backend (``Emulator(boot_backend="process")``), 1 worker alone, ``--single`` runs,
   median; ratio container / process (medians).

Both emulators run side by side; each backend first does one untimed warm-up boot (page
cache), reported apart; the 1-worker runs then alternate the backends in ABBA order. The machine is shared and has few CPUs: absolute times are noisy, the ratios within one
run are the figures. Needs root and systemd-nspawn (the container backend) and the cached
machine image (``python -m jupyter_spark_openstack.testing.machines.image build``).

Usage: sudo .venv/bin/python bench/bench_machine_boot.py [--single 3] [--parallel 2] [--workers 8]
Results: bench/results/machine_boot.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from jupyter_spark_openstack.core.provisioners.base import WorkerSpec  # noqa: E402
from jupyter_spark_openstack.core.provisioners.openstack import OpenStackProvisioner  # noqa: E402
from jupyter_spark_openstack.core.spark import daemons, ports  # noqa: E402
from jupyter_spark_openstack.testing.emulator import Emulator  # noqa: E402
from jupyter_spark_openstack.testing.emulator.helpers import provisioner_config  # noqa: E402

MIB = 1024 * 1024
CORES, MEMORY = 1, "512m"
BOOT_DELAY = 0.5
POLL = 0.2


def master_json(ui: str) -> dict | None:
    try:
        with urllib.request.urlopen(f"{ui}/json/", timeout=5) as r:
            return json.loads(r.read())
    except (OSError, ValueError):
        return None


def alive(ui: str) -> list[dict]:
    js = master_json(ui)
    return [w for w in (js or {}).get("workers", []) if w.get("state") == "ALIVE"]


def start_master(d: Path, hub: str) -> tuple[dict, str, str]:
    p, w = ports.free_ports(2, hub)
    m = daemons.start_master(d, host=hub, port=p, webui_port=w)
    ui = f"http://{hub}:{w}"
    deadline = time.monotonic() + 120
    while master_json(ui) is None:
        if time.monotonic() > deadline:
            daemons.stop_daemon(m)
            raise SystemExit(f"the master's web UI {ui} did not answer within 120 s")
        time.sleep(0.2)
    return m, f"spark://{hub}:{p}", ui


class Bench:
    """One emulator (one backend) and its provisioner; :meth:`run` is one measurement."""

    def __init__(self, backend: str, tmp: Path):
        self.backend = backend
        self.dir = tmp / backend          # a fresh directory: clouds.yaml is written only if missing
        self.dir.mkdir(parents=True)
        self.emu = None
        self.prov = None
        self.runs = 0

    def start(self) -> float:
        t = time.monotonic()
        self.emu = Emulator(boot_delay=BOOT_DELAY, boot_backend=self.backend,
                            run_dir=self.dir / "emu").start()
        self.hub = self.emu.hub_address
        over = {"master_host": self.hub}
        if self.emu.network is not None:
            over["hub_cidr"] = str(self.emu.network.network)
        cfg = provisioner_config(self.emu, self.dir / "clouds.yaml", **over)
        cfg["install"] = {"mode": "preinstalled", "spark_home": "/opt/spark"}
        self.prov = OpenStackProvisioner(cfg)
        return time.monotonic() - t

    async def run(self, n: int, *, memory: bool = False, timeout: float = 300) -> dict:
        self.runs += 1
        r = self.runs
        m, master_url, ui = start_master(self.dir / f"master-{r}", self.hub)
        recs = []
        load_before = os.getloadavg()[0]
        try:
            if alive(ui):
                raise SystemExit("a fresh master already has ALIVE workers")
            specs = [WorkerSpec(hub_id="bench", owner="alice", cluster_id="bench-alice",
                                name=f"alice-r{r}w{i}", index=i, cores=CORES, memory=MEMORY,
                                master_url=master_url, size="small")   # flavor: m1.small
                     for i in range(1, n + 1)]
            t0 = time.perf_counter()
            results = await asyncio.gather(*(self.prov.request_worker(s) for s in specs),
                                           return_exceptions=True)
            requested_s = time.perf_counter() - t0
            recs = [x for x in results if not isinstance(x, BaseException)]
            errors = [repr(x) for x in results if isinstance(x, BaseException)]
            if errors:
                raise SystemExit(f"request_worker failed: {errors}")
            seen: dict[str, float] = {}     # worker id -> seconds from t0 to first seen ALIVE
            while True:
                now = time.perf_counter() - t0
                for w in alive(ui):
                    seen.setdefault(w["id"], now)
                if len(seen) >= n:
                    break
                if now > timeout:
                    why = [await self.prov.boot_failure(x) for x in recs]
                    raise SystemExit(f"{len(seen)}/{n} workers ALIVE after {timeout:.0f} s; "
                                     f"boot failures: {why}")
                await asyncio.sleep(POLL)
            wall_s = max(seen.values())
            out = {"run": r, "workers": n, "wall_s": wall_s, "requested_s": requested_s,
                   "per_worker_alive_s": sorted(seen.values()),
                   "load1_before": load_before, "load1_after": os.getloadavg()[0]}
            if memory:
                mem = []
                for vm in self.emu.model.list_servers():
                    mach = self.emu.backend.machine(vm)
                    if mach is None:
                        raise SystemExit(f"server {vm.id} has no machine")
                    u = mach.memory()
                    mem.append({"server": vm.name, "processes": u.processes,
                                "pss_mib": u.pss_bytes / MIB, "rss_mib": u.rss_bytes / MIB,
                                "supervisor_processes": u.supervisor_processes,
                                "supervisor_rss_mib": u.supervisor_rss_bytes / MIB,
                                "top_pss_mib": {k: v / MIB for k, v in
                                                list(u.by_command.items())[:5]}})
                if len(mem) != n:
                    raise SystemExit(f"{len(mem)} machines for {n} workers")
                out["machines"] = mem
            return out
        finally:
            await self.clean(recs)
            daemons.stop_daemon(m)

    async def clean(self, recs) -> None:
        await asyncio.gather(*(self.prov.delete_worker(x) for x in recs), return_exceptions=True)
        deadline = time.monotonic() + 120
        while self.emu.model.list_servers():
            if time.monotonic() > deadline:
                raise SystemExit(f"servers still there 120 s after delete: "
                                 f"{[v.name for v in self.emu.model.list_servers()]}")
            await asyncio.sleep(0.2)
        if self.backend == "container":      # the machine is powered off and removed
            from jupyter_spark_openstack.testing.machines.container import Machine  # noqa: PLC0415
            while Machine._live:
                if time.monotonic() > deadline:
                    raise SystemExit(f"machines still live after delete: {list(Machine._live)}")
                await asyncio.sleep(0.2)

    async def stop(self) -> None:
        if self.prov is not None:
            try:
                await self.prov.close()
            except Exception as e:  # noqa: BLE001
                print(f"warning: provisioner close: {e}", file=sys.stderr)
        if self.emu is not None:
            self.emu.stop()


def check_host() -> None:
    if os.geteuid() != 0:
        raise SystemExit("bench_machine_boot: the container backend needs root (systemd-nspawn, "
                         "mount, cgroups); run it as root")
    if shutil.which("systemd-nspawn") is None:
        raise SystemExit("bench_machine_boot: systemd-nspawn not found "
                         "(apt-get install systemd-container)")
    from jupyter_spark_openstack.testing.machines.container import (  # noqa: PLC0415
        MachineError,
        current_image_rootfs,
    )
    try:
        current_image_rootfs()
    except MachineError as e:
        raise SystemExit(f"bench_machine_boot: {e}") from None


async def bench(args, tmp: Path) -> dict:
    res: dict = {"container_single": [], "process_single": [], "container_parallel": []}
    benches = {b: Bench(b, tmp) for b in ("container", "process")}
    try:
        for name, b in benches.items():
            res[f"{name}_emulator_start_s"] = b.start()
        for name, b in benches.items():
            w = await b.run(1)
            res[f"{name}_warmup"] = w
            print(f"{name:9s} warm-up 1 worker   {w['wall_s']:6.2f} s (not counted)", flush=True)
        # 1-worker runs alternate the backends ABBA (container,process / process,container / ...)
        # so that the other load of this shared machine falls on both alike
        for i in range(args.single):
            for name in (("container", "process") if i % 2 == 0 else ("process", "container")):
                x = await benches[name].run(1)
                x["pair"] = i + 1
                res[f"{name}_single"].append(x)
                print(f"{name:9s} 1 worker           {x['wall_s']:6.2f} s  "
                      f"(request {x['requested_s']:.2f} s, load {x['load1_after']:.1f})", flush=True)
        for _ in range(args.parallel):
            x = await benches["container"].run(args.workers, memory=True, timeout=600)
            res["container_parallel"].append(x)
            pss = statistics.median(m["pss_mib"] for m in x["machines"])
            print(f"container {args.workers} workers parallel {x['wall_s']:6.2f} s  "
                  f"(first ALIVE {x['per_worker_alive_s'][0]:.2f} s, median PSS "
                  f"{pss:.0f} MiB/machine, load {x['load1_after']:.1f})", flush=True)
    finally:
        for b in benches.values():
            await b.stop()
    from jupyter_spark_openstack.testing.machines.container import Machine  # noqa: PLC0415
    res["machines_left"] = [repr(m) for m in Machine._live]
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--single", type=int, default=3, help="1-worker runs per backend")
    ap.add_argument("--parallel", type=int, default=2, help="runs of N workers in parallel")
    ap.add_argument("--workers", type=int, default=8, help="N, workers requested in parallel")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "machine_boot.json"))
    args = ap.parse_args()
    if args.single < 1 or args.parallel < 1 or args.workers < 2:
        ap.error("--single >= 1, --parallel >= 1, --workers >= 2")
    check_host()
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))

    load_start = os.getloadavg()
    date = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    t_all = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="bench-machine-boot-"))
    try:
        res = asyncio.run(bench(args, tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if res["machines_left"]:
        raise SystemExit(f"machines left behind: {res['machines_left']}")
    load_end = os.getloadavg()

    med = statistics.median
    c1 = med(x["wall_s"] for x in res["container_single"])
    p1 = med(x["wall_s"] for x in res["process_single"])
    cn = med(x["wall_s"] for x in res["container_parallel"])
    pairs = [c["wall_s"] / p["wall_s"] for c, p in zip(
        sorted(res["container_single"], key=lambda x: x["pair"]),
        sorted(res["process_single"], key=lambda x: x["pair"]), strict=True)]
    machines = [m for x in res["container_parallel"] for m in x["machines"]]
    mem = {"machines_measured": len(machines),
           "median_pss_mib": med(m["pss_mib"] for m in machines),
           "median_rss_mib": med(m["rss_mib"] for m in machines),
           "median_processes": med(m["processes"] for m in machines),
           "median_supervisor_rss_mib": med(m["supervisor_rss_mib"] for m in machines),
           "median_jvm_pss_mib": med(m["top_pss_mib"].get("java", 0.0) for m in machines)}
    result = {
        "benchmark": "machine_boot",
        "date": date,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "loadavg_start": load_start, "loadavg_end": load_end},
        "setup": {"boot_delay_s": BOOT_DELAY, "worker_cores": CORES, "worker_memory": MEMORY,
                  "install_mode": "preinstalled", "flavor": "m1.small",
                  "clock": "perf_counter before request_worker() -> worker ALIVE in the "
                           f"master's /json/ (polled every {POLL} s)",
                  "each_run": "fresh master; workers deleted and servers gone afterwards",
                  "warmup": "one untimed 1-worker boot per backend first",
                  "order": "1-worker runs ABBA: container,process / process,container / ...; "
                           "then the parallel runs"},
        "runs": {"single": args.single, "parallel": args.parallel,
                 "parallel_workers": args.workers},
        "medians": {"container_1_worker_s": c1,
                    f"container_{args.workers}_parallel_s": cn,
                    "process_1_worker_s": p1},
        f"ratio_{args.workers}_parallel_over_1": cn / c1,
        "ratio_container_over_process": c1 / p1,
        "pair_ratios_container_over_process": pairs,
        "median_pair_ratio_container_over_process": med(pairs),
        "memory_per_machine": mem,
        "total_s": time.monotonic() - t_all,
        "raw": res,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in
                      ("medians", f"ratio_{args.workers}_parallel_over_1",
                       "ratio_container_over_process", "memory_per_machine")}, indent=2))
    print(f"\nboot-to-registered (median): container {c1:.2f} s, process {p1:.2f} s "
          f"-> {c1 / p1:.2f}x; {args.workers} in parallel {cn:.2f} s -> {cn / c1:.2f}x one")
    print(f"per machine (median of {len(machines)}): PSS {mem['median_pss_mib']:.0f} MiB, "
          f"RSS {mem['median_rss_mib']:.0f} MiB (Spark worker JVM PSS "
          f"{mem['median_jvm_pss_mib']:.0f} MiB)")
    print(f"load average {load_start[0]:.1f} -> {load_end[0]:.1f} on {os.cpu_count()} CPUs; "
          f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
