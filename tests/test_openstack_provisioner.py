"""The ``openstack`` provisioner through openstacksdk against the emulator (no JVM here; the
Spark path with real workers is in test_openstack_spark.py)."""

from __future__ import annotations

import asyncio
import logging

import pytest
import yaml

from jupyter_spark_openstack.core.errors import ProvisionerError, QuotaError, ValidationError
from jupyter_spark_openstack.core.provisioners import cloudconfig as cc
from jupyter_spark_openstack.core.provisioners import load_provisioner_class
from jupyter_spark_openstack.core.provisioners.base import WorkerSpec
from jupyter_spark_openstack.core.provisioners.openstack import OpenStackProvisioner
from jupyter_spark_openstack.testing.emulator import PASSWORD, Emulator
from jupyter_spark_openstack.testing.emulator.helpers import provisioner_config

SECRET = "per-user-spark-secret_123"


@pytest.fixture
def emu(tmp_path):
    e = Emulator(boot_delay=0.3, delete_delay=0.1, spark_mode="none", run_dir=tmp_path / "emu")
    e.start()
    try:
        yield e
    finally:
        e.stop()


@pytest.fixture
async def prov(emu, tmp_path):
    p = OpenStackProvisioner(provisioner_config(emu, tmp_path / "clouds.yaml"))
    try:
        yield p
    finally:
        await p.close()


def spec(i=1, owner="alice", hub="hub1", size="small", server_name="", **kw):
    cid = f"{hub}-{owner}" + (f"-{server_name}" if server_name else "")
    args = dict(hub_id=hub, owner=owner, cluster_id=cid, name=f"{cid}-w{i}", index=i, cores=1,
                memory="1g", master_url="spark://127.0.0.1:7077", secret=SECRET, size=size,
                server_name=server_name)
    args.update(kw)
    return WorkerSpec(**args)


def test_entry_point_finds_the_openstack_provisioner():
    assert load_provisioner_class("openstack") is OpenStackProvisioner


@pytest.mark.parametrize("change, field", [
    ({"image": None}, "openstack.image"),
    ({"networks": []}, "openstack.networks"),
    ({"hub_cidr": "10.0.0.0/33"}, "openstack.hub_cidr"),
    ({"flavors": ["m1.small"]}, "openstack.flavors"),
    ({"flavors": {"small": "m1 small\n"}}, "openstack.flavors.small"),
    ({"install": {"mode": "download", "spark_url": "https://x.org/s.tgz"}}, "openstack.install.spark_sha512"),
    ({"install": {"mode": "preinstalled", "spark_home": "relative"}}, "openstack.install.spark_home"),
    ({"max_api_concurrency": 0}, "openstack.max_api_concurrency"),
    ({"retries": -1}, "openstack.retries"),
    ({"api_timeout": "soon"}, "openstack.api_timeout"),
    ({"master_host": "bad host"}, "openstack.master_host"),
    ({"manage_security_group": "yes"}, "openstack.manage_security_group"),
    ({"flavour": {}}, "openstack.flavour"),
])
def test_config_errors_name_key_value_and_allowed(emu, tmp_path, change, field):
    cfg = provisioner_config(emu, tmp_path / "clouds.yaml", **change)
    with pytest.raises(ValidationError) as ei:
        OpenStackProvisioner.validate_config(cfg)
    assert ei.value.field == field
    assert "expected" in str(ei.value)


async def test_request_status_list_delete(emu, prov):
    specs = [spec(1), spec(2), spec(1, owner="bob")]
    recs = await asyncio.gather(*(prov.request_worker(s) for s in specs))
    # the id is known before the server boots
    assert {r.id for r in recs} == {s["id"] for s in emu.servers()}
    assert (await prov.worker_status(recs[0])).state == "pending"
    for _ in range(50):
        sts = [await prov.worker_status(r) for r in recs]
        if all(s.state == "running" for s in sts):
            break
        await asyncio.sleep(0.1)
    assert [s.state for s in sts] == ["running"] * 3 and sts[0].host == "127.0.0.1"
    mine = await prov.list_workers(hub_id="hub1", owner="alice")
    assert sorted(r.name for r in mine) == ["hub1-alice-w1", "hub1-alice-w2"]
    assert {r.cluster_id for r in mine} == {"hub1-alice"}
    assert len(await prov.list_workers(hub_id="hub1")) == 3
    assert await prov.list_workers(hub_id="other-hub") == []
    server = {s["id"]: s for s in emu.servers()}[recs[0].id]
    assert server["metadata"]["spark_openstack_owner"] == "alice"
    assert server["metadata"]["spark_openstack_hub"] == "hub1"
    assert server["metadata"]["spark_openstack_cluster"] == "hub1-alice"
    assert "spark-openstack-hub-hub1" in server["tags"]
    assert server["flavor"] == "m1.small" and server["key_name"] == "demo-key"
    assert server["availability_zone"] == "nova"
    assert server["security_groups"] == ["default", "spark-openstack-hub1.hub1-alice"]
    bobs = {s["id"]: s for s in emu.servers()}[recs[2].id]
    assert bobs["security_groups"] == ["default", "spark-openstack-hub1.hub1-bob"]
    await asyncio.gather(*(prov.delete_worker(r) for r in recs))
    assert emu.servers() == []
    assert (await prov.worker_status(recs[0])).state == "gone"
    await prov.delete_worker(recs[0])  # idempotent


async def test_user_data_is_a_worker_cloud_config_without_credentials(emu, prov, tmp_path):
    rec = await prov.request_worker(spec(1, cores=2, memory="3g"))
    ud = {s["id"]: s["user_data"] for s in emu.servers()}[rec.id]
    doc = yaml.safe_load(ud)
    files = {f["path"]: f["content"] for f in doc["write_files"]}
    env = cc.parse_env_file(files[cc.ENV_FILE])
    assert env["SPARK_MASTER_URL"] == "spark://127.0.0.1:7077"
    assert (env["SPARK_WORKER_CORES"], env["SPARK_WORKER_MEMORY"]) == ("2", "3g")
    assert env["_SPARK_AUTH_SECRET"] == SECRET
    assert doc["hostname"] == "hub1-alice-w1"
    clouds = (tmp_path / "clouds.yaml").read_text()
    assert PASSWORD in clouds and PASSWORD not in ud
    for word in ("password", "auth_url", "token", "jupyterhub_api"):
        assert word not in ud.lower()
    # the emulator's cloud-init read it as a valid worker config
    await asyncio.sleep(0.6)
    console = await prov.worker_log(rec)
    assert "Started Spark worker" in console and "Invalid" not in console
    await prov.delete_worker(rec)


async def test_quota_precheck_refuses_with_the_numbers(emu, prov):
    emu.set_quota(cores=20)
    for i in range(7):  # 14 cores used by 7 medium servers
        await prov.request_worker(spec(i, owner="carol", size="medium"))
    emu.clear_calls()
    with pytest.raises(QuotaError) as ei:
        await prov.check_capacity([spec(i, size="large") for i in range(4)])
    assert "needs 16 vCPUs, 6 left in project quota (20 total, 14 used)" in str(ei.value)
    assert emu.calls(kind="servers.create") == []
    await prov.check_capacity([spec(i, size="medium") for i in range(3)])  # 6 fits


async def test_server_in_error_reports_novas_fault(emu, prov):
    emu.add_fault(action="boot_error", count=1,
                  message="No valid host was found. There are not enough hosts available.")
    rec = await prov.request_worker(spec(1))
    await asyncio.sleep(0.6)
    st = await prov.worker_status(rec)
    assert st.state == "failed"
    assert st.message == (f"server hub1-alice-w1 ({rec.id}) is in ERROR: No valid host was found. "
                          "There are not enough hosts available.")
    await prov.delete_worker(rec)
    assert emu.servers() == []


async def test_transient_errors_are_retried_others_fail_at_once(emu, prov, caplog):
    emu.add_fault(action="error", kind="servers.create", status=503, count=2)
    caplog.set_level(logging.WARNING)
    rec = await prov.request_worker(spec(1))
    assert [c.status for c in emu.calls(kind="servers.create")] == [503, 503, 202]
    assert [s["id"] for s in emu.servers()] == [rec.id]
    assert "transient error" in caplog.text and "retry 2/5" in caplog.text
    emu.add_fault(action="error", kind="servers.create", status=400, count=1,
                  message="Invalid input for field/attribute name.")
    with pytest.raises(ProvisionerError) as ei:
        await prov.request_worker(spec(2))
    assert not ei.value.transient
    assert "creating server hub1-alice-w2 failed: HTTP 400: Invalid input for field/attribute name." in str(ei.value)
    emu.add_fault(action="error", kind="servers.get", status=500, count=99)
    with pytest.raises(ProvisionerError) as ei:
        await prov.worker_status(rec)
    assert ei.value.transient and "after 6 attempts" in str(ei.value)
    emu.clear_faults()


async def test_quota_refused_at_create_is_a_quota_error(emu, prov, tmp_path):
    emu.add_fault(action="quota", count=1)
    with pytest.raises(QuotaError) as ei:
        await prov.request_worker(spec(1))
    assert "Quota exceeded for cores" in str(ei.value)
    assert emu.servers() == []
    # the group made for this first request went with it
    assert [g.name for g in neutron(emu, tmp_path).security_groups()] == ["default"]


async def test_create_that_timed_out_is_adopted_not_duplicated(emu, tmp_path):
    p = OpenStackProvisioner(provisioner_config(emu, tmp_path / "clouds.yaml", api_timeout=0.5))
    try:
        await p.list_workers(hub_id="warm")  # auth + discovery first
        emu.add_fault(action="delay", kind="servers.create", seconds=1.0, count=1)
        rec = await p.request_worker(spec(1))
        assert [s["id"] for s in emu.servers()] == [rec.id]
        await asyncio.sleep(1.0)  # the emulator logs the call when its delayed answer is due
        assert [c.status for c in emu.calls(kind="servers.create")] == [499]  # client gave up
        await p.delete_worker(rec)
    finally:
        await p.close()


async def test_unreachable_cloud_is_a_transient_error(tmp_path):
    e = Emulator(spark_mode="none", run_dir=tmp_path / "emu").start()
    cfg = provisioner_config(e, tmp_path / "clouds.yaml", retries=1)
    e.stop()  # nothing listens there any more
    p = OpenStackProvisioner(cfg)
    try:
        with pytest.raises(ProvisionerError) as ei:
            await p.list_workers(hub_id="h")
        assert ei.value.transient and "connection problem" in str(ei.value)
    finally:
        await p.close()


async def test_explicit_clouds_yaml_wins_over_the_hubs_os_environment(emu, tmp_path, monkeypatch):
    """The hub's environment names another cloud (a dead one, as a leftover OS_CLIENT_CONFIG_FILE
    would): the provisioner still talks to the cloud its own clouds_yaml names."""
    dead = Emulator(spark_mode="none", run_dir=tmp_path / "dead").start()
    stray = dead.write_clouds_yaml(tmp_path / "stray-clouds.yaml")
    dead.stop()
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(stray))
    monkeypatch.setenv("OS_CLOUD", "emulator")
    p = OpenStackProvisioner(provisioner_config(emu, tmp_path / "clouds.yaml", retries=0))
    try:
        assert await p.list_workers(hub_id="h") == []
    finally:
        await p.close()


async def test_unknown_image_or_size_fails_with_the_config_key(emu, tmp_path):
    p = OpenStackProvisioner(provisioner_config(emu, tmp_path / "clouds.yaml", image="no-such-image"))
    try:
        with pytest.raises(ProvisionerError, match=r"image 'no-such-image' \(config openstack.image\) does not exist"):
            await p.request_worker(spec(1))
        with pytest.raises(ValidationError, match="openstack.flavors: 'huge'"):
            await p.check_capacity([spec(1, size="huge")])
    finally:
        await p.close()
    assert emu.servers() == []


async def test_master_host_must_match_the_masters_url(emu, tmp_path):
    p = OpenStackProvisioner(provisioner_config(emu, tmp_path / "clouds.yaml", master_host="10.0.0.5"))
    try:
        with pytest.raises(ValidationError) as ei:
            await p.request_worker(spec(1))   # master at 127.0.0.1: unreachable from the VMs
        assert ei.value.field == "openstack.master_host"
        assert "spark://127.0.0.1:7077" in str(ei.value)
        rec = await p.request_worker(spec(1, master_url="spark://10.0.0.5:7077"))
        assert [s["id"] for s in emu.servers()] == [rec.id]
    finally:
        await p.close()


# ---- the per-cluster security group ------------------------------------------------------------
def neutron(emu, tmp_path):
    """A client of the emulator's Neutron of its own (openstacksdk, over HTTP)."""
    import openstack

    path = emu.write_clouds_yaml(tmp_path / "neutron-clouds.yaml")
    region = openstack.config.OpenStackConfig(config_files=[path]).get_one(cloud="emulator")
    return openstack.connection.Connection(config=region).network


def group_of(net, name):
    groups = [g for g in net.security_groups(name=name) if g.name == name]
    assert len(groups) == 1, [g.id for g in groups]
    return groups[0]


def ingress(net, sg):
    return sorted(((r.protocol, r.port_range_min, r.port_range_max, r.ether_type,
                    r.remote_group_id, r.remote_ip_prefix)
                   for r in net.security_group_rules(security_group_id=sg.id)
                   if r.direction == "ingress"), key=repr)


def server_groups(emu, rec):
    return {s["id"]: s["security_groups"] for s in emu.servers()}[rec.id]


def group_posts(emu):
    return [c for c in emu.calls(kind="security_groups")
            if c.method == "POST" and c.path.endswith("/security-groups")]


def rule_posts(emu):
    return [c for c in emu.calls(kind="security_groups")
            if c.method == "POST" and c.path.endswith("/security-group-rules")]


async def test_cluster_group_opens_spark_ports_to_its_own_workers_and_the_hub_only(emu, prov, tmp_path):
    r1 = await prov.request_worker(spec(1))
    r2 = await prov.request_worker(spec(2))
    net = neutron(emu, tmp_path)
    sg = group_of(net, "spark-openstack-hub1.hub1-alice")
    assert ingress(net, sg) == sorted([("tcp", 1024, 65535, "IPv4", sg.id, None),
                                       ("tcp", 1024, 65535, "IPv4", None, "10.0.0.0/24")], key=repr)
    assert "alice" in sg.description and "hub1-alice" in sg.description and "hub1" in sg.description
    assert server_groups(emu, r1) == server_groups(emu, r2) == ["default", sg.name]
    assert (len(group_posts(emu)), len(rule_posts(emu))) == (1, 2)   # once per cluster


async def test_her_head_gets_a_group_that_admits_her_workers_and_the_hub_on_its_ports_only(emu, tmp_path):
    """Placement 'cluster': the head's own group opens the master's and driver's ports to her
    workers' group and the UIs and Connect's TLS port to the hub only; her workers' group
    admits her head. Both go with her last server."""
    from jupyter_spark_openstack.core.provisioners.base import HeadSpec
    from jupyter_spark_openstack.core.tls import make_cluster_tls

    prov = OpenStackProvisioner(provisioner_config(emu, tmp_path / "clouds.yaml", head_flavor="m1.medium"))
    try:
        head = await prov.request_head(HeadSpec(hub_id="hub1", owner="alice", cluster_id="hub1-alice",
                                                name="hub1-alice-head", token="tok_1", secret=SECRET,
                                                tls=make_cluster_tls("connect.head.example")))
        worker = await prov.request_worker(spec(1, master_url="spark://10.0.0.50:7077",
                                                master_on_head=True))
        assert head.is_head and not worker.is_head
        net = neutron(emu, tmp_path)
        w = group_of(net, "spark-openstack-hub1.hub1-alice")
        h = group_of(net, "spark-openstack-hub1.hub1-alice~head")
        assert server_groups(emu, head) == ["default", h.name]
        assert server_groups(emu, worker) == ["default", w.name]
        assert ingress(net, h) == sorted(
            [("tcp", 7077, 7077, "IPv4", w.id, None), ("tcp", 7078, 7079, "IPv4", w.id, None)]
            + [("tcp", p, p, "IPv4", None, "10.0.0.0/24") for p in (7077, 8080, 4040, 15002)], key=repr)
        assert ingress(net, w) == sorted([("tcp", 1024, 65535, "IPv4", w.id, None),
                                          ("tcp", 1024, 65535, "IPv4", None, "10.0.0.0/24"),
                                          ("tcp", 1024, 65535, "IPv4", h.id, None)], key=repr)
        # a restarted hub adopts both groups and finds nothing to change
        prov2 = OpenStackProvisioner(provisioner_config(emu, tmp_path / "clouds.yaml", head_flavor="m1.medium"))
        before = len(rule_posts(emu))
        await prov2.request_worker(spec(2, master_url="spark://10.0.0.50:7077", master_on_head=True))
        await prov2.close()
        assert len(rule_posts(emu)) == before and len(group_posts(emu)) == 2
        for rec in await prov.list_workers(hub_id="hub1"):
            await prov.delete_worker(rec)
        assert [g.name for g in net.security_groups()] == ["default"]
    finally:
        await prov.close()


async def test_two_clusters_get_two_groups_that_only_admit_themselves(emu, prov, tmp_path):
    a, b, c = await asyncio.gather(prov.request_worker(spec(1)), prov.request_worker(spec(1, owner="bob")),
                                   prov.request_worker(spec(1, server_name="gpu")))
    net = neutron(emu, tmp_path)
    names = ["spark-openstack-hub1.hub1-alice", "spark-openstack-hub1.hub1-bob",
             "spark-openstack-hub1.hub1-alice-gpu"]
    groups = [group_of(net, n) for n in names]
    assert len({g.id for g in groups}) == 3
    for rec, g in zip((a, b, c), groups, strict=True):
        assert server_groups(emu, rec) == ["default", g.name]
        # the member rule names this group only: bob's workers are not members of alice's
        assert [r[4] for r in ingress(net, g) if r[4]] == [g.id]
    assert len(group_posts(emu)) == 3


async def test_parallel_requests_of_one_cluster_create_one_group(emu, prov, tmp_path):
    await prov.list_workers(hub_id="warm")   # auth + discovery first
    # a slow Neutron widens the window in which unlocked requests would all find no group
    emu.add_fault(action="delay", kind="security_groups", seconds=0.3, count=1)
    recs = await asyncio.gather(*(prov.request_worker(spec(i)) for i in range(1, 7)))
    net = neutron(emu, tmp_path)
    sg = group_of(net, "spark-openstack-hub1.hub1-alice")
    assert (len(group_posts(emu)), len(rule_posts(emu))) == (1, 2)
    assert all(server_groups(emu, r) == ["default", sg.name] for r in recs)
    assert [g.name for g in net.security_groups()] == ["default", sg.name]


async def test_group_goes_when_the_clusters_last_worker_is_deleted(emu, prov, tmp_path):
    w1, w2 = await prov.request_worker(spec(1)), await prov.request_worker(spec(2))
    bob = await prov.request_worker(spec(1, owner="bob"))
    net = neutron(emu, tmp_path)
    await prov.delete_worker(w1)
    assert group_of(net, "spark-openstack-hub1.hub1-alice")   # w2 still has it
    await prov.delete_worker(w2)
    assert [g.name for g in net.security_groups()] == ["default", "spark-openstack-hub1.hub1-bob"]
    assert [c.status for c in emu.calls(kind="security_groups") if c.method == "DELETE"] == [204]
    await prov.delete_worker(w2)   # idempotent, nothing left to delete
    # a hub restart later: the next worker of alice gets a fresh group
    w3 = await prov.request_worker(spec(3))
    assert server_groups(emu, w3) == ["default", "spark-openstack-hub1.hub1-alice"]
    await asyncio.gather(prov.delete_worker(w3), prov.delete_worker(bob))
    assert [g.name for g in net.security_groups()] == ["default"]


async def test_group_in_use_is_left_for_later_then_removed_as_an_orphan(emu, prov, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    rec = await prov.request_worker(spec(1))
    name = "spark-openstack-hub1.hub1-alice"
    net = neutron(emu, tmp_path)
    sg = group_of(net, name)
    # something else (an admin's VM, not of this hub) uses the group too
    conn = net._connection
    other = conn.compute.create_server(
        name="admin-vm", flavor_id=conn.compute.find_flavor("m1.small").id,
        image_id=conn.image.find_image("ubuntu-24.04").id,
        networks=[{"uuid": conn.network.find_network("private").id}],
        security_groups=[{"name": sg.id}])
    await prov.delete_worker(rec)   # no error: the group is left for later
    assert group_of(net, name).id == sg.id
    assert 409 in [c.status for c in emu.calls(kind="security_groups") if c.method == "DELETE"]
    assert "still in use (HTTP 409)" in caplog.text
    orphans = await prov.list_orphan_security_groups(hub_id="hub1")
    assert [(o["name"], o["cluster_id"], o["id"]) for o in orphans] == [(name, "hub1-alice", sg.id)]
    assert await prov.list_orphan_security_groups(hub_id="hub2") == []
    assert await prov.delete_orphan_security_groups(hub_id="hub1") == []   # still in use
    assert await prov.delete_orphan_security_groups(hub_id="hub1", min_age=3600) == []
    conn.compute.delete_server(other)
    conn.compute.wait_for_delete(other, interval=0.05, wait=10)
    assert await prov.delete_orphan_security_groups(hub_id="hub1") == [name]
    assert [g.name for g in net.security_groups()] == ["default"]


async def test_orphan_groups_of_clusters_with_servers_are_kept(emu, prov, tmp_path):
    await prov.request_worker(spec(1))
    p2 = OpenStackProvisioner(provisioner_config(emu, tmp_path / "clouds.yaml"))
    try:   # another process of the hub (the reconciler after a restart) sees a server there
        assert await p2.list_orphan_security_groups(hub_id="hub1") == []
        assert await p2.delete_orphan_security_groups(hub_id="hub1") == []
    finally:
        await p2.close()
    assert group_of(neutron(emu, tmp_path), "spark-openstack-hub1.hub1-alice")


async def test_restarted_hub_adopts_the_group_and_restores_its_rules(emu, tmp_path):
    p1 = OpenStackProvisioner(provisioner_config(emu, tmp_path / "clouds.yaml"))
    try:
        await p1.request_worker(spec(1))
    finally:
        await p1.close()
    net = neutron(emu, tmp_path)
    sg = group_of(net, "spark-openstack-hub1.hub1-alice")
    hub_rule = next(r for r in net.security_group_rules(security_group_id=sg.id) if r.remote_ip_prefix)
    net.delete_security_group_rule(hub_rule)
    net.create_security_group_rule(security_group_id=sg.id, direction="ingress", ether_type="IPv4",
                                   protocol="tcp", port_range_min=22, port_range_max=22,
                                   remote_ip_prefix="0.0.0.0/0")
    emu.clear_calls()
    p2 = OpenStackProvisioner(provisioner_config(emu, tmp_path / "clouds.yaml"))
    try:
        rec = await p2.request_worker(spec(2))
    finally:
        await p2.close()
    assert group_posts(emu) == []   # adopted, not duplicated
    assert server_groups(emu, rec) == ["default", sg.name]
    assert ingress(net, sg) == sorted([("tcp", 1024, 65535, "IPv4", sg.id, None),
                                       ("tcp", 1024, 65535, "IPv4", None, "10.0.0.0/24")], key=repr)


async def test_hub_cidr_defaults_to_the_master_host(emu, tmp_path):
    cfg = provisioner_config(emu, tmp_path / "clouds.yaml", hub_cidr=None, master_host="10.0.0.5")
    assert OpenStackProvisioner.validate_config(cfg)["hub_cidr"] == "10.0.0.5/32"
    p = OpenStackProvisioner(cfg)
    try:
        await p.request_worker(spec(1, master_url="spark://10.0.0.5:7077"))
    finally:
        await p.close()
    net = neutron(emu, tmp_path)
    sg = group_of(net, "spark-openstack-hub1.hub1-alice")
    assert [r[5] for r in ingress(net, sg) if r[5]] == ["10.0.0.5/32"]


async def test_no_hub_address_means_no_group_and_a_warning(emu, tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    cfg = provisioner_config(emu, tmp_path / "clouds.yaml", hub_cidr=None, master_host="hub.example.org")
    p = OpenStackProvisioner(cfg)
    try:
        rec = await p.request_worker(spec(1, master_url="spark://hub.example.org:7077"))
    finally:
        await p.close()
    assert "workers of different users are not isolated" in caplog.text
    assert server_groups(emu, rec) == ["default"] and group_posts(emu) == []


async def test_a_cluster_id_that_could_collide_is_refused(emu, prov):
    with pytest.raises(ValidationError) as ei:
        await prov.request_worker(spec(1, cluster_id="hub1.alice"))
    assert ei.value.field == "cluster_id"
    assert emu.servers() == [] and group_posts(emu) == []


def test_group_names_are_one_hub_and_cluster_s_only():
    from jupyter_spark_openstack.core.provisioners.openstack import (
        parse_security_group_name,
        security_group_name,
    )

    pairs = [("a", "b-c"), ("a-b", "c"), ("a.b", "c"), ("a", "b--c"), ("a--b", "c"),
             ("hub1", "hub1-alice"), ("hub1", "hub1-alice--x"), ("hub1", "hub1-alice-2dx")]
    names = [security_group_name(h, c) for h, c in pairs]
    assert len(set(names)) == len(pairs)
    assert [parse_security_group_name(n) for n in names] == pairs
    assert parse_security_group_name("spark-openstack-hub1") is None   # the old per-hub group
    assert parse_security_group_name("default") is None


def test_openstack_workers_are_remote():
    from jupyter_spark_openstack.core.provisioners.base import Provisioner

    assert OpenStackProvisioner.remote_workers is True
    assert Provisioner.remote_workers is False


# ---- spark_conf: into the worker's properties file ----------------------------------------------
async def test_spark_conf_is_in_the_workers_properties_file(emu, prov):
    conf = {"spark.network.crypto.enabled": "true", "spark.ui.killEnabled": "false",
            "spark.master.ui.decommission.allow.mode": "DENY",
            "spark.executorEnv.NOTE": r"C:\tmp #1 = ok"}
    rec = await prov.request_worker(spec(1, spark_conf=conf))
    ud = {s["id"]: s["user_data"] for s in emu.servers()}[rec.id]
    files = {f["path"]: f["content"] for f in yaml.safe_load(ud)["write_files"]}
    lines = files[cc.PROPERTIES_FILE].splitlines()
    assert "spark.network.crypto.enabled=true" in lines
    assert "spark.master.ui.decommission.allow.mode=DENY" in lines
    assert r"spark.executorEnv.NOTE=C:\\tmp #1 = ok" in lines
    boot = cc.read_worker_boot(ud)   # what the VM's cloud-init reads
    assert {k: boot.properties[k] for k in conf} == conf
    assert boot.properties["spark.authenticate"] == "true"


@pytest.mark.parametrize("conf, field", [
    ({"hadoop.fs.defaultFS": "x"}, "spark_conf"),
    ({"spark.a\nspark.b": "x"}, "spark_conf"),
    ({"spark.ui.killEnabled": "false\nspark.ui.killEnabled=true"}, "spark_conf.spark.ui.killEnabled"),
])
async def test_bad_spark_conf_is_refused_before_anything_is_created(emu, prov, conf, field):
    with pytest.raises(ValidationError) as ei:
        await prov.request_worker(spec(1, spark_conf=conf))
    assert ei.value.field == field
    assert emu.servers() == [] and group_posts(emu) == []


async def test_a_request_cancelled_before_its_server_exists_leaves_no_group(emu, tmp_path):
    p = OpenStackProvisioner(provisioner_config(emu, tmp_path / "clouds.yaml", retry_backoff=2.0))
    try:
        emu.add_fault(action="error", kind="servers.create", status=503, count=5)
        task = asyncio.create_task(p.request_worker(spec(1)))
        for _ in range(200):   # the first create failed; the request now waits to retry
            if emu.calls(kind="servers.create"):
                break
            await asyncio.sleep(0.02)
        assert group_of(neutron(emu, tmp_path), "spark-openstack-hub1.hub1-alice")
        task.cancel()   # a stop during the spawn
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        await p.close()   # waits for the release in the background
    assert emu.servers() == []
    assert [g.name for g in neutron(emu, tmp_path).security_groups()] == ["default"]


async def test_cluster_ids_of_named_servers_get_their_own_group(emu, prov, tmp_path):
    # core/naming.py keys: "alice" + server "x" -> "alice--x"; user "alice-x" -> "alice-2dx"
    a = await prov.request_worker(spec(1, cluster_id="hub1-alice--x", name="hub1-alice--x-w1"))
    b = await prov.request_worker(spec(1, cluster_id="hub1-alice-2dx", name="hub1-alice-2dx-w1"))
    assert server_groups(emu, a) == ["default", "spark-openstack-hub1.hub1-alice--x"]
    assert server_groups(emu, b) == ["default", "spark-openstack-hub1.hub1-alice-2dx"]
    await prov.delete_worker(a)
    assert [g.name for g in neutron(emu, tmp_path).security_groups()] == \
        ["default", "spark-openstack-hub1.hub1-alice-2dx"]
