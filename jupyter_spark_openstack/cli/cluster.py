"""``cluster start|status|stop``: a local Spark standalone cluster (master + N workers)."""

from __future__ import annotations

import json

from ..core.errors import ValidationError
from ..core.localcluster import LocalCluster, default_run_dir
from ..core.models import parse_conf, parse_memory, parse_positive_int
from ..core.spark.connect import parse_connect_conf, parse_connect_host


def register(sub) -> None:
    p = sub.add_parser("cluster", help="start, inspect or stop a local Spark standalone cluster",
                       description="A Spark standalone cluster of local processes (the Spark "
                                   "inside the pyspark wheel), state and logs in a run dir under "
                                   "`jupyter --runtime-dir`.")
    csub = p.add_subparsers(dest="cluster_command", metavar="ACTION")
    csub.required = True

    def common(sp):
        sp.add_argument("--run-dir", default=None,
                        help=f"state and logs directory (default: {default_run_dir()})")

    s = csub.add_parser("start", help="start a master and N workers; prints the master URL once all are ALIVE")
    common(s)
    s.add_argument("--workers", default="2", help="number of workers (1-64, default 2)")
    s.add_argument("--worker-cores", default="1", help="cores each worker offers (default 1)")
    s.add_argument("--worker-memory", default="1g", help="memory each worker offers, Spark form (default 1g)")
    s.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    s.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for registration")
    s.add_argument("--connect", action="store_true",
                   help="also start a Spark Connect server on 127.0.0.1 (a free port), token in "
                        "RUN_DIR/connect.token (0600); prints its sc://localhost:PORT URL")
    s.add_argument("--connect-driver-memory", default=None, metavar="MEM",
                   help="driver memory of the Connect server, Spark form (default 1g)")
    s.add_argument("--connect-conf", action="append", default=[], metavar="spark.key=value",
                   help="extra Spark property for the Connect server (repeatable)")
    s.set_defaults(func=_start)

    st = csub.add_parser("status", help="show the cluster's master and workers")
    common(st)
    st.add_argument("--json", action="store_true", help="print JSON")
    st.set_defaults(func=_status)

    sp = csub.add_parser("stop", help="stop every process of the cluster")
    common(sp)
    sp.set_defaults(func=_stop)


def _start(args) -> int:
    workers = parse_positive_int("--workers", args.workers, maximum=64)
    cores = parse_positive_int("--worker-cores", args.worker_cores, maximum=256)
    memory = parse_memory("--worker-memory", args.worker_memory)
    connect_options = None
    if args.connect:
        connect_options = {"driver_memory": parse_memory("--connect-driver-memory", args.connect_driver_memory)
                           if args.connect_driver_memory else None,
                           "conf": parse_conf("--connect-conf", args.connect_conf)}
        parse_connect_conf("--connect-conf", connect_options["conf"])
        parse_connect_host("--host", args.host)
    elif args.connect_driver_memory or args.connect_conf:
        raise ValidationError("--connect-driver-memory/--connect-conf", "given without --connect",
                              "these options together with --connect")
    cluster = LocalCluster(args.run_dir)
    state = cluster.start(workers, cores, memory, host=args.host, timeout=args.timeout,
                          connect=args.connect, connect_options=connect_options)
    print(state["master_url"])
    if state.get("connect"):
        print(state["connect"]["url"])
        print(f"token file: {state['connect']['token_file']}")
    return 0


def _status(args) -> int:
    status = LocalCluster(args.run_dir).status()
    if args.json:
        print(json.dumps(status, indent=2))
        return 0 if status["running"] else 1
    if not status["running"]:
        print(f"no cluster running (run dir {status['run_dir']})")
        return 1
    print(f"master   {status['master_url']}  (UI {status['webui_url']})")
    if status.get("connect"):
        c = status["connect"]
        print(f"connect  {c['url']}  ({'running' if c['running'] else 'NOT running'}, pid {c['pid']}, "
              f"token file {c['token_file']})")
    for w in status["workers"]:
        print(f"worker   {w['id']:45s} {w['state']:6s} {w['cores_used']}/{w['cores']} cores  "
              f"{w['memory_used_mb']}/{w['memory_mb']} MB")
    for a in status["apps"]:
        print(f"app      {a['id']:45s} {a['name']}  {a['cores']} cores")
    return 0


def _stop(args) -> int:
    pids = LocalCluster(args.run_dir).stop()
    print(f"stopped {len(pids)} process(es)" if pids else "no cluster was running")
    return 0
