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
    assert server["security_groups"] == ["default", "spark-openstack-hub1"]
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


async def test_security_group_opens_spark_ports_to_the_hub_network_only(emu, prov):
    await prov.request_worker(spec(1))
    await prov.request_worker(spec(2))
    sg = next(g for g in emu.security_groups if g["name"] == "spark-openstack-hub1")
    ingress = [r for r in sg["rules"] if r["direction"] == "ingress"]
    assert sorted((r["remote_ip_prefix"] or "", r["remote_group_id"] or "") for r in ingress) == \
        [("", sg["id"]), ("10.0.0.0/24", "")]
    assert all((r["protocol"], r["port_range_min"], r["port_range_max"]) == ("tcp", 1024, 65535)
               for r in ingress)
    assert len([c for c in emu.calls(kind="security_groups") if c.method == "POST"]) == 3


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


async def test_quota_refused_at_create_is_a_quota_error(emu, prov):
    emu.add_fault(action="quota", count=1)
    with pytest.raises(QuotaError) as ei:
        await prov.request_worker(spec(1))
    assert "Quota exceeded for cores" in str(ei.value)
    assert emu.servers() == []


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


async def test_unknown_image_or_size_fails_with_the_config_key(emu, tmp_path):
    p = OpenStackProvisioner(provisioner_config(emu, tmp_path / "clouds.yaml", image="no-such-image"))
    try:
        with pytest.raises(ProvisionerError, match=r"image 'no-such-image' \(config openstack.image\) does not exist"):
            await p.request_worker(spec(1))
        with pytest.raises(ValidationError, match="size: 'huge'"):
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
