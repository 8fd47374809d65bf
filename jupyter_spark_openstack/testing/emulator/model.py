"""The emulated cloud's state, with no HTTP and no event loop in it.

Contract: :class:`CloudModel` holds the one project's servers (:class:`VM`), flavors, images,
networks, key pairs, availability zones, security groups and their rules, the quota, the issued
tokens and the call log (:class:`Call`). Every read or change the routes, the control API and
the boot backends make goes through its public methods, which take its lock themselves; the
check-and-change steps that must be atomic (quota check + create, "in use" + delete, rule
uniqueness + add) are single methods. A method that refuses raises :class:`Refused` with the
status, the service's error type and its message; the service's routes turn it into their own
error body. Views (what Nova, Glance or Neutron answer) are the routes' business, not the
model's, except :meth:`CloudModel.describe` (the emulator's own debug view of a server).
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

USERNAME = "demo"
PASSWORD = "emulator-demo-password"   # test-only credential of the emulator's single user
PROJECT = "demo"
PROJECT_ID = "6f70656e737461636b2d656d756c6174"
USER_ID = "75736572000000000000000000000001"
DOMAIN_ID = "default"
#: the fields that make two security group rules the same rule
RULE_KEYS = ("direction", "ethertype", "protocol", "port_range_min", "port_range_max",
             "remote_ip_prefix", "remote_group_id")


def now_iso(t: float | None = None) -> str:
    dt = datetime.fromtimestamp(t if t is not None else time.time(), tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Call:
    """One API request as the emulator saw it."""

    method: str
    path: str
    query: str
    kind: str
    status: int
    time: float
    duration: float
    fault: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class VM:
    """A server: what Nova was asked for and its state, plus what its boot backend recorded
    (``console``, ``worker``, ``boot``: the parsed user-data)."""

    id: str
    name: str
    flavor: dict
    image_id: str
    networks: list[str]
    key_name: str | None
    security_groups: list[str]
    availability_zone: str
    metadata: dict
    tags: list[str]
    user_data: str | None
    created: float
    boot_delay: float
    status: str = "BUILD"
    task_state: str | None = "spawning"
    fault: dict | None = None
    console: list[str] = field(default_factory=list)
    worker: dict | None = None           # the local Spark worker's process record
    injected: list[str] = field(default_factory=list)
    deleting: bool = False
    boot: object = None
    security_group_ids: list[str] = field(default_factory=list)   # what Neutron's ports hold
    address: str | None = None           # its fixed IP (given by the boot backend at creation)

    def console_line(self, text: str) -> None:
        t = time.time() - self.created
        self.console.append(f"[{t:10.6f}] {text}")


class Refused(Exception):
    """The model refuses a change: ``status``, the service's error ``type``, ``message``."""

    def __init__(self, status: int, typ: str, message: str):
        super().__init__(message)
        self.status, self.type, self.message = status, typ, message


class QuotaExceeded(Exception):
    """A server would take the project over its quota: ``over`` is a list of
    ``(resource, requested, used, limit)``."""

    def __init__(self, over: list[tuple[str, int, int, int]]):
        super().__init__(over)
        self.over = over


def _flavor(i: int, name: str, vcpus: int, ram: int, disk: int) -> dict:
    return {"id": str(i), "name": name, "vcpus": vcpus, "ram": ram, "disk": disk,
            "OS-FLV-EXT-DATA:ephemeral": 0, "swap": 0, "rxtx_factor": 1.0,
            "os-flavor-access:is_public": True, "OS-FLV-DISABLED:disabled": False,
            "description": None, "extra_specs": {}}


def _egress_rule(group_id: str, ethertype: str) -> dict:
    return {"id": str(uuid.uuid4()), "security_group_id": group_id,
            "direction": "egress", "ethertype": ethertype, "protocol": None,
            "port_range_min": None, "port_range_max": None,
            "remote_ip_prefix": None, "remote_group_id": None,
            "tenant_id": PROJECT_ID, "project_id": PROJECT_ID, "description": ""}


class CloudModel:
    """One project's resources. The lists ``flavors``, ``images``, ``networks``, ``keypairs``,
    ``security_groups``, ``availability_zones`` and the dict ``quota`` are public (tests read
    and may extend them); servers, tokens and calls are reached through methods only."""

    def __init__(self, quota: dict | None = None):
        self._lock = threading.RLock()
        self._calls: list[Call] = []
        self._tokens: set[str] = set()
        self._vms: dict[str, VM] = {}
        self.quota = {"cores": 64, "instances": 100, "ram": 512 * 1024, "key_pairs": 100,
                      "metadata_items": 128, "server_groups": 10, "server_group_members": 10}
        self.quota.update(quota or {})
        self.flavors = [_flavor(i, n, c, r, d) for i, (n, c, r, d) in enumerate([
            ("m1.small", 1, 2048, 20), ("m1.medium", 2, 4096, 40), ("m1.large", 4, 8192, 80),
            ("m1.xlarge", 8, 16384, 160)], start=1)]
        self.images = [
            # "spark_home": where the image has Spark (the container backend bind-mounts this
            # machine's Spark there); the other image has none (download install mode)
            {"id": "5b1e5a8e-8f43-4c3e-9d39-3f2b6a6c0001", "name": "spark-worker-4.0",
             "spark_home": "/opt/spark"},
            {"id": "5b1e5a8e-8f43-4c3e-9d39-3f2b6a6c0002", "name": "ubuntu-24.04"},
        ]
        self.networks = [{"id": "a3c5d1f0-6b57-4b8e-8a8c-000000000001", "name": "private",
                          "cidr": "10.0.0.0/24"}]
        self.keypairs = [{"name": "demo-key", "fingerprint": "aa:bb:cc:dd:ee:ff:00:11:22:33:44:55:66:77:88:99",
                          "public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEmulatorKeyOnlyForTests demo",
                          "type": "ssh"}]
        # Neutron's stock "default" group: its members reach each other, egress is open
        default_id = "0e3a1b6c-0000-4000-8000-000000000001"
        self.security_groups: list[dict] = [
            {"id": default_id, "name": "default", "description": "Default security group",
             "rules": [_egress_rule(default_id, eth) for eth in ("IPv4", "IPv6")] +
                      [{**_egress_rule(default_id, eth), "direction": "ingress",
                        "remote_group_id": default_id} for eth in ("IPv4", "IPv6")]}]
        self.availability_zones = ["nova"]
        self._rule_listeners: list = []

    def on_rules_changed(self, fn) -> None:
        """Call ``fn()`` (no lock held) after a security group rule is added or deleted or a
        group is deleted: what a backend that enforces the rules listens to."""
        self._rule_listeners.append(fn)

    def _rules_changed(self) -> None:
        for fn in list(self._rule_listeners):
            fn()

    # ---- tokens and the call log ------------------------------------------------------------
    def issue_token(self) -> str:
        token = "gAAAAA" + uuid.uuid4().hex + uuid.uuid4().hex
        with self._lock:
            self._tokens.add(token)
        return token

    def token_valid(self, token: str | None) -> bool:
        with self._lock:
            return token in self._tokens

    def record(self, call: Call) -> None:
        with self._lock:
            self._calls.append(call)

    def calls(self, kind: str | None = None, method: str | None = None) -> list[Call]:
        with self._lock:
            return [c for c in self._calls if (kind is None or c.kind == kind)
                    and (method is None or c.method == method)]

    def clear_calls(self) -> None:
        with self._lock:
            self._calls.clear()

    # ---- catalog lookups ------------------------------------------------------------------------
    def find_flavor(self, ref: str) -> dict | None:
        """A flavor by id or by a URL ending in its id."""
        ref = str(ref).rstrip("/").rsplit("/", 1)[-1]
        return next((f for f in self.flavors if f["id"] == ref), None)

    def find_image(self, image_id: str) -> dict | None:
        return next((i for i in self.images if i["id"] == image_id), None)

    def find_network(self, network_id: str | None) -> dict | None:
        return next((n for n in self.networks if n["id"] == network_id), None)

    def find_keypair(self, name: str) -> dict | None:
        return next((k for k in self.keypairs if k["name"] == name), None)

    # ---- quota ------------------------------------------------------------------------------------
    def set_quota(self, **limits: int) -> None:
        with self._lock:
            for k, v in limits.items():
                if k not in self.quota:
                    raise ValueError(f"quota: {k!r} is not allowed; expected one of {sorted(self.quota)}")
                self.quota[k] = int(v)

    def usage(self) -> dict:
        with self._lock:
            vms = list(self._vms.values())
            return {"instances": len(vms), "cores": sum(vm.flavor["vcpus"] for vm in vms),
                    "ram": sum(vm.flavor["ram"] for vm in vms)}

    # ---- servers ----------------------------------------------------------------------------------
    def create_server(self, *, flavor: dict, take_all_cores: bool = False, **fields) -> VM:
        """Add a server (``fields`` of :class:`VM` but id/created) if the quota allows it, else
        raise :class:`QuotaExceeded`; ``take_all_cores``: as if another client had just taken
        the whole core quota (the ``quota`` fault)."""
        with self._lock:
            use = self.usage()
            over = []
            if take_all_cores:
                over.append(("cores", flavor["vcpus"], self.quota["cores"], self.quota["cores"]))
            else:
                for res, need, used in (("cores", flavor["vcpus"], use["cores"]),
                                        ("ram", flavor["ram"], use["ram"]),
                                        ("instances", 1, use["instances"])):
                    lim = self.quota[res]
                    if lim >= 0 and used + need > lim:
                        over.append((res, need, used, lim))
            if over:
                raise QuotaExceeded(over)
            vm = VM(id=str(uuid.uuid4()), flavor=flavor, created=time.time(), **fields)
            self._vms[vm.id] = vm
            return vm

    def get_server(self, server_id: str) -> VM | None:
        with self._lock:
            return self._vms.get(server_id)

    def list_servers(self) -> list[VM]:
        with self._lock:
            return list(self._vms.values())

    def mark_deleting(self, vm: VM) -> bool:
        """Mark ``vm`` deleting; True the first time."""
        with self._lock:
            first = not vm.deleting
            vm.deleting = True
            return first

    def remove_server(self, server_id: str) -> VM | None:
        """Forget a server (it is gone: 404, not listed); the server, if it was there."""
        with self._lock:
            return self._vms.pop(server_id, None)

    def remove_all_servers(self) -> list[VM]:
        """Forget every server, marked deleting; the servers."""
        with self._lock:
            vms = list(self._vms.values())
            self._vms.clear()
        for vm in vms:
            vm.deleting = True
        return vms

    def set_state(self, vm: VM, status: str, fault: dict | None = None) -> None:
        """The server's status after its boot (its task is over)."""
        with self._lock:
            vm.status, vm.task_state = status, None
            if fault is not None:
                vm.fault = fault

    def attach_worker(self, vm: VM, rec: dict) -> bool:
        """Record the server's worker process; False (not recorded) if it is being deleted."""
        with self._lock:
            if vm.deleting:
                return False
            vm.worker = rec
            return True

    def detach_worker(self, vm: VM) -> dict | None:
        """Forget and return the server's worker process record."""
        with self._lock:
            rec, vm.worker = vm.worker, None
            return rec

    def worker_records(self) -> list[dict]:
        with self._lock:
            return [dict(vm.worker) for vm in self._vms.values() if vm.worker]

    def describe(self, vm: VM, console: list[str]) -> dict:
        """The emulator's debug view of a server (``/_emulator/servers``)."""
        return {"id": vm.id, "name": vm.name, "status": vm.status, "metadata": dict(vm.metadata),
                "tags": list(vm.tags), "user_data": vm.user_data, "flavor": vm.flavor["name"],
                "deleting": vm.deleting, "worker": dict(vm.worker) if vm.worker else None,
                "console": list(console), "injected": list(vm.injected),
                "security_groups": list(vm.security_groups), "key_name": vm.key_name,
                "availability_zone": vm.availability_zone, "networks": list(vm.networks),
                "image_id": vm.image_id, "fault": vm.fault}

    # ---- security groups and rules ----------------------------------------------------------------
    def list_security_groups(self) -> list[dict]:
        with self._lock:
            return list(self.security_groups)

    def security_group(self, group_id: str | None) -> dict:
        """The group; :class:`Refused` (404) if there is none."""
        with self._lock:
            g = next((g for g in self.security_groups if g["id"] == group_id), None)
        if g is None:
            raise Refused(404, "SecurityGroupNotFound", f"Security group {group_id} does not exist")
        return g

    def match_security_groups(self, ref: str | None) -> list[dict]:
        """Like Nova: the group with id ``ref``, else every group named ``ref``."""
        with self._lock:
            return [x for x in self.security_groups if x["id"] == ref] or \
                [x for x in self.security_groups if x["name"] == ref]

    def add_security_group(self, name: str, description: str) -> dict:
        """A new group with Neutron's two default egress rules."""
        g = {"id": str(uuid.uuid4()), "name": name, "description": description,
             "rules": [], "created_at": now_iso()}
        g["rules"] = [_egress_rule(g["id"], eth) for eth in ("IPv4", "IPv6")]
        with self._lock:
            self.security_groups.append(g)
        return g

    def delete_security_group(self, group_id: str) -> None:
        """Delete a group and the rules of other groups naming it; :class:`Refused` if it does
        not exist, is ``default`` or a server's ports still hold it (deleting servers too)."""
        with self._lock:
            g = self.security_group(group_id)
            if g["name"] == "default":
                raise Refused(409, "SecurityGroupCannotRemoveDefault",
                              "Insufficient rights for removing default security group.")
            if any(g["id"] in vm.security_group_ids for vm in self._vms.values()):
                raise Refused(409, "SecurityGroupInUse", f"Security Group {g['id']} in use.")
            self.security_groups.remove(g)
            for other in self.security_groups:
                other["rules"] = [r for r in other["rules"] if r.get("remote_group_id") != g["id"]]
        self._rules_changed()

    def list_rules(self, group_id: str | None = None) -> list[dict]:
        with self._lock:
            rules = [r for g in self.security_groups for r in g["rules"]]
        return rules if group_id is None else [r for r in rules if r["security_group_id"] == group_id]

    def add_rule(self, group: dict, rule: dict, description: str) -> dict:
        """Add ``rule`` (its :data:`RULE_KEYS`) to ``group``; :class:`Refused` (409) if the
        group has the same rule already."""
        with self._lock:
            for old in group["rules"]:
                if all(old.get(k) == rule[k] for k in RULE_KEYS):
                    raise Refused(409, "SecurityGroupRuleExists",
                                  f"Security group rule already exists. Rule id is {old['id']}.")
            rule.update({"id": str(uuid.uuid4()), "security_group_id": group["id"],
                         "tenant_id": PROJECT_ID, "project_id": PROJECT_ID,
                         "description": description})
            group["rules"].append(rule)
        self._rules_changed()
        return rule

    def get_rule(self, rule_id: str) -> dict:
        """The rule (a copy); :class:`Refused` (404) if there is none."""
        with self._lock:
            return dict(self._find_rule(rule_id)[1])

    def delete_rule(self, rule_id: str) -> None:
        with self._lock:
            g, r = self._find_rule(rule_id)
            g["rules"].remove(r)
        self._rules_changed()

    def _find_rule(self, rule_id: str) -> tuple[dict, dict]:
        found = next(((g, r) for g in self.security_groups for r in g["rules"] if r["id"] == rule_id), None)
        if found is None:
            raise Refused(404, "SecurityGroupRuleNotFound", f"Security group rule {rule_id} does not exist")
        return found
