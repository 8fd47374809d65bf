"""System containers for the emulator's servers: the boot mechanism of its container backend.

A server is the machine image (:mod:`.image`) booted as a system container with
``systemd-nspawn``: its own systemd as PID 1, the real cloud-init reading a NoCloud seed, and
(with a :class:`TenantNetwork`) an address on a private bridge that a process on the host
reaches at the hub's address. Nothing of the project runs inside the machine except what the
user-data installs. Root and Linux only; not imported by the package at run time.

**Boot** (:meth:`Machine.boot`). Per server, in ``<run_dir>/<machine>/``:

* ``upper/``, ``work/``: the overlay's writable layers; the lower layer is the cached image's
  ``rootfs``, which stays read-only and shared;
* ``seed/``: the NoCloud seed, copied to ``/var/lib/cloud/seed/nocloud/`` in the overlay
  before the first boot: ``meta-data`` (``instance-id`` = server id, ``local-hostname`` = name,
  plus extra keys), ``user-data`` (as given) and, on a tenant network, ``network-config``
  (v2, a static address on ``host0``: what a cloud's config drive hands out; no gateway, no DNS);
* ``console.log``: the container's console (systemd's status lines, cloud-init's output, the
  getty), what Nova's ``os-getConsoleOutput`` returns; ``nspawn.log``: the supervisor's and
  systemd-nspawn's own messages; ``machine.json``: what :func:`sweep` needs.

One supervisor process per server (``sh``, the init of a new PID namespace in a new private
mount namespace, ``unshare --mount --propagation private --pid --fork --kill-child
--mount-proc``; on a tenant network entered with ``nsenter --net`` first) moves itself into the
server's own cgroup, mounts a tmpfs for systemd-nspawn's runtime directory, mounts the overlay,
copies the seed in, then runs::

    systemd-nspawn -D MERGED --boot --register=no --keep-unit -M MACHINE
        (--network-bridge=br0 | --private-network) --resolv-conf=off --timezone=off
        --link-journal=no --console=read-only [--uuid=SERVER_ID] [--bind-ro=SPARK:/opt/spark]
        -- [systemd.wants=systemd-networkd.service]

in a loop: exit code 133 means the machine rebooted (with ``--keep-unit`` systemd-nspawn
leaves the restart to its caller, as ``systemd-nspawn@.service`` does with
``RestartForceExitStatus=133``), anything else ends the supervisor. Why each piece:

* ``--register=no --keep-unit``: no systemd/machined on the host to register with or to
  allocate a scope from;
* the tmpfs: systemd-nspawn removes ``/run/systemd/nspawn/propagate/MACHINE`` on exit and
  refuses to remove anything on a disk file system ("Attempted to remove disk file system under
  /run/systemd/nspawn/propagate/NAME") when ``/run`` is not a tmpfs, as here; the tmpfs lives
  in the supervisor's mount namespace only (on ``/run/systemd/nspawn`` if that exists, else on
  ``/run/systemd``), so nothing is created on the host;
* ``--mount-proc``: systemd-nspawn in a PID namespace needs a ``/proc`` of that namespace
  (with the host's, a reboot fails: "Failed to open parent network namespace: No such file or
  directory");
* the per-server cgroup (``jso-machine-<machine>`` in each hierarchy systemd-nspawn uses:
  ``/sys/fs/cgroup/unified`` and ``/sys/fs/cgroup/systemd`` on a hybrid host,
  ``/sys/fs/cgroup`` on a unified one): with ``--keep-unit`` systemd-nspawn creates
  ``payload/`` and ``supervisor/`` under its *own* cgroup, which without this is the root
  cgroup, shared by every machine (and left behind); here each machine has its own tree, which
  :meth:`Machine.delete` removes, and which lists the machine's processes;
* ``systemd.wants=systemd-networkd.service``: the container's "kernel command line" (systemd
  in a container parses its arguments as one): the image's network stack is
  systemd-networkd (cloud-init's ``networkd`` renderer writes the seed's network-config to
  ``/etc/systemd/network/10-cloud-init-host0.network``), but the image does not enable it, and
  with a local NoCloud seed cloud-init never brings interfaces up itself. The image recipe
  should enable it (``systemctl enable systemd-networkd``); until then this enables it for
  every boot, reboots included, without writing into the image.
* ``--uuid``: a server id that is a UUID becomes the machine's ``/etc/machine-id`` (a VM's
  SMBIOS UUID does the same).

**Reboot** (:meth:`Machine.reboot`): ``SIGRTMIN+5`` to the container's PID 1 (systemd starts
``reboot.target``: a clean reboot; ``systemctl reboot`` run inside through ``nsenter -t PID1 -a``
and ``SIGINT``, what ``machinectl reboot`` sends, do the same); its PID 1 exits, systemd-nspawn
exits 133 and the supervisor starts it again on the same overlay (still mounted in its
namespace): the disk survives, cloud-init's per-instance modules do not run again, units
enabled by user-data start again.

**Delete** (:meth:`Machine.delete`): ``SIGRTMIN+4`` to PID 1 (``poweroff.target``, repeated
until it takes), systemd-nspawn exits 0, so does the supervisor, and with the last process of
its namespaces the tmpfs, the overlay and the bind mount are gone; the container's network
namespace goes with its processes and takes the veth with it. After ``timeout`` seconds without
that, :meth:`Machine.kill`: ``SIGKILL`` to the supervisor's ``unshare`` (``--kill-child``
kills the PID namespace's init, and the kernel every process in it and in the container's
nested one). Then it waits until no process is left in the machine's cgroups and no mount of
any process names the machine's directory, removes the cgroups and the directory, and raises
:class:`MachineError` naming whatever is left.

**If this process dies**, every long-lived process it started gets ``SIGKILL``
(``PR_SET_PDEATHSIG``, set from one long-lived launcher thread, because the signal fires when
the *thread* that forked the child ends): the supervisors and with them the machines, and the
tenant network's holder, so the network namespace, its bridge and the host's veth go too.
Only directories and empty cgroups stay; :func:`sweep` removes them.

**Tenant network** (:class:`TenantNetwork`): a network namespace of its own, held by a
``sleep`` process (``unshare --net``) rather than named with ``ip netns add``, which would
leave a ``/run/netns`` bind mount behind on the host and outlive a crashed emulator; in it a
bridge ``br0`` (no address) and the port ``hub`` of a veth pair whose other end is on the host
(``jsoh-<hex>``) with the hub's address (``.1`` of a /24 no interface or route of this host
uses; ``10.87.0.0/24`` first). Each machine's supervisor runs in that namespace, and
systemd-nspawn's ``--network-bridge=br0`` creates the machine's veth there (``vb-<machine>``
on the bridge, ``host0`` in the machine). A host process binds to the hub's address; machines
reach it and each other, and the host reaches them. Machines have no default route: any other
destination is unreachable from inside (and the host does not forward). IPv6 is off on the
bridge and the host's end. Nothing here filters what the bridge forwards: the emulator's
container backend does, by the servers' security groups (:mod:`...emulator.firewall`).

**Measured** (2 shared cores, tests/test_machine_boot.py): boot to ``multi-user.target`` (with
cloud-init done) 1.2-2.7 s, a reboot 1.4-1.8 s, power-off 0.2 s; a booted machine is 8 processes
(systemd, journald, networkd, logind, dbus, haproxy x2, agetty): about 36 MiB PSS, 69 MiB RSS,
plus 9 MiB RSS for its supervisor (sh, systemd-nspawn).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import errno
import hashlib
import ipaddress
import json
import os
import queue
import re
import secrets
import shutil
import signal
import stat
import subprocess
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

__all__ = ["Machine", "MachineError", "MemoryUse", "TenantNetwork", "DEFAULT_CIDRS",
           "DEFAULT_SPARK_HOME", "current_image_rootfs", "sweep", "strip_ansi"]

_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: where the Spark of the pyspark wheel appears in a machine (``preinstalled`` mode's default)
DEFAULT_SPARK_HOME = "/opt/spark"
#: tenant ranges tried in order when none is given: the first no interface or route uses
DEFAULT_CIDRS = tuple(f"10.87.{n}.0/24" for n in range(256))
#: the bridge in the tenant namespace and the hub's port on it
BRIDGE = "br0"
HUB_PORT = "hub"
#: the first address handed to a machine (below it: the hub and room for more services)
FIRST_MACHINE_HOST = 10
#: exit code of systemd-nspawn --keep-unit when the container rebooted
EXIT_REBOOT = 133
#: the supervisor's own exit codes (before systemd-nspawn runs)
EXIT_SETUP = {90: "cgroup or tmpfs setup failed", 91: "the overlay could not be mounted",
              92: "the NoCloud seed could not be copied into the overlay"}
SEED_DIR = "var/lib/cloud/seed/nocloud"
CGROUP_PREFIX = "jso-machine-"
#: the systemd argument that enables the image's network stack for a boot (see the docstring)
NETWORKD_ARG = "systemd.wants=systemd-networkd.service"

_HOSTNAME_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_SAFE_PATH_RE = re.compile(r"/[A-Za-z0-9._+@/=-]*")   # no ':' ',' or white space (overlay, nspawn)
_INIT_ARG_RE = re.compile(r"systemd\.[a-z_.]+=[A-Za-z0-9._@:-]+")
_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_CRLF_RE = re.compile(r"\r+\n")


class MachineError(RuntimeError):
    """A machine or a tenant network could not be booted, reached or removed; the message says
    why (with the supervisor's log or the command's output)."""


def strip_ansi(text: str) -> str:
    """Console text without systemd's colour escapes."""
    return _ANSI_RE.sub("", text)


# ---- processes ---------------------------------------------------------------------------------

def _env() -> dict[str, str]:
    return {"PATH": _PATH, "HOME": "/root", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the thread that started it ends."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class _Launcher:
    """Starts the long-lived processes from one daemon thread that lives as long as this
    process: ``PR_SET_PDEATHSIG`` fires when the *thread* that forked the child ends, so a
    machine started from a short-lived worker thread would otherwise die with that thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def popen(self, argv: Sequence[str], **kw) -> subprocess.Popen:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._serve, daemon=True,
                                                name="jso-machine-launcher")
                self._thread.start()
        fut: Future = Future()
        self._queue.put((list(argv), kw, fut))
        return fut.result()

    def _serve(self) -> None:
        while True:
            argv, kw, fut = self._queue.get()
            try:
                fut.set_result(subprocess.Popen(argv, preexec_fn=_die_with_parent, **kw))
            except BaseException as e:  # noqa: BLE001 - handed to the caller
                fut.set_exception(e)


_launcher = _Launcher()


def _run(argv: Sequence[str], *, timeout: float = 30, check: bool = True,
         what: str | None = None) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, env=_env(),
                              timeout=timeout, stdin=subprocess.DEVNULL)
    except FileNotFoundError as e:
        raise MachineError(f"{argv[0]} not found: {e}") from None
    except subprocess.TimeoutExpired:
        raise MachineError(f"{what or ' '.join(argv)} took more than {timeout:.0f} s") from None
    if check and proc.returncode != 0:
        raise MachineError(f"{what or ' '.join(argv)} exited {proc.returncode}: "
                           f"{(proc.stderr.strip() or proc.stdout.strip())[-2000:]}")
    return proc


def _nspid(pid: int) -> list[int]:
    """The process's PID in each PID namespace, outermost first ([] if it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("NSpid:"):
                    return [int(x) for x in line.split()[1:]]
    except (OSError, ValueError):
        pass
    return []


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def _rss_pss(pid: int) -> tuple[int, int]:
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1]) * 1024
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return rss, pss


def _all_pids() -> list[int]:
    return [int(n) for n in os.listdir("/proc") if n.isdigit()]


def _mount_escape(path: str) -> str:
    """A path as /proc/*/mountinfo writes it (octal escapes for space, tab, newline, '\\')."""
    return (path.replace("\\", "\\134").replace(" ", "\\040").replace("\t", "\\011")
            .replace("\n", "\\012"))


def _mounts_naming(path: Path) -> list[str]:
    """Every mount, in any process's mount namespace, whose mount point or options name
    ``path`` (the overlay's ``upperdir=`` shows even where it is mounted as ``/``), as
    ``pid: line``; each mount namespace is read once."""
    needle = _mount_escape(str(path))
    seen: set[str] = set()
    out = []
    for pid in _all_pids():
        try:
            ns = os.readlink(f"/proc/{pid}/ns/mnt")
            if ns in seen:
                continue
            seen.add(ns)
            with open(f"/proc/{pid}/mountinfo") as f:
                out += [f"{pid}: {line.strip()}" for line in f if needle in line]
        except OSError:
            continue
    return out


# ---- cgroups -----------------------------------------------------------------------------------

_CGROUP_ROOT = Path("/sys/fs/cgroup")


def cgroup_hierarchies() -> list[Path]:
    """The hierarchies systemd-nspawn places a container in: the unified one alone on a
    unified host, the unified one and ``name=systemd`` on a hybrid one."""
    if (_CGROUP_ROOT / "cgroup.controllers").is_file():
        return [_CGROUP_ROOT]
    out = [p for p in (_CGROUP_ROOT / "unified", _CGROUP_ROOT / "systemd")
           if os.path.ismount(p) and (p / "cgroup.procs").is_file()]
    if not out:
        raise MachineError(f"no cgroup hierarchy for systemd-nspawn under {_CGROUP_ROOT} "
                           "(neither cgroup2 nor name=systemd is mounted)")
    return out


def _cgroup_pids(top: Path) -> list[int]:
    pids: list[int] = []
    for d, _, _ in os.walk(top):
        with contextlib.suppress(OSError, ValueError):
            pids += [int(x) for x in Path(d, "cgroup.procs").read_text().split()]
    return pids


def _remove_cgroup(top: Path) -> None:
    if not top.is_dir():
        return
    for d, _, _ in os.walk(top, topdown=False):
        with contextlib.suppress(OSError):     # EBUSY while a process is in it: reported later
            os.rmdir(d)


# ---- the image ---------------------------------------------------------------------------------

def current_image_rootfs(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cached image of the current recipe, or :class:`MachineError` saying how to build
    it (this never builds: that takes minutes and the network to the apt mirror)."""
    from . import image as im
    img = im.find_image(im.recipe_hash(im.recipe()), cache_dir)
    if img is None:
        raise MachineError("no machine image of the current recipe in the cache: build it "
                           "with `python -m jupyter_spark_openstack.testing.machines.image build`")
    return img.rootfs


def _check_host(rootfs: Path) -> None:
    if os.geteuid() != 0:
        raise MachineError("booting a machine needs root (systemd-nspawn, mount, cgroups)")
    for tool in ("systemd-nspawn", "unshare", "nsenter", "ip", "mount"):
        if shutil.which(tool, path=_PATH) is None:
            hint = " (apt-get install systemd-container)" if tool == "systemd-nspawn" else ""
            raise MachineError(f"{tool} not found{hint}")
    with open("/proc/filesystems") as f:
        if not any(line.split()[-1] == "overlay" for line in f if line.strip()):
            raise MachineError("the kernel has no overlay file system (modprobe overlay)")
    if not (rootfs / "usr/lib/os-release").exists() and not (rootfs / "etc/os-release").exists():
        raise MachineError(f"{rootfs} is not an OS tree (no os-release)")


def _safe_path(p: str | os.PathLike, what: str) -> Path:
    s = os.path.abspath(os.fspath(p))
    if not _SAFE_PATH_RE.fullmatch(s):
        raise ValueError(f"{what}: {s!r} may only hold letters, digits and ._+@/=- "
                         "(it goes into mount options and systemd-nspawn's ':' syntax)")
    return Path(s)


# ---- the tenant network ------------------------------------------------------------------------

def _used_networks() -> list[tuple[ipaddress.IPv4Network, str]]:
    """Every IPv4 network an interface address or a (non-default) route of this host uses."""
    out = []
    for link in json.loads(_run(["ip", "-j", "-4", "addr", "show"]).stdout or "[]"):
        for a in link.get("addr_info", []):
            if a.get("family") == "inet":
                net = ipaddress.ip_network(f"{a['local']}/{a['prefixlen']}", strict=False)
                out.append((net, f"address {a['local']}/{a['prefixlen']} on {link.get('ifname')}"))
    for r in json.loads(_run(["ip", "-j", "-4", "route", "show", "table", "all"]).stdout or "[]"):
        dst = r.get("dst")
        if not dst or dst == "default":
            continue
        with contextlib.suppress(ValueError):
            out.append((ipaddress.ip_network(dst, strict=False),
                        f"route {dst} dev {r.get('dev')} table {r.get('table', 'main')}"))
    return out


class TenantNetwork:
    """A private IPv4 /24 (or smaller) in a network namespace of its own: bridge ``br0``, the
    hub's address (``.1`` by default) on the host end of a veth pair into it, machines from
    ``.10`` up. Use as a context manager, or :meth:`start` and :meth:`close`."""

    _taken: set[ipaddress.IPv4Network] = set()
    _taken_lock = threading.Lock()

    def __init__(self, cidr: str | None = None, *, hub_host: int = 1) -> None:
        self._requested = cidr
        self._hub_host = hub_host
        self.network: ipaddress.IPv4Network | None = None
        self.hub_address: str | None = None
        self.host_interface = "jsoh-" + secrets.token_hex(4)   # 13 characters (limit 15)
        self._holder: subprocess.Popen | None = None
        self._in_use: dict[str, str] = {}                     # address -> server id
        self._machines: set[Machine] = set()
        self._lock = threading.Lock()

    # -- life cycle

    def __enter__(self) -> TenantNetwork:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close(force=True)

    @property
    def prefixlen(self) -> int:
        assert self.network is not None
        return self.network.prefixlen

    @property
    def netns_path(self) -> str:
        """The namespace, for ``nsenter --net=`` (valid while the holder runs)."""
        if self._holder is None or self._holder.poll() is not None:
            raise MachineError("the tenant network is not running")
        return f"/proc/{self._holder.pid}/ns/net"

    @property
    def holder_pid(self) -> int | None:
        return self._holder.pid if self._holder is not None else None

    def _pick(self) -> ipaddress.IPv4Network:
        used = _used_networks()
        candidates = [self._requested] if self._requested else list(DEFAULT_CIDRS)
        reasons = []
        for c in candidates:
            net = ipaddress.ip_network(c, strict=True)
            if not isinstance(net, ipaddress.IPv4Network) or not net.is_private or \
                    net.prefixlen > 28 or net.prefixlen < 16:
                raise ValueError(f"cidr: {c!r} must be a private IPv4 network of /16 to /28")
            clash = [why for other, why in used if other.overlaps(net)] + \
                [f"another tenant network of this process ({t})"
                 for t in self._taken if t.overlaps(net)]
            if not clash:
                return net
            reasons.append(f"{net}: {'; '.join(clash)}")
        raise MachineError("no free range for the tenant network: " + " | ".join(reasons[:4]))

    def start(self) -> TenantNetwork:
        if self._holder is not None:
            return self
        if os.geteuid() != 0:
            raise MachineError("a tenant network needs root (network namespaces, veth)")
        with self._taken_lock:
            self.network = self._pick()
            TenantNetwork._taken.add(self.network)
        try:
            self.hub_address = str(self.network.network_address + self._hub_host)
            self._holder = _launcher.popen(
                ["unshare", "--net", "--", "sleep", "infinity"], env=_env(),
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                start_new_session=True)
            own = os.readlink("/proc/self/ns/net")
            deadline = time.monotonic() + 10
            while True:
                if self._holder.poll() is not None:
                    raise MachineError("unshare --net exited "
                                       f"{self._holder.returncode}: {self._holder.stderr.read()}")
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{self._holder.pid}/ns/net") != own:
                        break
                if time.monotonic() > deadline:
                    raise MachineError("the tenant network namespace did not appear in 10 s")
                time.sleep(0.02)
            ns = ["nsenter", f"--net={self.netns_path}", "--"]
            _run([*ns, "ip", "link", "set", "lo", "up"])
            _run([*ns, "sh", "-c", "echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6; "
                                   "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6"], check=False)
            _run([*ns, "ip", "link", "add", BRIDGE, "type", "bridge"])
            _run([*ns, "ip", "link", "set", BRIDGE, "up"])
            _run(["ip", "link", "add", self.host_interface, "type", "veth", "peer", "name",
                  HUB_PORT, "netns", str(self._holder.pid)])
            _run([*ns, "ip", "link", "set", HUB_PORT, "master", BRIDGE])
            _run([*ns, "ip", "link", "set", HUB_PORT, "up"])
            with contextlib.suppress(OSError):
                Path(f"/proc/sys/net/ipv6/conf/{self.host_interface}/disable_ipv6").write_text("1")
            _run(["ip", "addr", "add", f"{self.hub_address}/{self.prefixlen}",
                  "dev", self.host_interface])
            _run(["ip", "link", "set", self.host_interface, "up"])
        except BaseException:
            self.close(force=True)
            raise
        atexit.register(self.close, force=True)
        return self

    def close(self, *, force: bool = False, timeout: float = 30) -> None:
        """Remove the network: its namespace (the holder's), with the bridge and both ends of
        the hub's veth. Machines still on it are deleted first with ``force``, else
        :class:`MachineError`."""
        live = [m for m in list(self._machines) if not m.deleted]
        if live and not force:
            raise MachineError("machines still on the tenant network: "
                               + ", ".join(m.name for m in live))
        for m in live:
            with contextlib.suppress(MachineError):
                m.delete()
        if self._holder is not None and self._holder.poll() is None:
            self._holder.kill()
        if self._holder is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._holder.wait(timeout)
            if self._holder.stderr:
                self._holder.stderr.close()
        # the namespace is freed asynchronously once its last process is gone
        deadline = time.monotonic() + timeout
        while os.path.exists(f"/sys/class/net/{self.host_interface}") and \
                time.monotonic() < deadline:
            time.sleep(0.05)
        if os.path.exists(f"/sys/class/net/{self.host_interface}"):
            _run(["ip", "link", "del", self.host_interface], check=False)
        with self._taken_lock:
            if self.network is not None:
                TenantNetwork._taken.discard(self.network)
        with contextlib.suppress(Exception):
            atexit.unregister(self.close)
        if os.path.exists(f"/sys/class/net/{self.host_interface}"):
            raise MachineError(f"{self.host_interface} is still there after {timeout:.0f} s")

    # -- addresses

    def allocate(self, server_id: str) -> str:
        """The next free machine address (what a DHCP server or Neutron port would assign)."""
        if self.network is None:
            raise MachineError("the tenant network is not started")
        with self._lock:
            for host in self.network.hosts():
                a = str(host)
                if int(host) - int(self.network.network_address) < FIRST_MACHINE_HOST:
                    continue
                if a not in self._in_use:
                    self._in_use[a] = server_id
                    return a
        raise MachineError(f"no free address left in {self.network}")

    def owner(self, address: str) -> str | None:
        """The server ``address`` is allocated to, if any."""
        with self._lock:
            return self._in_use.get(address)

    def release(self, address: str) -> None:
        with self._lock:
            self._in_use.pop(address, None)

    def links(self) -> list[str]:
        """The interface names in the tenant namespace (``br0``, ``hub``, ``vb-*``)."""
        out = _run(["nsenter", f"--net={self.netns_path}", "--", "ip", "-j", "link", "show"]).stdout
        return [link["ifname"] for link in json.loads(out or "[]")]

    def network_config(self, address: str) -> dict:
        """The NoCloud network-config (v2) of a machine at ``address``: a static address on
        ``host0`` (systemd-nspawn's name for the container's end of its veth), no gateway and no
        DNS: the tenant network reaches nothing but itself and the hub."""
        return {"version": 2,
                "ethernets": {"host0": {"addresses": [f"{address}/{self.prefixlen}"]}}}


# ---- the machine -------------------------------------------------------------------------------

_SUPERVISOR = r"""set -u
lower=$1 dir=$2 cgroups=$3
shift 3
say() { echo "jso-supervisor: $*" >&2; }
for cg in $cgroups; do
  echo 0 > "$cg/cgroup.procs" || { say "cannot enter cgroup $cg"; exit 90; }
done
if [ -d /run/systemd/nspawn ]; then rt=/run/systemd/nspawn
elif [ -d /run/systemd ]; then rt=/run/systemd
else rt=/run; fi
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs "$rt" || { say "cannot mount a tmpfs on $rt"; exit 90; }
mkdir -p /run/systemd/nspawn || exit 90
mount -t overlay overlay -o "lowerdir=$lower,upperdir=$dir/upper,workdir=$dir/work" "$dir/merged" \
  || { say "cannot mount the overlay on $dir/merged"; exit 91; }
mkdir -p "$dir/merged/__SEED__" && cp "$dir/seed/"* "$dir/merged/__SEED__/" \
  || { say "cannot copy the NoCloud seed"; exit 92; }
n=0
while :; do
  n=$((n + 1))
  say "boot $n"
  "$@"
  rc=$?
  say "systemd-nspawn exited $rc"
  [ "$rc" -eq 133 ] || exit "$rc"
done
""".replace("__SEED__", SEED_DIR)


@dataclass(frozen=True)
class MemoryUse:
    """Memory of one machine's processes (from ``/proc/PID/smaps_rollup``): ``rss_bytes`` counts
    shared pages in every process that maps them, ``pss_bytes`` divides them among the
    sharers (the fairer per-machine figure); the supervisor (``sh``, ``systemd-nspawn``) is
    counted apart."""

    processes: int
    rss_bytes: int
    pss_bytes: int
    supervisor_processes: int
    supervisor_rss_bytes: int
    by_command: dict[str, int]


def _machine_name(server_id: str) -> str:
    # the veth is "vb-" + this: 14 characters, under the kernel's 15
    return "j" + hashlib.sha256(server_id.encode()).hexdigest()[:10]


def _dump(obj) -> str:
    """YAML for cloud-init: JSON is YAML, and needs no quoting rules of our own."""
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


class Machine:
    """One server booted as a system container. :meth:`boot` starts it and returns at once
    (Nova's ``BUILD``); :meth:`wait_booted` waits for ``multi-user.target``."""

    #: machines not deleted yet (deleted at exit if still there)
    _live: set[Machine] = set()

    def __init__(self, *, name: str, server_id: str, machine: str, directory: Path,
                 rootfs: Path, network: TenantNetwork | None, address: str | None,
                 cgroups: list[Path]) -> None:
        self.name = name
        self.server_id = server_id
        self.machine = machine
        self.dir = directory
        self.rootfs = rootfs
        self.network = network
        self.address = address
        self.cgroups = cgroups
        self.console_path = directory / "console.log"
        self.log_path = directory / "nspawn.log"
        self.deleted = False
        self.boot_seconds: float | None = None     # boot to multi-user.target, first boot
        self._proc: subprocess.Popen | None = None
        self._t_start = 0.0
        self._sh_pid: int | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<Machine {self.name} {self.machine} {self.address or 'no network'} {self.status}>"

    # -- boot

    @classmethod
    def boot(cls, name: str, server_id: str, user_data: str | bytes,
             meta_data: Mapping | None = None,
             spark_home_bind: tuple[str | os.PathLike, str] | None = None, *,
             run_dir: str | os.PathLike, rootfs: str | os.PathLike | None = None,
             network: TenantNetwork | None = None,
             binds: Iterable[tuple[str | os.PathLike, str]] = (),
             address: str | None = None, init_args: Sequence[str] = ()) -> Machine:
        """Start server ``name`` (a host name: the machine's ``local-hostname``) with id
        ``server_id`` (its ``instance-id``; a UUID also becomes its machine id), its
        ``user_data`` and extra ``meta_data`` keys, in ``run_dir/<machine>/``.
        ``spark_home_bind`` = (host directory, path in the machine), bind-mounted read-only,
        like each of ``binds``. On ``network`` it gets ``address`` (one :meth:`TenantNetwork.allocate`
        gave for this server: the port Neutron made when the server was created) or else the
        next free address; it is released when the machine is deleted. ``init_args``: more
        arguments for the machine's systemd (its kernel command line), ``systemd.*=value``
        only (e.g. ``systemd.mask=UNIT``)."""
        if not isinstance(name, str) or not _HOSTNAME_RE.fullmatch(name):
            raise ValueError(f"name: {name!r} is not a host name (letters, digits, '-', 1-63)")
        if not isinstance(server_id, str) or not server_id or len(server_id) > 255 or \
                any(c.isspace() or not c.isprintable() for c in server_id):
            raise ValueError(f"server_id: {server_id!r} must be printable without white space")
        extra = dict(meta_data or {})
        for key in ("instance-id", "local-hostname"):
            if key in extra:
                raise ValueError(f"meta_data: {key!r} is the server's own (id and name)")
        root = Path(rootfs) if rootfs is not None else current_image_rootfs()
        root = _safe_path(root, "rootfs")
        run = _safe_path(run_dir, "run_dir")
        mounts = []
        for src, dst in ([spark_home_bind] if spark_home_bind else []) + list(binds):
            s = _safe_path(src, "bind source")
            if not s.is_dir():
                raise ValueError(f"bind source: {s} is not a directory")
            d = PurePosixPath(dst)
            if not d.is_absolute() or ".." in d.parts or not _SAFE_PATH_RE.fullmatch(str(d)) \
                    or str(d) == "/":
                raise ValueError(f"bind target: {dst!r} must be an absolute path in the machine")
            mounts.append(f"--bind-ro={s}:{d}")
        init = list(init_args)
        for a in init:
            if not isinstance(a, str) or not _INIT_ARG_RE.fullmatch(a):
                raise ValueError(f"init_args: {a!r} is not allowed; expected systemd.NAME=VALUE "
                                 "(letters, digits, '.', '_', '-', '@', ':' only)")
        _check_host(root)
        if network is not None and network.network is None:
            raise MachineError("the tenant network is not started")
        if address is not None and (network is None or network.owner(address) != server_id):
            raise ValueError(f"address: {address!r} was not allocated to server {server_id} "
                             "on this machine's network")

        machine = _machine_name(server_id)
        directory = run / machine
        cgroups = [h / f"{CGROUP_PREFIX}{machine}" for h in cgroup_hierarchies()]
        busy = [str(cg) for cg in cgroups if cg.exists() and _cgroup_pids(cg)]
        if busy:
            raise MachineError(f"machine {machine} (server {server_id}) is already running: "
                               f"its cgroups have processes ({', '.join(busy)})")
        run.mkdir(parents=True, exist_ok=True)
        try:
            directory.mkdir(mode=0o700)
        except FileExistsError:
            raise MachineError(f"{directory} exists: server {server_id} is already booted here "
                               "(or was not deleted; sweep() removes what is not running)") from None
        if address is None and network is not None:
            address = network.allocate(server_id)
        m = cls(name=name, server_id=server_id, machine=machine, directory=directory,
                rootfs=root, network=network, address=address, cgroups=cgroups)
        try:
            for sub in ("upper", "work", "merged", "seed"):
                (directory / sub).mkdir(mode=0o755 if sub in ("upper", "merged") else 0o700)
            seed = directory / "seed"
            meta = {"instance-id": server_id, "local-hostname": name, **extra}
            files: dict[str, str | bytes] = {"meta-data": _dump(meta), "user-data": user_data}
            if network is not None and address is not None:
                files["network-config"] = _dump(network.network_config(address))
            for fname, data in files.items():
                fd = os.open(seed / fname, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                             0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(data.encode() if isinstance(data, str) else data)
            (directory / "machine.json").write_text(json.dumps({
                "name": name, "server_id": server_id, "machine": machine,
                "address": address, "rootfs": str(root),
                "cgroups": [str(c) for c in cgroups]}, indent=2) + "\n")
            for cg in cgroups:
                cg.mkdir(exist_ok=True)
            m._start(mounts, init)
        except BaseException:
            m.kill()
            with contextlib.suppress(MachineError, OSError):
                m._discard(wait=10)
            raise
        Machine._live.add(m)
        if network is not None:
            network._machines.add(m)
        return m

    def _nspawn_argv(self, mounts: list[str], init_args: Sequence[str] = ()) -> list[str]:
        argv = ["systemd-nspawn", "-D", str(self.dir / "merged"), "--boot", "--register=no",
                "--keep-unit", f"--machine={self.machine}",
                f"--network-bridge={BRIDGE}" if self.network is not None else "--private-network",
                "--resolv-conf=off", "--timezone=off", "--link-journal=no",
                "--console=read-only"]
        with contextlib.suppress(ValueError):
            argv.append(f"--uuid={uuid.UUID(self.server_id)}")
        argv += mounts
        argv.append("--")
        if self.network is not None:
            argv.append(NETWORKD_ARG)
        argv += init_args
        return argv

    def _start(self, mounts: list[str], init_args: Sequence[str] = ()) -> None:
        argv: list[str] = []
        if self.network is not None:
            argv += ["nsenter", f"--net={self.network.netns_path}", "--"]
        argv += ["unshare", "--mount", "--propagation", "private", "--pid", "--fork",
                 "--kill-child", "--mount-proc", "sh", "-c", _SUPERVISOR, "jso-supervisor",
                 str(self.rootfs), str(self.dir), " ".join(str(c) for c in self.cgroups),
                 *self._nspawn_argv(mounts, init_args)]
        console = os.open(self.console_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        log = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            self._t_start = time.monotonic()
            self._proc = _launcher.popen(argv, stdin=subprocess.DEVNULL, stdout=console,
                                         stderr=log, env=_env(), start_new_session=True)
        finally:
            os.close(console)
            os.close(log)

    # -- state

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def status(self) -> str:
        """``DELETED``, ``SHUTOFF`` (the supervisor ended: powered off from inside, or failed),
        ``ACTIVE`` (multi-user.target was reached) or ``BUILD``."""
        if self.deleted:
            return "DELETED"
        if not self.running:
            return "SHUTOFF"
        return "ACTIVE" if self.boot_seconds is not None else "BUILD"

    @property
    def exit_code(self) -> int | None:
        """The supervisor's exit code once it ended: 0 after a power-off, systemd-nspawn's
        (or :data:`EXIT_SETUP`'s) after a failure, -9 after :meth:`kill`."""
        return self._proc.poll() if self._proc is not None else None

    @property
    def supervisor_pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def pids(self) -> list[int]:
        """Every process in the machine's cgroups (the supervisor's ``sh`` and
        ``systemd-nspawn``, and the container's)."""
        return sorted({p for cg in self.cgroups for p in _cgroup_pids(cg)})

    def _pids_by_level(self) -> tuple[int | None, int | None, list[int]]:
        """(the supervisor's sh, the container's PID 1, the container's processes)."""
        sh = leader = None
        inner: list[int] = []
        for pid in self.pids():
            ns = _nspid(pid)
            if len(ns) == 2 and ns[-1] == 1:
                sh = pid
            elif len(ns) >= 3:
                inner.append(pid)
                if ns[-1] == 1:
                    leader = pid
        if sh is not None:
            self._sh_pid = sh
        return sh, leader, inner

    def leader_pid(self) -> int | None:
        """The host PID of the container's PID 1 (None while it is not running)."""
        return self._pids_by_level()[1]

    @property
    def boots(self) -> int:
        """How many times systemd-nspawn started this machine (1 + reboots)."""
        try:
            return self.log_path.read_text(errors="replace").count("jso-supervisor: boot ")
        except OSError:
            return 0

    def supervisor_log(self, tail: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    def console(self, length: int | None = None, *, plain: bool = False) -> str:
        """The console output, all of it or its last ``length`` lines (Nova's ``length``),
        with the pty's ``\r\n`` (and ``\r\r\n``) line ends as ``\n``; ``plain`` strips
        systemd's colour escapes."""
        try:
            text = self.console_path.read_bytes().decode("utf-8", errors="replace")
        except FileNotFoundError:
            text = ""
        text = _CRLF_RE.sub("\n", text)
        if plain:
            text = strip_ansi(text)
        if length is not None:
            text = "".join(text.splitlines(keepends=True)[-length:]) if length > 0 else ""
        return text

    def _failed(self, what: str) -> MachineError:
        rc = self._proc.poll() if self._proc is not None else None
        why = f" ({EXIT_SETUP[rc]})" if rc in EXIT_SETUP else ""
        return MachineError(f"machine {self.name} ({self.machine}) {what}; supervisor exit code "
                            f"{rc}{why}\n--- nspawn.log (end) ---\n{self.supervisor_log(2500)}"
                            f"\n--- console (end) ---\n{self.console(20, plain=True)}")

    # -- inside the machine

    def run(self, argv: Sequence[str], *, timeout: float = 60,
            check: bool = False) -> subprocess.CompletedProcess:
        """Run ``argv`` in the machine (all its namespaces, root): the test's view from inside,
        not something a cloud does."""
        leader = self.leader_pid()
        if leader is None:
            raise MachineError(f"machine {self.name} is not running")
        return _run(["nsenter", "-t", str(leader), "-a", "--", *argv], timeout=timeout,
                    check=check, what=f"{' '.join(argv)} in {self.name}")

    def read_file(self, path: str) -> bytes:
        """A file of the machine's disk, read from the overlay: the merged view while it runs,
        the upper layer (what the machine wrote) once it is off. No symbolic link is followed
        (they point into the machine, not the host)."""
        parts = PurePosixPath(path).parts
        if not parts or parts[0] != "/" or ".." in parts or len(parts) < 2:
            raise ValueError(f"path: {path!r} must be an absolute file path in the machine")
        base = None
        if self.running:
            sh = self._pids_by_level()[0] or self._sh_pid
            if sh is not None:
                base = f"/proc/{sh}/root{self.dir}/merged"
        if base is None or not os.path.isdir(base):
            base = str(self.dir / "upper")
        fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for part in parts[1:-1]:
                nfd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                              dir_fd=fd)
                os.close(fd)
                fd = nfd
            ffd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                          dir_fd=fd)
        finally:
            os.close(fd)
        with os.fdopen(ffd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise OSError(errno.EINVAL, f"{path} is not a regular file in {self.name}")
            return f.read()

    def wait_booted(self, timeout: float = 120, *, since: float | None = None) -> float:
        """Wait until the machine's systemd finished starting up (``systemctl
        is-system-running --wait``: every start job done, cloud-init's included) and return
        the seconds from ``since`` (default: the start of the supervisor) to its
        ``multi-user.target`` (the container shares the host's monotonic clock). Raises
        :class:`MachineError` with the logs if it stops or takes longer."""
        t0 = self._t_start if since is None else since
        deadline = time.monotonic() + timeout
        state = ""
        while True:
            if not self.running:
                raise self._failed("stopped before finishing its boot")
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._failed(f"did not finish booting in {timeout:.0f} s (state {state!r})")
            leader = self.leader_pid()
            if leader is not None and _comm(leader) == "systemd":
                with contextlib.suppress(MachineError):
                    r = self.run(["systemctl", "is-system-running", "--wait"], timeout=left)
                    state = r.stdout.strip()
                    if state in ("running", "degraded"):
                        ts = self.run(["systemctl", "show", "--value", "-p",
                                       "ActiveEnterTimestampMonotonic", "multi-user.target"],
                                      timeout=10).stdout.strip()
                        if ts.isdigit() and int(ts) > 0 and int(ts) / 1e6 >= t0 - 1:
                            seconds = int(ts) / 1e6 - t0
                            if since is None and self.boot_seconds is None:
                                self.boot_seconds = seconds
                            return seconds
            time.sleep(0.2)

    def wait_console(self, pattern: str, timeout: float = 120, *, plain: bool = True) -> re.Match:
        """Wait for ``pattern`` (a regular expression) in the console."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.console(plain=plain))
            if m:
                return m
            if not self.running:
                raise self._failed(f"stopped before its console showed {pattern!r}")
            if time.monotonic() > deadline:
                raise self._failed(f"console did not show {pattern!r} in {timeout:.0f} s")
            time.sleep(0.2)

    def memory(self) -> MemoryUse:
        _, _, inner = self._pids_by_level()
        inner_set = set(inner)
        rss = pss = srss = 0
        by: dict[str, int] = {}
        sup = 0
        for pid in self.pids():
            r, p = _rss_pss(pid)
            if pid in inner_set:
                rss += r
                pss += p
                c = _comm(pid) or "?"
                by[c] = by.get(c, 0) + p
            else:
                srss += r
                sup += 1
        return MemoryUse(processes=len(inner), rss_bytes=rss, pss_bytes=pss,
                         supervisor_processes=sup, supervisor_rss_bytes=srss,
                         by_command=dict(sorted(by.items(), key=lambda kv: -kv[1])))

    # -- actions

    def _signal_leader(self, sig: int) -> int | None:
        leader = self.leader_pid()
        if leader is not None and _comm(leader) == "systemd":
            with contextlib.suppress(ProcessLookupError):
                os.kill(leader, sig)
                return leader
        return None

    def reboot(self, timeout: float = 120) -> float:
        """Reboot the machine (``SIGRTMIN+5`` to its systemd: ``reboot.target``) and wait for
        the new boot's ``multi-user.target``; returns the seconds from the request to it."""
        with self._lock:
            if not self.running:
                raise MachineError(f"machine {self.name} is not running ({self.status})")
            before = self.boots
            t0 = time.monotonic()
            old = self._signal_leader(signal.SIGRTMIN + 5)
            if old is None:
                raise MachineError(f"machine {self.name} has no running systemd to reboot")
            deadline = t0 + timeout
            while self.boots <= before or self.leader_pid() in (None, old):
                if not self.running:
                    raise self._failed("stopped instead of rebooting")
                if time.monotonic() > deadline:
                    raise self._failed(f"did not come back from a reboot in {timeout:.0f} s")
                time.sleep(0.1)
            return self.wait_booted(max(1.0, deadline - time.monotonic()), since=t0)

    def kill(self) -> None:
        """Power off hard: SIGKILL to the supervisor's ``unshare`` (``--kill-child`` takes its
        PID namespace, and with it the container's, down)."""
        if self._proc is not None and self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()
        # the sh (PID namespace init) gets SIGKILL from --kill-child; make sure of it
        for pid in self.pids():
            if len(_nspid(pid)) == 2 and _nspid(pid)[-1] == 1:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def stop(self, timeout: float = 60) -> bool:
        """Power off (``SIGRTMIN+4``, repeated every second until systemd takes it); after
        ``timeout`` seconds :meth:`kill`. True if it powered off cleanly."""
        clean = True
        if self._proc is not None and self._proc.poll() is None:
            deadline = time.monotonic() + timeout
            while self._proc.poll() is None and time.monotonic() < deadline:
                self._signal_leader(signal.SIGRTMIN + 4)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._proc.wait(min(1.0, max(0.05, deadline - time.monotonic())))
            if self._proc.poll() is None:
                clean = False
                self.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._proc.wait(10)
        return clean

    def leftovers(self) -> list[str]:
        """What of this machine still exists: processes, mounts, its veth, cgroups, files."""
        out = []
        if self._proc is not None and self._proc.poll() is None:
            out.append(f"supervisor process {self._proc.pid}")
        out += [f"process {p} ({_comm(p)})" for p in self.pids()]
        out += [f"mount {m}" for m in _mounts_naming(self.dir)]
        if self.network is not None and self.network._holder is not None and \
                self.network._holder.poll() is None:
            with contextlib.suppress(MachineError):
                out += [f"interface {i} in the tenant namespace" for i in self.network.links()
                        if i == f"vb-{self.machine}"]
        out += [f"cgroup {cg}" for cg in self.cgroups if cg.exists()]
        if os.path.lexists(self.dir):
            out.append(f"directory {self.dir}")
        return out

    def delete(self, timeout: float = 60) -> None:
        """Power off, wait, and remove everything of the machine (see the module docstring);
        :class:`MachineError` naming what is left, if anything is."""
        with self._lock:
            if self.deleted:
                return
            self.stop(timeout)
            self._discard(wait=30)

    def _discard(self, wait: float = 0) -> None:
        """After the supervisor ended: wait for the processes, mounts and veth to go, remove
        the cgroups and the directory, release the address."""
        deadline = time.monotonic() + wait
        while True:
            left = [x for x in self.leftovers() if not x.startswith(("cgroup ", "directory "))]
            if not left or time.monotonic() > deadline:
                break
            if any(x.startswith("process ") for x in left):
                self.kill()
            time.sleep(0.1)
        if left:
            raise MachineError(f"machine {self.name} not removed, still there: {'; '.join(left)}")
        for cg in self.cgroups:
            _remove_cgroup(cg)
        if os.path.lexists(self.dir):
            if _mounts_naming(self.dir):
                raise MachineError(f"not removing {self.dir}: still mounted")
            shutil.rmtree(self.dir)
        if self.network is not None and self.address is not None:
            self.network.release(self.address)
        self.deleted = True
        Machine._live.discard(self)
        if self.network is not None:
            self.network._machines.discard(self)
        left = self.leftovers()
        if left:
            raise MachineError(f"machine {self.name} not removed, still there: {'; '.join(left)}")


def sweep(run_dir: str | os.PathLike) -> list[str]:
    """Remove what machines of ``run_dir`` left when the process that booted them died (their
    directories and empty cgroups; the processes, mounts and veths went with it): every
    machine directory there whose cgroups hold no process and that no mount names. Returns
    what it removed."""
    removed = []
    run = Path(run_dir)
    if not run.is_dir():
        return removed
    for d in sorted(run.iterdir()):
        meta_file = d / "machine.json"
        if d.is_symlink() or not d.is_dir() or not meta_file.is_file():
            continue
        try:
            meta = json.loads(meta_file.read_text())
            cgroups = [Path(c) for c in meta.get("cgroups", [])]
        except (OSError, ValueError):
            continue
        if any(c.parent not in cgroup_hierarchies() or not c.name.startswith(CGROUP_PREFIX)
               for c in cgroups):
            continue
        if any(_cgroup_pids(c) for c in cgroups) or _mounts_naming(d):
            continue
        for c in cgroups:
            _remove_cgroup(c)
            removed.append(str(c))
        shutil.rmtree(d)
        removed.append(str(d))
    return removed


def _delete_all_at_exit() -> None:
    for m in list(Machine._live):
        with contextlib.suppress(Exception):
            m.delete(timeout=10)


atexit.register(_delete_all_at_exit)
