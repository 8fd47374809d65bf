"""The machine image for tests that need it (built on first use, then reused from the cache)."""

from __future__ import annotations

import os
import shutil
import sys

import pytest

from jupyter_spark_openstack.testing.machines import image as im


def built_image(why: str) -> im.Image:
    """The cached (or newly built) image; skips where it cannot be had: not root on Linux
    (``why`` says what needs root), no apt, no Debian mirror in the apt sources."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        pytest.skip(why)
    if shutil.which("apt-get") is None:
        pytest.skip("not an apt machine: no Debian mirror to build the machine image from")
    try:
        return im.build_image()
    except im.MirrorNotFound as e:
        pytest.skip(str(e))


def needs_root_machines() -> None:
    """Skip unless machines can boot here: root on Linux and systemd-nspawn."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        pytest.skip("booting machines needs root on Linux (systemd-nspawn, mount, cgroups)")
    if shutil.which("systemd-nspawn") is None:
        pytest.skip("systemd-nspawn is missing (apt-get install systemd-container)")


def java_pids_here() -> set[int]:
    """Java processes in this host's PID namespace (a machine's processes are in their own,
    though the host sees them too)."""
    import psutil

    mine = os.readlink("/proc/self/ns/pid")
    out = set()
    for p in psutil.process_iter(["pid", "name"]):
        try:
            if p.info["name"] == "java" and os.readlink(f"/proc/{p.info['pid']}/ns/pid") == mine:
                out.add(p.info["pid"])
        except OSError:
            continue
    return out


OPEN, REFUSED, DROPPED = "open", "refused", "dropped"


def reach_from_machine(machine, ip: str, port: int, timeout: int = 2) -> str:
    """What a TCP connection from inside ``machine`` to ``ip:port`` meets: ``open``, ``refused``
    (the packet reached a host with no listener) or ``dropped`` (no answer: a firewall ate it)."""
    rc = machine.run(["timeout", str(timeout), "bash", "-c", f"exec 3<>/dev/tcp/{ip}/{port}"]).returncode
    return {0: OPEN, 1: REFUSED, 124: DROPPED}.get(rc, f"rc {rc}")


def reach_from_here(ip: str, port: int, timeout: float = 2) -> str:
    """The same from this host (the hub's address on the tenant network)."""
    import socket

    try:
        socket.create_connection((ip, port), timeout=timeout).close()
        return OPEN
    except ConnectionRefusedError:
        return REFUSED
    except TimeoutError:
        return DROPPED
