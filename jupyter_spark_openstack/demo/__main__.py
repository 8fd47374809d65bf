"""``python -m jupyter_spark_openstack.demo``: the main job, on one machine.

A JupyterHub on 127.0.0.1 with this project's spawner and the ``local`` provisioner (or
``--provisioner openstack`` against the bundled OpenStack emulator). Log in, pick a number of
workers, watch the progress, open the "PySpark" kernel. Ctrl-C stops the hub, every user's
server and Spark cluster, and checks that no process is left.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import time
from pathlib import Path

from .hubconfig import write_hub_config
from .hubprocess import HubProcess, kill_processes, processes_under


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m jupyter_spark_openstack.demo",
                                 description=__doc__.split("\n\n")[1])
    ap.add_argument("--dir", default=".demo", help="state directory (default .demo, wiped at start)")
    ap.add_argument("--port", type=int, default=8000, help="hub port on 127.0.0.1 (default 8000)")
    ap.add_argument("--provisioner", choices=["local", "openstack"], default="local")
    ap.add_argument("--boot", choices=["auto", "container", "process"], default="auto",
                    help="with --provisioner openstack: how the emulator boots workers; "
                         "'container': real machines (systemd, cloud-init, a tenant network; "
                         "root, systemd-nspawn and debootstrap), 'process': in-process workers, "
                         "'auto' (default): container when this machine allows it, else process")
    args = ap.parse_args(argv)

    d = Path(args.dir).resolve()
    leftovers = processes_under(d) if d.exists() else []
    if leftovers:
        kill_processes(leftovers)
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)

    emulator = None
    prov_config = None
    extra = ""
    if args.provisioner == "openstack":
        from ..testing.emulator.demo import start_demo_emulator  # noqa: PLC0415

        emulator, prov_config, extra = start_demo_emulator(
            d, boot_backend=None if args.boot == "auto" else args.boot)

    info = write_hub_config(d / "hub", port=args.port, provisioner=args.provisioner,
                            provisioner_config=prov_config, extra=extra)
    hub = HubProcess(info)
    print(f"Starting JupyterHub on {info['url']} ...", flush=True)
    hub.start()
    print(f"""
  JupyterHub is up:  {info['url']}/hub/login

  Log in as any user name (e.g. alice, bob; 'admin' is a hub admin)
  with the password:  {info['password']}

  Pick the number of Spark workers, watch the progress, then open a notebook with
  the "PySpark" kernel (Spark Connect: `spark` is ready) or "PySpark classic, RDD API"
  (`spark` and `sc`). Hub log: {hub.log_path}
  Press Ctrl-C to stop everything.
""", flush=True)

    stopping = False

    def on_signal(signum, frame):
        nonlocal stopping
        if stopping:
            return
        stopping = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)  # also when started with SIGINT ignored (background)
    try:
        while hub.proc.poll() is None:
            time.sleep(0.5)
        print(f"JupyterHub exited ({hub.proc.returncode}); log tail:\n{hub.log_tail()}")
    except KeyboardInterrupt:
        print("\nStopping JupyterHub, user servers and Spark clusters ...", flush=True)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        hub.stop()
        if emulator is not None:
            emulator.stop()
        left = processes_under(d)
        if left:
            print(f"cleaning up {len(left)} leftover process(es)", flush=True)
            kill_processes(left)
        left = processes_under(d)
        print("No process left." if not left else f"WARNING: still running: {[p.pid for p in left]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
