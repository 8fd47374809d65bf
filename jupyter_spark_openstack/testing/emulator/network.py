"""Neutron v2.0: networks (list, show) and security groups and their rules (list, show,
create, delete), with Neutron's validation and errors (a group a server still uses answers 409,
as Neutron does while the server's ports exist).

Contract: :data:`SERVICE` declares the routes under ``/network``; everything but the version
list and the resource list needs a token; groups and rules are read and changed through
:class:`.model.CloudModel`, whose :class:`.model.Refused` becomes a ``NeutronError`` body
(:func:`refused`).
"""

from __future__ import annotations

import ipaddress

from .model import PROJECT_ID, RULE_KEYS, Refused
from .routing import Request, Route, Service, filtered, neutron_error

V = "/network/v2.0"


def net_view(n: dict) -> dict:
    return {"id": n["id"], "name": n["name"], "status": "ACTIVE", "admin_state_up": True,
            "subnets": [], "shared": False, "tenant_id": PROJECT_ID, "project_id": PROJECT_ID,
            "router:external": False, "mtu": 1450, "port_security_enabled": True,
            "tags": [], "description": "", "availability_zones": ["nova"],
            "ipv4_address_scope": None, "ipv6_address_scope": None, "is_default": False,
            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
            "revision_number": 1}


def sg_view(g: dict) -> dict:
    created = g.get("created_at", "2026-01-01T00:00:00Z")
    return {"id": g["id"], "name": g["name"], "description": g.get("description", ""),
            "tenant_id": PROJECT_ID, "project_id": PROJECT_ID, "stateful": True,
            "security_group_rules": [dict(r) for r in g["rules"]], "tags": [],
            "created_at": created, "updated_at": created, "revision_number": 1}


def refused(e: Refused):
    """The model's refusal as Neutron says it."""
    return neutron_error(e.status, e.type, e.message)


def rule_body(model, b: dict) -> dict:
    """A rule as Neutron would store it, or Neutron's 400/404 (remote group, CIDR, ports)."""
    r = {k: b.get(k) for k in RULE_KEYS}
    r["ethertype"] = r["ethertype"] or "IPv4"
    if r["direction"] not in ("ingress", "egress"):
        raise neutron_error(400, "HTTPBadRequest", f"Invalid input for direction. Reason: "
                            f"{r['direction']!r} is not in ['ingress', 'egress'].")
    if r["ethertype"] not in ("IPv4", "IPv6"):
        raise neutron_error(400, "HTTPBadRequest", f"Invalid input for ethertype. Reason: "
                            f"{r['ethertype']!r} is not in ['IPv4', 'IPv6'].")
    if r["remote_ip_prefix"] is not None and r["remote_group_id"] is not None:
        raise neutron_error(400, "SecurityGroupRemoteGroupAndRemoteIpPrefix",
                            "Only remote_ip_prefix or remote_group_id may be provided.")
    if r["remote_ip_prefix"] is not None:
        try:
            net = ipaddress.ip_network(str(r["remote_ip_prefix"]), strict=False)
        except ValueError:
            raise neutron_error(400, "HTTPBadRequest", "Invalid input for remote_ip_prefix. "
                                f"Reason: '{r['remote_ip_prefix']}' is not a valid IP subnet.") from None
        if f"IPv{net.version}" != r["ethertype"]:
            raise neutron_error(400, "SecurityGroupRuleParameterConflict",
                                f"Conflicting value ethertype {r['ethertype']} for CIDR {net}")
        r["remote_ip_prefix"] = str(net)
    if r["remote_group_id"] is not None:
        model.security_group(r["remote_group_id"])
    lo, hi = r["port_range_min"], r["port_range_max"]
    if any(p is not None and (isinstance(p, bool) or not isinstance(p, int)) for p in (lo, hi)):
        raise neutron_error(400, "HTTPBadRequest", "Invalid input for port_range_min/max: "
                            "expected integers.")
    if lo is not None and hi is not None and not 0 <= lo <= hi <= 65535:
        raise neutron_error(400, "SecurityGroupInvalidPortRange",
                            "For TCP/UDP protocols, port_range_min must be <= port_range_max")
    return r


def versions(req: Request):
    return 200, {"versions": [{"id": "v2.0", "status": "CURRENT",
                               "links": [{"rel": "self", "href": f"{req.emu.url}/network/v2.0/"}]}]}, None


def resources(req: Request):
    return 200, {"resources": [{"name": "network", "collection": "networks", "links": []},
                               {"name": "security_group", "collection": "security_groups",
                                "links": []}]}, None


def list_networks(req: Request):
    return 200, {"networks": [net_view(n) for n in filtered(req.emu.model.networks, req.query)]}, None


def show_network(req: Request, nid: str):
    n = req.emu.model.find_network(nid)
    if n is None:
        raise neutron_error(404, "NetworkNotFound", f"Network {nid} could not be found.")
    return 200, {"network": net_view(n)}, None


def list_groups(req: Request):
    gs = filtered(req.emu.model.list_security_groups(), req.query)
    return 200, {"security_groups": [sg_view(g) for g in gs]}, None


def create_group(req: Request):
    b = req.json_body().get("security_group") or {}
    if not isinstance(b.get("name"), str) or not b["name"]:
        raise neutron_error(400, "HTTPBadRequest", "Invalid input for name.")
    g = req.emu.model.add_security_group(b["name"], b.get("description") or "")
    return 201, {"security_group": sg_view(g)}, None


def show_group(req: Request, gid: str):
    return 200, {"security_group": sg_view(req.emu.model.security_group(gid))}, None


def delete_group(req: Request, gid: str):
    req.emu.model.delete_security_group(gid)
    return 204, None, None


def list_rules(req: Request):
    return 200, {"security_group_rules": req.emu.model.list_rules(req.query.get("security_group_id"))}, None


def create_rule(req: Request):
    model = req.emu.model
    b = req.json_body().get("security_group_rule") or {}
    g = model.security_group(b.get("security_group_id"))
    r = model.add_rule(g, rule_body(model, b), b.get("description") or "")
    return 201, {"security_group_rule": dict(r)}, None


def show_rule(req: Request, rid: str):
    return 200, {"security_group_rule": req.emu.model.get_rule(rid)}, None


def delete_rule(req: Request, rid: str):
    req.emu.model.delete_rule(rid)
    return 204, None, None


def not_found(req: Request, rest: str):
    req.authenticate()
    raise neutron_error(404, "HTTPNotFound", "The resource could not be found.")


_auth = Request.authenticate
SERVICE = Service("network", "/network", [
    Route("GET", "/network", versions),
    Route("GET", V, resources),
    Route("GET", f"{V}/networks", list_networks, _auth),
    Route("GET", f"{V}/networks/{{nid}}", show_network, _auth),
    Route("GET", f"{V}/security-groups", list_groups, _auth),
    Route("POST", f"{V}/security-groups", create_group, _auth),
    Route("GET", f"{V}/security-groups/{{gid}}", show_group, _auth),
    Route("DELETE", f"{V}/security-groups/{{gid}}", delete_group, _auth),
    Route("GET", f"{V}/security-group-rules", list_rules, _auth),
    Route("POST", f"{V}/security-group-rules", create_rule, _auth),
    Route("GET", f"{V}/security-group-rules/{{rid}}", show_rule, _auth),
    Route("DELETE", f"{V}/security-group-rules/{{rid}}", delete_rule, _auth),
], not_found, refused)
