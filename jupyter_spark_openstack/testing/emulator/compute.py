"""Nova v2.1: servers (create with Nova's validation and quota, list with filters and paging,
show, delete, console output, reboot/stop/start, metadata, tags, interfaces), flavors, limits,
key pairs and availability zones, with microversions from 2.1 to 2.96.

Contract: :data:`SERVICE` declares the routes under ``/compute``; every route under
``/compute/v2.1/`` needs a token and a supported microversion (:func:`authorized`). State is
read and changed through :class:`.model.CloudModel`; a server's life after the API call (boot,
delete, reboot, console) is the emulator's (``req.emu.boot_server`` and friends), not this
module's.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid

from .model import PROJECT_ID, USER_ID, VM, QuotaExceeded, now_iso
from .routing import Request, Route, Service, nova_error

COMPUTE_MIN = (2, 1)
COMPUTE_MAX = (2, 96)
V = "/compute/v2.1"


def links(url: str, kind: str, ident: str) -> list[dict]:
    return [{"rel": "self", "href": f"{url}/compute/v2.1/{kind}/{ident}"},
            {"rel": "bookmark", "href": f"{url}/compute/{kind}/{ident}"}]


def server_view(url: str, model, vm: VM, mv: tuple[int, int]) -> dict:
    net_names = {n["id"]: n["name"] for n in model.networks}
    addresses = {}
    if vm.status == "ACTIVE":
        for i, nid in enumerate(vm.networks):
            addresses[net_names.get(nid, nid)] = [{
                "version": 4, "addr": vm.address or "127.0.0.1", "OS-EXT-IPS:type": "fixed",
                "OS-EXT-IPS-MAC:mac_addr": f"fa:16:3e:{i:02x}:{int(vm.id[:2], 16):02x}:01"}]
    v = {
        "id": vm.id, "name": vm.name, "status": vm.status,
        "tenant_id": PROJECT_ID, "user_id": USER_ID, "metadata": dict(vm.metadata),
        "hostId": "" if vm.status == "BUILD" else "e1a5" + vm.id.replace("-", "")[:52],
        "image": {"id": vm.image_id, "links": [{"rel": "bookmark", "href": f"{url}/compute/images/{vm.image_id}"}]},
        "flavor": {"vcpus": vm.flavor["vcpus"], "ram": vm.flavor["ram"], "disk": vm.flavor["disk"],
                   "ephemeral": 0, "swap": 0, "original_name": vm.flavor["name"], "extra_specs": {}},
        "created": now_iso(vm.created), "updated": now_iso(),
        "addresses": addresses, "accessIPv4": "", "accessIPv6": "",
        "links": links(url, "servers", vm.id),
        "OS-DCF:diskConfig": "MANUAL", "progress": 0,
        "OS-EXT-AZ:availability_zone": vm.availability_zone,
        "config_drive": "", "key_name": vm.key_name,
        "OS-SRV-USG:launched_at": None if vm.status == "BUILD" else now_iso(vm.created + vm.boot_delay),
        "OS-SRV-USG:terminated_at": None,
        "security_groups": [{"name": s} for s in vm.security_groups],
        "OS-EXT-STS:task_state": "deleting" if vm.deleting else vm.task_state,
        "OS-EXT-STS:vm_state": {"BUILD": "building", "ACTIVE": "active", "ERROR": "error"}.get(vm.status, "active"),
        "OS-EXT-STS:power_state": 1 if vm.status == "ACTIVE" else 0,
        "os-extended-volumes:volumes_attached": [],
        "locked": False, "description": None, "tags": list(vm.tags),
        "trusted_image_certificates": None, "server_groups": [],
        "locked_reason": None, "host_status": "UP" if vm.status == "ACTIVE" else "",
    }
    if vm.fault:
        v["fault"] = dict(vm.fault)
    if mv < (2, 73):
        v.pop("locked_reason")
    if mv < (2, 47):
        v["flavor"] = {"id": vm.flavor["id"], "links": links(url, "flavors", vm.flavor["id"])}
    return v


# ---- guards ---------------------------------------------------------------------------------
def microversion(req: Request) -> tuple[int, int]:
    h = req.headers
    want = None
    for v in h.get_list("OpenStack-API-Version"):
        for part in v.split(","):
            svc, _, ver = part.strip().partition(" ")
            if svc.lower() == "compute":
                want = ver.strip()
    if want is None:
        want = h.get("X-OpenStack-Nova-API-Version")
    if want is None:
        return COMPUTE_MIN
    if want == "latest":
        return COMPUTE_MAX
    m = re.fullmatch(r"(\d+)\.(\d+)", want)
    mv = (int(m.group(1)), int(m.group(2))) if m else None
    if mv is None or not COMPUTE_MIN <= mv <= COMPUTE_MAX:
        raise nova_error(406, f"Version {want} is not supported by the API. Minimum is "
                              f"{COMPUTE_MIN[0]}.{COMPUTE_MIN[1]} and maximum is "
                              f"{COMPUTE_MAX[0]}.{COMPUTE_MAX[1]}.")
    return mv


def authorized(req: Request) -> None:
    """A token, then the microversion (``req.mv``)."""
    req.authenticate()
    req.mv = microversion(req)


# ---- discovery --------------------------------------------------------------------------------
def _version(req: Request) -> dict:
    return {"id": "v2.1", "status": "CURRENT",
            "version": f"{COMPUTE_MAX[0]}.{COMPUTE_MAX[1]}",
            "min_version": f"{COMPUTE_MIN[0]}.{COMPUTE_MIN[1]}",
            "updated": "2013-07-23T11:33:21Z",
            "links": [{"rel": "self", "href": f"{req.emu.url}/compute/v2.1/"}],
            "media-types": [{"base": "application/json",
                             "type": "application/vnd.openstack.compute+json;version=2.1"}]}


def versions(req: Request):
    return 200, {"versions": [_version(req)]}, None


def version(req: Request):
    return 200, {"version": _version(req)}, None


# ---- servers ------------------------------------------------------------------------------------
def _server(req: Request, sid: str) -> VM:
    vm = req.emu.model.get_server(sid)
    if vm is None:
        raise nova_error(404, f"Instance {sid} could not be found.")
    return vm


def list_servers(req: Request, detail: str = ""):
    emu, q, mv = req.emu, req.query, req.mv
    vms = emu.model.list_servers()
    if "name" in q:
        try:
            rx = re.compile(q["name"])
        except re.error:
            raise nova_error(400, f"Invalid regex in name filter: {q['name']}") from None
        vms = [v for v in vms if rx.search(v.name)]
    if "status" in q:
        vms = [v for v in vms if v.status == q["status"].upper()]
    if "tags" in q:
        want = set(q["tags"].split(","))
        vms = [v for v in vms if want <= set(v.tags)]
    if "tags-any" in q:
        want = set(q["tags-any"].split(","))
        vms = [v for v in vms if want & set(v.tags)]
    if "not-tags" in q:
        want = set(q["not-tags"].split(","))
        vms = [v for v in vms if not want <= set(v.tags)]
    if "uuid" in q:
        vms = [v for v in vms if v.id == q["uuid"]]
    vms.sort(key=lambda v: (-v.created, v.id))
    if "marker" in q:
        ids = [v.id for v in vms]
        if q["marker"] not in ids:
            raise nova_error(400, f"marker [{q['marker']}] not found")
        vms = vms[ids.index(q["marker"]) + 1:]
    limit = int(q.get("limit", "1000"))
    page = vms[:limit]
    out: dict = {"servers": [server_view(emu.url, emu.model, v, mv) if detail else
                             {"id": v.id, "name": v.name, "links": links(emu.url, "servers", v.id)}
                             for v in page]}
    if len(vms) > limit:
        out["servers_links"] = [{"rel": "next", "href": f"{emu.url}/compute/v2.1/servers"
                                 f"{detail}?limit={limit}&marker={page[-1].id}"}]
    return 200, out, None


def show_server(req: Request, sid: str):
    return 200, {"server": server_view(req.emu.url, req.emu.model, _server(req, sid), req.mv)}, None


def delete_server(req: Request, sid: str):
    vm = _server(req, sid)
    if req.emu.model.mark_deleting(vm):
        req.emu.delete_server(vm)
    return 204, None, None


def server_action(req: Request, sid: str):
    vm = _server(req, sid)
    body = req.json_body()
    if "os-getConsoleOutput" in body:
        length = (body["os-getConsoleOutput"] or {}).get("length")
        lines = req.emu.console(vm)
        if length not in (None, -1, "-1"):
            try:
                n = int(length)
            except (TypeError, ValueError):
                raise nova_error(400, "Invalid input for field/attribute length.") from None
            lines = lines[-n:] if n > 0 else []
        return 200, {"output": "\n".join(lines) + ("\n" if lines else "")}, None
    if "reboot" in body:
        req.emu.reboot_server(vm)
        return 202, None, None
    if any(k in body for k in ("os-stop", "os-start")):
        return 202, None, None
    raise nova_error(400, f"There is no such action: {next(iter(body), '')}")


def server_metadata(req: Request, sid: str):
    return 200, {"metadata": dict(_server(req, sid).metadata)}, None


def server_tags(req: Request, sid: str):
    return 200, {"tags": list(_server(req, sid).tags)}, None


def server_interfaces(req: Request, sid: str):
    _server(req, sid)
    return 200, {"interfaceAttachments": []}, None


def server_other(req: Request, sid: str, sub: str = ""):
    """Any other path or method on an existing server."""
    _server(req, sid)
    raise nova_error(404, "Not found")


def _user_data(user_data: str | None) -> str | None:
    if user_data is None:
        return None
    try:
        raw = base64.b64decode(user_data, validate=True)
    except (binascii.Error, ValueError):
        raise nova_error(400, "User data needs to be valid base 64.") from None
    if len(user_data) > 65535:
        raise nova_error(400, "User data too large. User data must be no larger than 65535 bytes once base64 encoded.")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _security_groups(model, s: dict) -> tuple[list[str], list[str]]:
    """The names and ids of the server's groups: like Nova, an id, else a unique name."""
    sgs, sg_ids = [], []
    for g in s.get("security_groups") or [{"name": "default"}]:
        gname = g.get("name") if isinstance(g, dict) else None
        match = model.match_security_groups(gname)
        if not match:
            raise nova_error(400, f"Security group {gname} not found for project {PROJECT_ID}.")
        if len(match) > 1:
            raise nova_error(409, f"Multiple security groups found matching '{gname}'. "
                                  "Use an ID to be more specific.")
        sgs.append(match[0]["name"])
        sg_ids.append(match[0]["id"])
    return sgs, sg_ids


def _networks(model, s: dict) -> list[str]:
    nets = s.get("networks", "auto")
    net_ids: list[str] = []
    if isinstance(nets, list):
        for n in nets:
            nid = (n or {}).get("uuid") if isinstance(n, dict) else None
            if model.find_network(nid) is None:
                raise nova_error(400, f"Network {nid} could not be found.")
            net_ids.append(nid)
    elif nets == "auto":
        net_ids = [model.networks[0]["id"]]
    return net_ids


def create_server(req: Request):
    emu, mv = req.emu, req.mv
    model = emu.model
    body = req.json_body()
    s = body.get("server")
    if not isinstance(s, dict):
        raise nova_error(400, "Invalid input for field/attribute server.")
    unknown_min = {"tags": (2, 52), "trusted_image_certificates": (2, 63),
                   "host": (2, 74), "hypervisor_hostname": (2, 74), "hostname": (2, 90)}
    for k, v in unknown_min.items():
        if k in s and mv < v:
            raise nova_error(400, f"Invalid input for field/attribute server. Value: {s}. "
                                  f"Additional properties are not allowed ('{k}' was unexpected)")
    name = s.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 255:
        raise nova_error(400, "Invalid input for field/attribute name.")
    flavor = model.find_flavor(str(s.get("flavorRef", "")))
    if flavor is None:
        raise nova_error(400, f"Flavor {s.get('flavorRef')} could not be found.")
    image_ref = str(s.get("imageRef", "")).rstrip("/").rsplit("/", 1)[-1]
    if model.find_image(image_ref) is None:
        raise nova_error(400, "Can not find requested image")
    net_ids = _networks(model, s)
    key = s.get("key_name")
    if key is not None and model.find_keypair(key) is None:
        raise nova_error(400, "Invalid key_name provided.")
    az = s.get("availability_zone") or "nova"
    if az not in model.availability_zones:
        raise nova_error(400, "The requested availability zone is not available")
    sgs, sg_ids = _security_groups(model, s)
    md = s.get("metadata") or {}
    if not isinstance(md, dict) or any(not isinstance(k, str) or not isinstance(v, str)
                                       or len(k) > 255 or len(v) > 255 for k, v in md.items()):
        raise nova_error(400, "Invalid input for field/attribute metadata.")
    if len(md) > model.quota["metadata_items"]:
        raise nova_error(403, "Quota exceeded for metadata_items")
    tags = s.get("tags") or []
    if not isinstance(tags, list) or len(tags) > 50 or any(
            not isinstance(t, str) or not t or len(t) > 60 or "/" in t or "," in t for t in tags):
        raise nova_error(400, f"Invalid input for field/attribute tags. Value: {tags}.")
    user_data = _user_data(s.get("user_data"))
    faults = emu.faults.take("servers.create", ("quota", "boot_error", "slow_boot", "no_worker", "vanish"))
    try:
        vm = model.create_server(
            take_all_cores=any(f.action == "quota" for f in faults),
            name=name, flavor=flavor, image_id=image_ref, networks=net_ids, key_name=key,
            security_groups=sgs, availability_zone=az, metadata=dict(md), tags=list(tags),
            user_data=user_data, boot_delay=emu.boot_delay, injected=[f.action for f in faults],
            security_group_ids=sg_ids)
    except QuotaExceeded as e:
        res, asked, used, lim = (", ".join(str(o[i]) for o in e.over) for i in range(4))
        raise nova_error(403, f"Quota exceeded for {res}: Requested {asked}, but already "
                              f"used {used} of {lim} {res}") from None
    emu.boot_server(vm, faults)
    return 202, {"server": {"id": vm.id, "links": links(emu.url, "servers", vm.id),
                            "OS-DCF:diskConfig": "MANUAL",
                            "security_groups": [{"name": g} for g in sgs],
                            "adminPass": uuid.uuid4().hex[:12]}}, \
        {"Location": f"{emu.url}/compute/v2.1/servers/{vm.id}"}


# ---- flavors, limits, key pairs, zones --------------------------------------------------------------
def list_flavors(req: Request, detail: str = ""):
    emu = req.emu
    fl = emu.model.flavors
    if "name" in req.query:
        fl = [f for f in fl if f["name"] == req.query["name"]]
    if not detail:
        return 200, {"flavors": [{"id": f["id"], "name": f["name"], "description": None,
                                  "links": links(emu.url, "flavors", f["id"])} for f in fl]}, None
    return 200, {"flavors": [dict(f, links=links(emu.url, "flavors", f["id"])) for f in fl]}, None


def _flavor(req: Request, fid: str) -> dict:
    f = req.emu.model.find_flavor(fid)
    if f is None:
        raise nova_error(404, f"Flavor {fid} could not be found.")
    return f


def show_flavor(req: Request, fid: str):
    f = _flavor(req, fid)
    return 200, {"flavor": dict(f, links=links(req.emu.url, "flavors", f["id"]))}, None


def flavor_extra_specs(req: Request, fid: str):
    _flavor(req, fid)
    return 200, {"extra_specs": {}}, None


def limits(req: Request):
    model = req.emu.model
    use = model.usage()
    qt = model.quota
    return 200, {"limits": {"rate": [], "absolute": {
        "maxTotalCores": qt["cores"], "totalCoresUsed": use["cores"],
        "maxTotalInstances": qt["instances"], "totalInstancesUsed": use["instances"],
        "maxTotalRAMSize": qt["ram"], "totalRAMUsed": use["ram"],
        "maxTotalKeypairs": qt["key_pairs"], "maxServerMeta": qt["metadata_items"],
        "maxServerGroups": qt["server_groups"], "maxServerGroupMembers": qt["server_group_members"],
        "totalServerGroupsUsed": 0}}}, None


def list_keypairs(req: Request):
    return 200, {"keypairs": [{"keypair": dict(k)} for k in req.emu.model.keypairs]}, None


def show_keypair(req: Request, name: str):
    k = req.emu.model.find_keypair(name)
    if k is None:
        raise nova_error(404, f"Keypair {name} not found for user {USER_ID}")
    return 200, {"keypair": dict(k, user_id=USER_ID, id=1, deleted=False,
                                 created_at="2026-01-01T00:00:00.000000",
                                 updated_at=None, deleted_at=None)}, None


def availability_zones(req: Request, detail: str = ""):
    return 200, {"availabilityZoneInfo": [{"zoneName": z, "zoneState": {"available": True},
                                           "hosts": None} for z in req.emu.model.availability_zones]}, None


def not_found(req: Request, rest: str):
    if rest.startswith("/v2.1/"):
        authorized(req)
    raise nova_error(404, "Not found")


SERVICE = Service("compute", "/compute", [
    Route("GET", "/compute", versions),
    Route("GET", V, version),
    Route("POST", f"{V}/servers", create_server, authorized),
    Route("GET", f"{V}/servers{{detail:(/detail)?}}", list_servers, authorized),
    Route("GET", f"{V}/servers/{{sid}}", show_server, authorized),
    Route("DELETE", f"{V}/servers/{{sid}}", delete_server, authorized),
    Route("POST", f"{V}/servers/{{sid}}/action", server_action, authorized),
    Route("GET", f"{V}/servers/{{sid}}/metadata", server_metadata, authorized),
    Route("GET", f"{V}/servers/{{sid}}/tags", server_tags, authorized),
    Route("GET", f"{V}/servers/{{sid}}/os-interface", server_interfaces, authorized),
    Route("*", f"{V}/servers/{{sid}}{{sub:(/.*)?}}", server_other, authorized),
    Route("GET", f"{V}/flavors{{detail:(/detail)?}}", list_flavors, authorized),
    Route("GET", f"{V}/flavors/{{fid}}", show_flavor, authorized),
    Route("GET", f"{V}/flavors/{{fid}}/os-extra_specs", flavor_extra_specs, authorized),
    Route("GET", f"{V}/limits", limits, authorized),
    Route("GET", f"{V}/os-keypairs", list_keypairs, authorized),
    Route("GET", f"{V}/os-keypairs/{{name}}", show_keypair, authorized),
    Route("GET", f"{V}/os-availability-zone{{detail:(/detail)?}}", availability_zones, authorized),
], not_found)
