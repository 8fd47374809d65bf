"""The one place that knows Spark's ports and URL shapes."""

from __future__ import annotations

import random
import socket
from contextlib import closing

MASTER_PORT = 7077            # spark://host:7077
MASTER_WEBUI_PORT = 8080      # http://host:8080/json/
WORKER_WEBUI_PORT = 8081
APP_UI_PORT = 4040            # the driver's UI (kernel)
CONNECT_PORT = 15002          # Spark Connect gRPC (on a cluster head: its TLS terminator)
CONNECT_LOOPBACK_PORT = 15003  # on a cluster head: the Connect server itself, on its loopback
BLOCK_MANAGER_PORT = 7079     # fixed for firewall rules on VMs
DRIVER_PORT = 7078
WORKER_PORT = 7078            # on worker VMs: fixed so a security group can name it


def master_url(host: str, port: int = MASTER_PORT) -> str:
    return f"spark://{host}:{port}"


def master_json_url(webui_url: str) -> str:
    """``http://host:8080`` -> ``http://host:8080/json/``."""
    return webui_url.rstrip("/") + "/json/"


def webui_url(host: str, port: int = MASTER_WEBUI_PORT) -> str:
    return f"http://{host}:{port}"


def connect_url(host: str, port: int = CONNECT_PORT) -> str:
    return f"sc://{host}:{port}"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now (the OS picks it)."""
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """``n`` distinct free ports, held open together so none repeats."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def ephemeral_range() -> tuple[int, int]:
    """The kernel's range for ports bound to 0 (``ip_local_port_range``), or Linux's default."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = (int(x) for x in f.read().split())
        return lo, hi
    except (OSError, ValueError):
        return 32768, 60999


def free_port_outside_ephemeral(host: str = "", low: int = 20000, tries: int = 64) -> int:
    """A free TCP port below the ephemeral range (from ``low``), for a server whose port is
    chosen before it binds (a notebook server): a JVM or anything else that binds port 0 gets
    an ephemeral port and so can never take it in between, as it can take one that
    :func:`free_port` found. Falls back to :func:`free_port` if none is free."""
    lo, _ = ephemeral_range()
    top = lo - 1
    low = min(low, max(1024, top - 1000))
    for _ in range(tries):
        port = random.randint(low, top)
        with closing(socket.socket()) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    return free_port(host or "127.0.0.1")


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
