"""Security groups enforced on the tenant network (the container boot backend), with nftables.

Neutron filters each port by the ingress rules of its security groups. Here the machines' ports
are on one bridge (``br0``) in the tenant network's namespace, so :class:`SecurityGroupFirewall`
keeps one nftables table there, ``bridge jso_sg``, whose ``forward`` chain filters every frame
the bridge forwards to a server's address: the hub's (it comes in through the ``hub`` port) and
the other machines' alike. The table is rebuilt from the cloud model (:func:`ruleset`) and
replaced in one ``nft -f`` transaction whenever what it depends on changes: a server gets its
address or is deleted, a rule is added or deleted, a group is deleted.

What a server admits, per ingress rule of any of its groups (IPv4 rules; IPv6 is off on the
tenant network):

* from ``remote_ip_prefix`` (none: anywhere), or from the addresses of the servers in
  ``remote_group_id`` (a group with no server yet: nobody);
* ``protocol`` ``tcp``/``udp`` with ``port_range_min``-``port_range_max`` (none: all ports),
  ``icmp``, or none: everything.

Everything else sent to it is dropped, but unlike Neutron the filter keeps no connection state
(the bridge family's conntrack is not needed): it drops a TCP connection *attempt* (SYN without
ACK), any UDP datagram and an ICMP echo request; the answers to connections the server opened
itself (SYN-ACK and later segments) pass, and egress is never filtered, as the stock egress
rules allow. ARP is not IP and passes. That is the difference from a real cloud: a connection
the server opened lets its peer send TCP segments back, but never open one.
"""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterable

TABLE = "jso_sg"
NFT = "nft"


class FirewallError(RuntimeError):
    """The ruleset could not be applied (``nft`` missing or refusing it): the message says why."""


def _sources(rule: dict, members: dict[str, list[str]]) -> list[str] | None:
    """The source addresses/prefixes of an ingress rule; ``[]``: nobody; None: anywhere."""
    if rule.get("remote_group_id"):
        return sorted(members.get(rule["remote_group_id"], []))
    prefix = rule.get("remote_ip_prefix")
    if not prefix:
        return None
    net = ipaddress.ip_network(prefix, strict=False)
    return None if net.prefixlen == 0 else [str(net)]


def _match(rule: dict) -> str | None:
    """The protocol/port part of an nft rule; None for a protocol not filtered here."""
    proto = (str(rule["protocol"]).lower() if rule.get("protocol") is not None else None)
    lo, hi = rule.get("port_range_min"), rule.get("port_range_max")
    if proto in (None, "any", "0"):
        return ""
    if proto in ("tcp", "6", "udp", "17"):
        name = "tcp" if proto in ("tcp", "6") else "udp"
        if lo is None and hi is None:
            return f"meta l4proto {name}"
        lo = 1 if lo is None else int(lo)
        hi = 65535 if hi is None else int(hi)
        return f"{name} dport {lo}" if lo == hi else f"{name} dport {lo}-{hi}"
    if proto in ("icmp", "1"):
        return "meta l4proto icmp"
    return None


def ruleset(servers: Iterable[tuple[str, list[str]]], groups: Iterable[dict]) -> str:
    """The nft script that makes the table what ``servers`` (``(address, [group id, ...])``,
    each address once) and ``groups`` (Neutron's groups with their ``rules``) say; applied in
    one transaction (the table is created, deleted and made anew)."""
    servers = [(a, list(g)) for a, g in servers]
    groups = {g["id"]: g for g in groups}
    members: dict[str, list[str]] = {}
    for addr, gids in servers:
        for gid in gids:
            members.setdefault(gid, []).append(addr)
    lines: list[str] = []
    for addr, gids in sorted(servers, key=lambda s: ipaddress.ip_address(s[0])):
        lines.append(f"# {addr}: groups {', '.join(gids) or 'none'}")
        for gid in gids:
            for r in (groups.get(gid) or {}).get("rules", []):
                if r.get("direction") != "ingress" or r.get("ethertype", "IPv4") != "IPv4":
                    continue
                src, what = _sources(r, members), _match(r)
                if what is None or src == []:
                    continue
                parts = [f"ip daddr {addr}"]
                if src is not None:
                    parts.append(f"ip saddr {{ {', '.join(src)} }}")
                if what:
                    parts.append(what)
                lines.append(" ".join(parts) + " accept")
        lines += [f"ip daddr {addr} tcp flags & (syn | ack) == syn drop",
                  f"ip daddr {addr} meta l4proto udp drop",
                  f"ip daddr {addr} icmp type echo-request drop"]
    body = "\n".join("    " + x for x in lines)
    return (f"table bridge {TABLE}\ndelete table bridge {TABLE}\n"
            f"table bridge {TABLE} {{\n  chain forward {{\n"
            "    type filter hook forward priority 0; policy accept;\n"
            f"{body}\n  }}\n}}\n")


class SecurityGroupFirewall:
    """Keeps the table of the tenant namespace ``netns_path()`` in step with ``snapshot()``
    (a callable returning ``(servers, groups)`` as :func:`ruleset` takes them)."""

    def __init__(self, netns_path: Callable[[], str],
                 snapshot: Callable[[], tuple[list[tuple[str, list[str]]], list[dict]]]):
        self._nft = shutil.which(NFT) or shutil.which(NFT, path="/usr/sbin:/sbin")
        if self._nft is None:
            raise FirewallError("nft not found: the emulator enforces security groups on the "
                                "tenant network with nftables (apt-get install nftables)")
        self._netns_path = netns_path
        self._snapshot = snapshot
        self._lock = threading.Lock()

    def apply(self) -> str:
        """Rebuild the table from the model now; the script applied."""
        with self._lock:
            script = ruleset(*self._snapshot())
            res = subprocess.run(["nsenter", f"--net={self._netns_path()}", "--", self._nft, "-f", "-"],
                                 input=script, capture_output=True, text=True, timeout=30)
            if res.returncode != 0:
                raise FirewallError(f"nft refused the security-group ruleset: {res.stderr.strip()}\n{script}")
            return script

    def listing(self) -> str:
        """What the kernel holds (``nft list table bridge jso_sg``)."""
        res = subprocess.run(["nsenter", f"--net={self._netns_path()}", "--", self._nft, "list",
                              "table", "bridge", TABLE], capture_output=True, text=True, timeout=30)
        return res.stdout if res.returncode == 0 else ""
