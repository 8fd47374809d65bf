"""The emulator's container boot backend: servers are real machines (systemd, the real
cloud-init running our user-data, an address on the emulator's tenant network), driven through
the unmodified openstacksdk by the ``openstack`` provisioner. A real Spark master binds to the
hub's tenant address; the worker that our user-data's unit starts registers with it over the
tenant network; Nova's reboot brings it back; a worker that cannot start fails the wait at once
with the console's line; delete leaves nothing.

The rules that read a console (:data:`...cloudconfig.BOOT_FAILURES`) and the drivers' address for
remote workers are checked without root at the top."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
import urllib.request

import pytest

from jupyter_spark_openstack.core.errors import ValidationError
from jupyter_spark_openstack.core.provisioners import cloudconfig
from jupyter_spark_openstack.core.spark import connect
from tests._machines import container_emulator, machines_provisioner_config

pytestmark = pytest.mark.timeout(900)


# ---- without root ------------------------------------------------------------------------------
def test_boot_failure_rules_read_a_console():
    ok = ("[  OK  ] Started spark-openstack-worker.service - Spark worker.\n"
          "cloud-init[139]: Cloud-init v. 22.4.2 finished at ...\n")
    assert cloudconfig.boot_failure(ok) is None
    bad = ("cloud-init[139]: Cloud-init v. 22.4.2 running 'modules:final'\n"
           "cloud-init[139]: /var/tmp/spark-openstack-spark.tgz: FAILED\n"
           "cloud-init[139]: sha512sum: WARNING: 1 computed checksum did NOT match\n"
           "cloud-init[139]: spark-openstack-install: FAILED: http://10.87.0.1:8000/spark.tgz "
           "does not have the configured sha512; the Spark worker is not started\n"
           "cloud-init[139]: 2026 - util.py[WARNING]: Failed to run module scripts-user\n")
    why = cloudconfig.boot_failure(bad)
    assert why.startswith("installing Spark failed; the console says: ")
    assert "sha512sum: WARNING: 1 computed checksum did NOT match" in why
    assert "does not have the configured sha512" in why
    masked = "cloud-init[139]: Failed to enable unit: Unit file /etc/systemd/system/" \
             "spark-openstack-worker.service is masked.\n"
    assert cloudconfig.boot_failure(masked).startswith("the Spark worker unit could not be started")
    # the rules are data: every one compiles and names what it means
    assert all(isinstance(rx, str) and meaning for rx, meaning in cloudconfig.BOOT_FAILURES)


def test_the_install_script_says_why_it_fails():
    text = cloudconfig._INSTALL_SCRIPT_TEXT
    assert 'fail "cannot download $SPARK_URL"' in text
    assert 'fail "$SPARK_URL does not have the configured sha512"' in text
    # the check comes before unpacking
    assert text.index("sha512sum -c") < text.index("tar -xzf")


def test_drivers_listen_where_remote_executors_call_back():
    props = connect.connect_properties(master_url="spark://10.87.0.1:7077", port=15002,
                                       token="t", driver_host="10.87.0.1")
    assert props["spark.driver.host"] == props["spark.driver.bindAddress"] == "10.87.0.1"
    assert props["spark.connect.grpc.binding.address"] == "127.0.0.1"   # the kernel's side
    local = connect.connect_properties(master_url="spark://127.0.0.1:7077", port=15002, token="t")
    assert local["spark.driver.host"] == "127.0.0.1"
    for bad in ("a b", "", "x;y", "::zz"):
        with pytest.raises(ValidationError) as e:
            connect.parse_host("connect driver host", bad)
        assert e.value.field == "connect driver host"
    assert connect.parse_host("h", "fd00::1") == "fd00::1"


# ---- real machines -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    """An emulator in container mode, a real master on the hub's tenant address with a secret,
    and the openstack provisioner pointed at both."""
    from jupyter_spark_openstack.core.provisioners.openstack import OpenStackProvisioner
    from jupyter_spark_openstack.core.spark import daemons, ports

    with container_emulator(tmp_path_factory, "emulator-machines") as (emu, d):
        net = emu.network
        hub = emu.hub_address
        port, webui = ports.free_ports(2, hub)
        secret = secrets.token_urlsafe(24)
        master = daemons.start_master(d / "master", host=hub, port=port, webui_port=webui,
                                      properties={"spark.authenticate": "true",
                                                  "spark.authenticate.secret": secret,
                                                  "spark.network.crypto.enabled": "true"})
        try:
            cfg = machines_provisioner_config(emu, d)
            prov = OpenStackProvisioner(cfg)
            yield {"emu": emu, "prov": prov, "hub": hub, "master_url": f"spark://{hub}:{port}",
                   "webui": f"http://{hub}:{webui}", "secret": secret, "clouds": cfg["clouds_yaml"]}
            asyncio.run(prov.close())
        finally:
            daemons.stop_daemon(master)
    assert net.holder_pid is None or not os.path.exists(f"/proc/{net.holder_pid}/net")


def _spec(cloud, name: str, index: int):
    from jupyter_spark_openstack.core.provisioners.base import WorkerSpec

    return WorkerSpec(hub_id="emumachines", owner="alice", cluster_id="emumachines-alice",
                      name=name, index=index, cores=1, memory="512m",
                      master_url=cloud["master_url"], secret=cloud["secret"], size="small",
                      spark_conf={"spark.network.crypto.enabled": "true"})


def _workers(cloud) -> list[dict]:
    try:
        with urllib.request.urlopen(cloud["webui"] + "/json/", timeout=3) as r:
            return json.load(r)["workers"]
    except OSError:
        return []


def _wait_alive(cloud, host: str, timeout: float, *, not_ids=()) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for w in _workers(cloud):
            if w["host"] == host and w["state"] == "ALIVE" and w["id"] not in not_ids:
                return w
        time.sleep(0.5)
    raise AssertionError(f"no ALIVE worker from {host} after {timeout:.0f}s: {_workers(cloud)}")


def _wait_boot_failure(prov, rec, timeout: float) -> tuple[str | None, float]:
    """What the provisioner reads on the console (or None after ``timeout``), and when."""
    t0 = time.monotonic()
    why = None
    while time.monotonic() - t0 < timeout and why is None:
        time.sleep(0.5)
        why = asyncio.run(prov.boot_failure(rec))
    return why, time.monotonic() - t0


def _vm(cloud, server_id: str):
    return next(vm for vm in cloud["emu"].model.list_servers() if vm.id == server_id)


@pytest.fixture(scope="module")
def booted(cloud):
    """One worker requested through the provisioner and timed until it is ALIVE."""
    prov = cloud["prov"]
    t0 = time.monotonic()
    rec = asyncio.run(prov.request_worker(_spec(cloud, "alice-w1", 1)))
    st = None
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        st = asyncio.run(prov.worker_status(rec))
        if st.state == "running" and st.host:
            break
        time.sleep(0.3)
    assert st is not None and st.state == "running", st
    worker = _wait_alive(cloud, st.host, 180)
    return {"rec": rec, "host": st.host, "worker": worker, "seconds": time.monotonic() - t0}


def test_our_user_data_boots_a_worker_that_registers_over_the_tenant_network(cloud, booted):
    emu, host = cloud["emu"], booted["host"]
    print(f"\nrequest to registered: {booted['seconds']:.1f} s")
    # the worker's address is the server's own on the tenant network, not loopback
    assert host != "127.0.0.1" and host != cloud["hub"]
    import ipaddress
    assert ipaddress.ip_address(host) in emu.network.network
    vm = _vm(cloud, booted["rec"].id)
    assert vm.address == host
    m = emu.backend.machine(vm)
    assert m is not None and m.running and m.address == host
    # our unit runs the worker as the service account; cloud-init ran our user-data
    assert m.run(["systemctl", "is-active", cloudconfig.UNIT_NAME]).stdout.strip() == "active"
    assert m.run(["systemctl", "is-enabled", cloudconfig.UNIT_NAME]).stdout.strip() == "enabled"
    ps = m.run(["pgrep", "-u", cloudconfig.SERVICE_USER, "-f", "deploy.worker.Worker"])
    assert ps.returncode == 0, ps
    assert f"{host} alice-w1" in m.read_file("/etc/hosts").decode()     # the hosts script ran
    env = m.run(["cat", "/run/spark-openstack/local.env"]).stdout   # /run: a tmpfs
    assert f"SPARK_LOCAL_IP={host}" in env
    assert m.run(["stat", "-c", "%a %U", cloudconfig.ENV_FILE]).stdout.split() == ["600", "root"]
    # the console Nova returns is the machine's: systemd and the real cloud-init
    console = asyncio.run(cloud["prov"].worker_log(booted["rec"]))
    assert "Cloud-init v. 22.4.2 running 'modules:final'" in console
    assert "Started spark-openstack-worker.serv" in console   # systemd shortens the line
    assert "(emulated)" not in console
    # the master sees it with the cores and memory of the spec
    assert booted["worker"]["cores"] == 1 and booted["worker"]["memory"] == 512
    assert emu.backend.status(vm)["running"] is True


def test_nova_reboot_reboots_the_machine_and_the_worker_comes_back(cloud, booted, monkeypatch):
    import openstack

    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", cloud["clouds"])
    conn = openstack.connect(cloud="emulator")
    vm = _vm(cloud, booted["rec"].id)
    m = cloud["emu"].backend.machine(vm)
    before = m.boots
    old = booted["worker"]["id"]
    conn.compute.reboot_server(booted["rec"].id, "SOFT")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (m.boots > before and vm.status == "ACTIVE"):
        time.sleep(0.3)
    assert m.boots == before + 1 and vm.status == "ACTIVE"
    again = _wait_alive(cloud, booted["host"], 120, not_ids={old})
    assert again["id"] != old
    states = {w["id"]: w["state"] for w in _workers(cloud)}
    assert states.get(old) in (None, "DEAD")
    # the disk survived, cloud-init did not run our user-data a second time
    assert m.read_file("/var/lib/cloud/data/instance-id").decode().strip() == booted["rec"].id
    console = m.console(plain=True)
    assert console.count("running 'modules:final'") == 2
    assert console.count("Created symlink /etc/systemd/system/multi-user.target.wants/"
                         "spark-openstack-worker.service") == 1
    conn.close()


def test_a_worker_that_cannot_start_is_told_by_its_console(cloud):
    emu, prov = cloud["emu"], cloud["prov"]
    emu.add_fault(action="no_worker", kind="servers.create", count=1)
    rec = asyncio.run(prov.request_worker(_spec(cloud, "alice-w9", 9)))
    try:
        why, took = _wait_boot_failure(prov, rec, 120)
        assert why is not None, asyncio.run(prov.worker_log(rec))
        assert why.startswith("the Spark worker unit could not be started")
        assert "spark-openstack-worker.service is masked" in why
        print(f"\nboot failure seen after {took:.1f} s: {why}")
        vm = _vm(cloud, rec.id)
        assert not any(w["host"] == vm.address and w["state"] == "ALIVE" for w in _workers(cloud))
    finally:
        asyncio.run(prov.delete_worker(rec))


# ---- download install mode, for real ----------------------------------------------------------
@pytest.fixture(scope="module")
def tarball(cloud):
    """The wheel's Spark as a distribution tarball, served over HTTP on the tenant network."""
    from jupyter_spark_openstack.testing.machines.sparkdist import FileServer, spark_tarball

    path, sha512 = spark_tarball()
    with FileServer(path, cloud["hub"]) as srv:
        yield {"url": srv.url, "sha512": sha512}


def _download_provisioner(cloud, sha512: str, url: str):
    from jupyter_spark_openstack.core.provisioners.openstack import OpenStackProvisioner
    from jupyter_spark_openstack.testing.emulator.helpers import provisioner_config

    cfg = provisioner_config(cloud["emu"], cloud["clouds"], master_host=cloud["hub"],
                             hub_cidr=str(cloud["emu"].network.network), image="ubuntu-24.04")
    cfg["install"] = {"mode": "download", "spark_url": url, "spark_sha512": sha512}
    return OpenStackProvisioner(cfg)


def test_download_mode_fetches_checks_and_installs_spark_then_the_worker_registers(cloud, tarball):
    prov = _download_provisioner(cloud, tarball["sha512"], tarball["url"])
    rec = asyncio.run(prov.request_worker(_spec(cloud, "alice-w5", 5)))
    try:
        t0 = time.monotonic()
        deadline = t0 + 240
        st = asyncio.run(prov.worker_status(rec))
        while time.monotonic() < deadline and not (st.state == "running" and st.host):
            time.sleep(0.3)
            st = asyncio.run(prov.worker_status(rec))
        worker = _wait_alive(cloud, st.host, 240)
        print(f"\ndownload mode, request to registered: {time.monotonic() - t0:.1f} s")
        assert worker["state"] == "ALIVE"
        m = cloud["emu"].backend.machine(_vm(cloud, rec.id))
        # no Spark in this image but the one the install script unpacked into the machine's disk
        assert (m.dir / "upper" / "opt" / "spark" / "bin" / "spark-class").is_file()
        assert m.run(["findmnt", "/opt/spark"]).returncode != 0          # nothing bind-mounted
        console = asyncio.run(prov.worker_log(rec))
        assert "/var/tmp/spark-openstack-spark.tgz: OK" in console      # sha512sum's own line
        assert cloudconfig.boot_failure(console) is None
    finally:
        asyncio.run(prov.delete_worker(rec))
        asyncio.run(prov.close())


def test_a_wrong_sha512_starts_no_worker_and_says_so_at_once(cloud, tarball):
    wrong = ("0" if tarball["sha512"][0] != "0" else "1") + tarball["sha512"][1:]
    prov = _download_provisioner(cloud, wrong, tarball["url"])
    rec = asyncio.run(prov.request_worker(_spec(cloud, "alice-w6", 6)))
    try:
        why, took = _wait_boot_failure(prov, rec, 180)
        print(f"\nwrong sha512 seen after {took:.1f} s: {why}")
        assert why is not None, asyncio.run(prov.worker_log(rec))
        assert why.startswith("installing Spark failed; the console says: ")
        assert "does not have the configured sha512" in why
        assert "spark-openstack-spark.tgz: FAILED" in why            # sha512sum's own line
        m = cloud["emu"].backend.machine(_vm(cloud, rec.id))
        assert not (m.dir / "upper" / "opt" / "spark" / "bin").exists()  # nothing unpacked
        assert m.run(["systemctl", "is-active", cloudconfig.UNIT_NAME]).stdout.strip() != "active"
    finally:
        asyncio.run(prov.delete_worker(rec))
        asyncio.run(prov.close())


async def test_a_spawn_with_a_wrong_sha512_fails_at_once_with_the_console_line(cloud, tarball, tmp_path):
    """Through the cluster lifecycle: the wait for workers stops at the console's line (not at
    its start timeout), and the failed start leaves no server and no master."""
    from jupyter_spark_openstack.core.cluster import ClusterConfig, SparkCluster
    from jupyter_spark_openstack.core.errors import ClusterError
    from jupyter_spark_openstack.core.options import OptionsSchema

    wrong = ("0" if tarball["sha512"][0] != "0" else "1") + tarball["sha512"][1:]
    prov = _download_provisioner(cloud, wrong, tarball["url"])
    sizes = [{"name": "small", "cores": 1, "memory": "512m"}]
    opts = OptionsSchema(sizes=sizes).parse({"workers": 1, "size": "small"})
    cfg = ClusterConfig(hub_id="emumachines", start_timeout=600.0, connect_server=False,
                        master_host=cloud["hub"], head_placement="hub")
    cluster = SparkCluster.new(cfg, prov, owner="bob", options=opts, run_dir=tmp_path / "cluster")
    t0 = time.monotonic()
    try:
        with pytest.raises(ClusterError) as ei:
            await cluster.start()
    finally:
        await prov.close()
    msg = str(ei.value)
    print(f"\nspawn failed after {time.monotonic() - t0:.1f} s: {msg}")
    assert msg.startswith("Spark worker emumachines-bob-w1 will not start: installing Spark failed; "), msg
    assert "does not have the configured sha512" in msg and "Timed out" not in msg
    assert not [vm for vm in cloud["emu"].model.list_servers()
                if vm.metadata.get("spark_openstack_owner") == "bob"]
    m = cluster.state.master
    assert m is None or not m.process or not __import__(
        "jupyter_spark_openstack.core.spark.daemons", fromlist=["x"]).is_running(m.process)


def test_delete_powers_off_and_leaves_nothing(cloud, booted):
    emu, prov = cloud["emu"], cloud["prov"]
    vm = _vm(cloud, booted["rec"].id)
    m = emu.backend.machine(vm)
    asyncio.run(prov.delete_worker(booted["rec"]))
    assert m.deleted and m.leftovers() == [] and not m.dir.exists()
    assert emu.network.owner(booted["host"]) is None
    assert not any(vb.startswith("vb-") for vb in emu.network.links())
    assert emu.model.list_servers() == []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(w["state"] == "ALIVE" for w in _workers(cloud)):
        time.sleep(0.5)
    assert not any(w["state"] == "ALIVE" for w in _workers(cloud))
