"""A test spawner whose notebook servers are not on the hub host, as far as they can tell.

``NetnsSpawner`` is ``SparkClusterMixin`` + JupyterHub's ``SimpleLocalProcessSpawner``, but each
notebook server runs in a network namespace of its own, attached to the emulator's tenant network
(a veth into its bridge, an address of its own), and in a mount namespace where the hub's cluster
run directory is an empty tmpfs. So, like a KubeSpawner pod or a DockerSpawner container, it
reaches the hub only over the network (``hub_ip`` on the tenant network), reaches nothing on the
hub's loopback, and reads none of the files the hub writes for her: her kernelspecs, token and
CA come through its environment (``kernelspecs_in_environment``), her Spark through her head.

For tests and demos on one machine only; it needs root (namespaces, veth).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import secrets
import subprocess
import sys
import time

from jupyterhub.spawner import SimpleLocalProcessSpawner
from traitlets import Int, List, Unicode

from ..spawner.mixin import SparkClusterMixin

BRIDGE = "br0"
HOLDER_TAG = b"jsnb-holder"


def _run(argv: list[str]) -> None:
    res = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {res.stderr.strip() or res.returncode}")


class NetnsSpawner(SparkClusterMixin, SimpleLocalProcessSpawner):
    """Notebook servers in network namespaces of their own on the tenant network."""

    tenant_holder_pid = Int(0, config=True,
                            help="PID of the process holding the tenant network's namespace")
    tenant_cidr = Unicode("", config=True, help="the tenant network, e.g. 10.87.0.0/24")
    first_host = Int(200, config=True, help="addresses from this host number up (machines "
                                            "get theirs from .10)")
    hidden_paths = List(Unicode(), config=True,
                        help="directories of the hub host its notebook servers must not see")

    _netns: dict | None = None

    @property
    def notebook_on_hub_host(self) -> bool:
        return False

    def _address(self) -> str:
        net = ipaddress.ip_network(self.tenant_cidr)
        taken = set()
        for p in os.listdir("/proc"):   # addresses of this hub's other notebook namespaces
            with contextlib.suppress(OSError):
                if p.isdigit():
                    cmd = open(f"/proc/{p}/cmdline", "rb").read().split(b"\0")
                    if HOLDER_TAG in cmd and cmd.index(HOLDER_TAG) + 1 < len(cmd):
                        taken.add(cmd[cmd.index(HOLDER_TAG) + 1].decode())
        for host in list(net.hosts())[self.first_host - 1:]:
            if str(host) not in taken:
                return str(host)
        raise RuntimeError(f"no free address in {net} from host {self.first_host}")

    def _make_namespace(self) -> dict:
        address = self._address()
        # one process holds the namespace; its command line names its address (see _address)
        holder = subprocess.Popen(["unshare", "--net", "--", sys.executable, "-c",
                                   "import time\nwhile True: time.sleep(3600)",
                                   HOLDER_TAG.decode(), address],
                                  start_new_session=True, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ns = {"holder": holder.pid, "address": address, "outer": "jsnb-" + secrets.token_hex(4)}
        try:
            own = os.readlink("/proc/self/ns/net")
            deadline = time.monotonic() + 10
            while os.readlink(f"/proc/{holder.pid}/ns/net") == own:
                if time.monotonic() > deadline or holder.poll() is not None:
                    raise RuntimeError("the notebook's network namespace did not appear")
                time.sleep(0.02)
            inner = "jsnp-" + ns["outer"][5:]
            tenant = ["nsenter", f"--net=/proc/{self.tenant_holder_pid}/ns/net", "--"]
            mine = ["nsenter", f"--net=/proc/{holder.pid}/ns/net", "--"]
            _run(["ip", "link", "add", ns["outer"], "type", "veth", "peer", "name", inner])
            _run(["ip", "link", "set", ns["outer"], "netns", str(self.tenant_holder_pid)])
            _run([*tenant, "ip", "link", "set", ns["outer"], "master", BRIDGE])
            _run([*tenant, "ip", "link", "set", ns["outer"], "up"])
            _run(["ip", "link", "set", inner, "netns", str(holder.pid)])
            prefix = ipaddress.ip_network(self.tenant_cidr).prefixlen
            _run([*mine, "ip", "link", "set", "lo", "up"])
            _run([*mine, "ip", "addr", "add", f"{address}/{prefix}", "dev", inner])
            _run([*mine, "ip", "link", "set", inner, "up"])
        except BaseException:
            self._remove_namespace(ns)
            raise
        return ns

    def _remove_namespace(self, ns: dict) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(ns["holder"], 9)
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(ns["holder"], 0)
        # the veth pair goes with the namespace

    def _wrap(self, cmd: list[str]) -> list[str]:
        hide = " && ".join(f'mount -t tmpfs -o mode=0755 tmpfs "${i + 1}"'
                           for i in range(len(self.hidden_paths))) or "true"
        n = len(self.hidden_paths)
        return ["nsenter", f"--net=/proc/{self._netns['holder']}/ns/net", "--",
                "unshare", "--mount", "--propagation", "private", "--",
                "sh", "-c", f'{hide} && shift {n} && exec "$@"', "sh", *self.hidden_paths, *cmd]

    async def start(self):
        self._netns = await asyncio.to_thread(self._make_namespace)
        self.ip = self._netns["address"]
        original = list(self.cmd)
        self.cmd = self._wrap(original)
        try:
            return await super().start()
        except BaseException:
            self._remove_namespace(self._netns)
            self._netns = None
            raise
        finally:
            self.cmd = original

    async def stop(self, now=False):
        try:
            await super().stop(now=now)
        finally:
            if self._netns is not None:
                self._remove_namespace(self._netns)
                self._netns = None
