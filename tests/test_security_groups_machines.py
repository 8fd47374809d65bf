"""Security groups are enforced on the emulator's tenant network (container backend): attacks
from one machine on another, and from the hub, through the unmodified openstacksdk's groups and
rules. A dropped connection attempt times out (the firewall ate the SYN); a refused one would
mean the packet reached the machine.

The ruleset itself (:func:`...firewall.ruleset`) is checked without root at the top."""

from __future__ import annotations

import socket
import time

import pytest

from jupyter_spark_openstack.testing.emulator.firewall import ruleset
from tests._machines import DROPPED, OPEN, REFUSED, boot_server, container_emulator, sdk_connection
from tests._machines import reach_from_here as _from_hub
from tests._machines import reach_from_machine as _from_machine

pytestmark = pytest.mark.timeout(600)



# ---- without root ------------------------------------------------------------------------------
def _rule(group, **kw):
    r = {"direction": "ingress", "ethertype": "IPv4", "protocol": "tcp", "port_range_min": None,
         "port_range_max": None, "remote_ip_prefix": None, "remote_group_id": None,
         "security_group_id": group}
    r.update(kw)
    return r


def test_the_ruleset_admits_what_the_groups_say_and_drops_the_rest():
    groups = [
        {"id": "w", "rules": [_rule("w", port_range_min=1024, port_range_max=65535, remote_group_id="w"),
                              _rule("w", port_range_min=8080, port_range_max=8080,
                                    remote_ip_prefix="10.87.0.1/32"),
                              _rule("w", ethertype="IPv6", remote_ip_prefix="::/0"),
                              _rule("w", direction="egress")]},
        {"id": "empty-peer", "rules": [_rule("empty-peer", remote_group_id="nobody-here")]},
        {"id": "open", "rules": [_rule("open", protocol=None, remote_ip_prefix="0.0.0.0/0")]},
    ]
    script = ruleset([("10.87.0.11", ["w"]), ("10.87.0.10", ["w", "empty-peer"]),
                      ("10.87.0.12", ["open"])], groups)
    lines = [x.strip() for x in script.splitlines()]
    # members of the group reach each other on Spark's ports, the hub on 8080 only
    assert "ip daddr 10.87.0.10 ip saddr { 10.87.0.10, 10.87.0.11 } tcp dport 1024-65535 accept" in lines
    assert "ip daddr 10.87.0.11 ip saddr { 10.87.0.1/32 } tcp dport 8080 accept" in lines
    # a remote group with no server admits nobody; IPv6 and egress rules add nothing
    assert not any("nobody" in x or "::" in x for x in lines), script
    assert sum(x.startswith("ip daddr 10.87.0.10 ") and x.endswith("accept") for x in lines) == 2
    # "any protocol from anywhere" is one rule with no match
    assert "ip daddr 10.87.0.12 accept" in lines
    # then every server drops connection attempts, datagrams and pings
    for a in ("10.87.0.10", "10.87.0.11", "10.87.0.12"):
        i = lines.index(f"ip daddr {a} tcp flags & (syn | ack) == syn drop")
        assert lines[i + 1:i + 3] == [f"ip daddr {a} meta l4proto udp drop",
                                      f"ip daddr {a} icmp type echo-request drop"]
        assert all(x.endswith("accept") for x in lines[:i] if x.startswith(f"ip daddr {a} "))
    # one transaction that replaces the whole table
    assert lines[:3] == ["table bridge jso_sg", "delete table bridge jso_sg", "table bridge jso_sg {"]


# ---- real machines -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    """Three machines: ``a`` and ``b`` in group ``her`` (Spark's ports from the group, 8080 from
    the hub's address only), ``c`` in group ``other``; listeners on ``a``."""
    with container_emulator(tmp_path_factory, "sg-machines", boot_delay=0.2) as (emu, d):
        conn = sdk_connection(emu, d)
        net = conn.network
        her = net.create_security_group(name="her")
        other = net.create_security_group(name="other")
        for g in (her, other):
            net.create_security_group_rule(security_group_id=g.id, direction="ingress",
                                           ether_type="IPv4", protocol="tcp", port_range_min=1024,
                                           port_range_max=65535, remote_group_id=g.id)
        net.create_security_group_rule(security_group_id=her.id, direction="ingress",
                                       ether_type="IPv4", protocol="tcp", port_range_min=8080,
                                       port_range_max=8080, remote_ip_prefix=f"{emu.hub_address}/32")
        servers, machines, address = {}, {}, {}
        for name, group in (("a", her), ("b", her), ("c", other)):
            servers[name], machines[name] = boot_server(emu, conn, name,
                                                        security_groups=[{"name": group.name}])
            address[name] = emu.model.get_server(servers[name].id).address
        for port in (80, 8080, 9000):
            machines["a"].run(["systemd-run", f"--unit=listen-{port}", "python3", "-m",
                               "http.server", str(port)], check=True)
        for port in (80, 8080, 9000):
            _wait_listening(machines["a"], port)
        yield {"emu": emu, "conn": conn, "her": her, "other": other, "m": machines,
               "ip": address, "servers": servers}


def _wait_listening(machine, port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if f":{port} " in machine.run(["ss", "-Hltn"]).stdout:
            return
        time.sleep(0.2)
    raise AssertionError(f"nothing listens on {port} in {machine.name}")


def test_her_group_admits_its_members_and_the_hub_and_drops_everyone_else(cloud):
    m, a = cloud["m"], cloud["ip"]["a"]
    # her other machine reaches Spark's port range, not a port below it
    assert [_from_machine(m["b"], a, p) for p in (9000, 8080, 80)] == [OPEN, OPEN, DROPPED]
    # another cluster's machine reaches nothing of hers
    assert [_from_machine(m["c"], a, p) for p in (9000, 8080, 80)] == [DROPPED, DROPPED, DROPPED]
    # the hub reaches only what its rule names
    assert [_from_hub(a, p) for p in (8080, 9000, 80)] == [OPEN, DROPPED, DROPPED]
    # a machine with no listener but an admitting rule answers (a refusal, not a drop)
    assert _from_machine(m["b"], a, 9001) == REFUSED
    # egress is open: her machine opens connections to the hub (answers come back through)
    srv = socket.create_server((cloud["emu"].hub_address, 0))
    try:
        assert _from_machine(m["a"], cloud["emu"].hub_address, srv.getsockname()[1]) == OPEN
    finally:
        srv.close()


def test_a_rule_added_or_deleted_through_neutron_takes_effect_at_once(cloud):
    net, m, ip = cloud["conn"].network, cloud["m"], cloud["ip"]
    assert _from_machine(m["c"], ip["a"], 9000) == DROPPED
    rule = net.create_security_group_rule(security_group_id=cloud["her"].id, direction="ingress",
                                          ether_type="IPv4", protocol="tcp", port_range_min=9000,
                                          port_range_max=9000, remote_ip_prefix=f"{ip['c']}/32")
    try:
        assert _from_machine(m["c"], ip["a"], 9000) == OPEN
        assert _from_machine(m["c"], ip["a"], 8080) == DROPPED     # that one port only
        assert _rules_from(cloud, ip["c"], to=ip["a"]), cloud["emu"].backend.firewall.listing()
    finally:
        net.delete_security_group_rule(rule)
    assert _from_machine(m["c"], ip["a"], 9000) == DROPPED
    # what the kernel holds admits nothing from her to him any more
    assert _rules_from(cloud, ip["c"], to=ip["a"]) == []


def _rules_from(cloud, src: str, *, to: str) -> list[str]:
    """The kernel's accept rules for ``to`` that name ``src``."""
    return [x.strip() for x in cloud["emu"].backend.firewall.listing().splitlines()
            if f"ip daddr {to} " in x and "accept" in x and
            any(w.strip("{},") in (src, src + "/32") for w in x.split())]


def test_a_deleted_server_leaves_no_rule_behind(cloud):
    conn, emu = cloud["conn"], cloud["emu"]
    c_ip = cloud["ip"]["c"]
    assert f"ip daddr {c_ip} " in emu.backend.firewall.listing()
    conn.compute.delete_server(cloud["servers"]["c"])
    conn.compute.wait_for_delete(cloud["servers"]["c"], interval=0.2, wait=120)
    listing = emu.backend.firewall.listing()
    assert listing and f"ip daddr {c_ip} " not in listing and f"ip daddr {cloud['ip']['a']} " in listing
