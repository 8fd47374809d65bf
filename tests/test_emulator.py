"""The OpenStack emulator, driven by openstacksdk unmodified over real HTTP (no JVM here:
spark_mode="none"; the Spark path is in test_openstack_spark.py)."""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.request

import openstack
import pytest
from openstack import exceptions as osx

from jupyter_spark_openstack.testing.emulator import Emulator


@pytest.fixture
def emu(tmp_path):
    e = Emulator(boot_delay=0.3, delete_delay=0.1, spark_mode="none", run_dir=tmp_path / "emu")
    e.start()
    try:
        yield e
    finally:
        e.stop()


def connect(emu, tmp_path, **over):
    path = emu.write_clouds_yaml(tmp_path / "clouds.yaml")
    cfg = openstack.config.OpenStackConfig(config_files=[path])
    region = cfg.get_one(cloud="emulator", **over)
    return openstack.connection.Connection(config=region)


def create(conn, name="t1", user_data=b"#cloud-config\nhostname: x\n", **kw):
    args = dict(name=name, flavor_id=conn.compute.find_flavor("m1.small").id,
                image_id=conn.image.find_image("spark-worker-4.0").id,
                networks=[{"uuid": conn.network.find_network("private").id}],
                user_data=base64.b64encode(user_data).decode(), metadata={"owner": "alice"},
                tags=["hub-h1"], key_name="demo-key", security_groups=[{"name": "default"}],
                availability_zone="nova")
    args.update(kw)
    return conn.compute.create_server(**args)


def http(emu, method, path, body=None):
    req = urllib.request.Request(emu.url + path, method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            data = r.read()
            return r.status, json.loads(data) if data else None
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def test_sdk_discovers_authenticates_and_negotiates_microversions(emu, tmp_path):
    conn = connect(emu, tmp_path)
    assert [f.name for f in conn.compute.flavors()] == ["m1.small", "m1.medium", "m1.large", "m1.xlarge"]
    assert conn.compute.find_flavor("m1.large").vcpus == 4
    assert conn.image.find_image("spark-worker-4.0").id == emu.images[0]["id"]
    assert conn.network.find_network("private").id == emu.networks[0]["id"]
    assert conn.compute.find_keypair("demo-key").name == "demo-key"
    lim = conn.compute.get_limits().absolute
    assert (lim.total_cores, lim.total_cores_used, lim.instances) == (64, 0, 100)
    kinds = [c.kind for c in emu.calls()]
    assert kinds[:2] == ["identity.discovery", "identity.auth"]
    assert "compute.discovery" in kinds and "image.discovery" in kinds
    assert all(c.status < 500 for c in emu.calls())
    r = conn.compute.get("/servers/detail", microversion="2.52")
    assert r.status_code == 200 and r.headers["OpenStack-API-Version"] == "compute 2.52"
    assert r.headers["X-OpenStack-Nova-API-Version"] == "2.52"
    r = conn.compute.get("/servers/detail", microversion="3.0")
    assert r.status_code == 406 and "maximum is 2.96" in r.json()["notAcceptable"]["message"]


def test_wrong_password_is_refused_with_401(emu, tmp_path):
    cloud = emu.cloud_config()
    cloud["auth"]["password"] = "wrong"
    region = openstack.config.OpenStackConfig(config_files=[]).get_one(**cloud)
    conn = openstack.connection.Connection(config=region)
    with pytest.raises(Exception) as ei:
        list(conn.compute.flavors())
    assert "401" in str(ei.value) or "authentication" in str(ei.value).lower()
    assert [c.status for c in emu.calls(kind="identity.auth")] == [401], [(c.method, c.path, c.status) for c in emu.calls()]
    # and no token, no access
    st, body = http(emu, "GET", "/compute/v2.1/servers")
    assert st == 401


def test_server_lifecycle_build_active_list_console_delete(emu, tmp_path):
    conn = connect(emu, tmp_path)
    s = create(conn)
    assert conn.compute.get_server(s.id).status == "BUILD"
    s = conn.compute.wait_for_server(s, wait=10, interval=0.1)
    assert s.status == "ACTIVE" and s.metadata == {"owner": "alice"} and s.tags == ["hub-h1"]
    assert s.key_name == "demo-key" and s.availability_zone == "nova"
    assert s.addresses["private"][0]["addr"] == "127.0.0.1"
    create(conn, name="other", tags=["hub-h2"])
    assert [x.name for x in conn.compute.servers(details=True, tags="hub-h1")] == ["t1"]
    assert sorted(x.name for x in conn.compute.servers(details=True)) == ["other", "t1"]
    assert [x.name for x in conn.compute.servers(details=True, name="^t1$")] == ["t1"]
    # the user-data was not a worker cloud-config: cloud-init's complaint is on the console
    out = conn.compute.get_server_console_output(s)["output"]
    assert "Invalid cloud-config provided" in out and "not started" in out
    # Nova kept the user-data as given (base64-decoded)
    assert {x["name"]: x["user_data"] for x in emu.servers()}["t1"] == "#cloud-config\nhostname: x\n"
    conn.compute.delete_server(s)
    conn.compute.wait_for_delete(s, interval=0.05, wait=10)
    with pytest.raises(osx.NotFoundException):
        conn.compute.get_server(s.id)
    assert [x["name"] for x in emu.servers()] == ["other"]
    assert emu.calls(kind="servers.delete")[0].status == 204


def test_bad_requests_answer_like_nova(emu, tmp_path):
    conn = connect(emu, tmp_path)
    with pytest.raises(osx.BadRequestException, match="Invalid key_name provided"):
        create(conn, key_name="nope")
    with pytest.raises(osx.BadRequestException, match="Security group nope not found"):
        create(conn, security_groups=[{"name": "nope"}])
    with pytest.raises(osx.BadRequestException, match="availability zone is not available"):
        create(conn, availability_zone="az9")
    assert emu.servers() == []


def test_quota_exceeded_is_nova_403_and_limits_count_usage(emu, tmp_path):
    conn = connect(emu, tmp_path)
    emu.set_quota(cores=3)
    big = conn.compute.find_flavor("m1.medium").id
    create(conn, name="a", flavor_id=big)
    with pytest.raises(osx.ForbiddenException) as ei:
        create(conn, name="b", flavor_id=big)
    assert "Quota exceeded for cores: Requested 2, but already used 2 of 3 cores" in str(ei.value)
    lim = conn.compute.get_limits().absolute
    assert (lim.total_cores, lim.total_cores_used, lim.instances_used) == (3, 2, 1)
    # injected: the next create is refused although the limits say there is room
    emu.set_quota(cores=64)
    emu.add_fault(action="quota", count=1)
    with pytest.raises(osx.ForbiddenException, match="Quota exceeded for cores"):
        create(conn, name="c")
    assert [s["name"] for s in emu.servers()] == ["a"]


def test_error_faults_by_kind_count_and_rate(emu, tmp_path):
    conn = connect(emu, tmp_path)
    list(conn.compute.flavors())
    emu.add_fault(action="error", kind="servers.list", status=503, count=2)
    for _ in range(2):
        with pytest.raises(osx.HttpException) as ei:
            list(conn.compute.servers())
        assert ei.value.status_code == 503
    assert list(conn.compute.servers()) == []
    emu.add_fault(action="error", kind="flavors", status=500, rate=0.5)
    results = []
    for _ in range(40):
        try:
            list(conn.compute.flavors())
            results.append("ok")
        except osx.HttpException as e:
            results.append(e.status_code)
    assert 8 <= results.count(500) <= 32 and results.count("ok") >= 8
    assert {c.fault for c in emu.calls(kind="flavors") if c.status == 500} == {"error:500"}


def test_delay_fault_makes_the_client_time_out(emu, tmp_path):
    conn = connect(emu, tmp_path, api_timeout=0.5)
    list(conn.compute.flavors())
    emu.add_fault(action="delay", kind="limits", seconds=1.5, count=1)
    t0 = time.monotonic()
    with pytest.raises(Exception) as ei:
        conn.compute.get_limits()
    assert time.monotonic() - t0 < 1.4
    assert "timed out" in str(ei.value).lower() or "timeout" in type(ei.value).__name__.lower()
    assert conn.compute.get_limits().absolute.total_cores == 64


def test_server_faults_error_vanish_slow_boot(emu, tmp_path):
    conn = connect(emu, tmp_path)
    emu.add_fault(action="boot_error", count=1, message="No valid host was found. There are not enough hosts available.")
    s = create(conn, name="err")
    time.sleep(0.6)
    s = conn.compute.get_server(s.id)
    assert s.status == "ERROR" and s.fault["message"].startswith("No valid host was found")
    emu.add_fault(action="vanish", count=1, seconds=0.3)
    v = create(conn, name="ghost")
    conn.compute.wait_for_server(v, wait=5, interval=0.1)
    time.sleep(0.6)
    with pytest.raises(osx.NotFoundException):
        conn.compute.get_server(v.id)
    emu.add_fault(action="slow_boot", count=1, seconds=1.5)
    sl = create(conn, name="slow")
    time.sleep(0.8)
    assert conn.compute.get_server(sl.id).status == "BUILD"
    conn.compute.wait_for_server(sl, wait=5, interval=0.1)


def test_control_endpoints_over_http(emu, tmp_path):
    st, body = http(emu, "POST", "/_emulator/faults", {"action": "error", "kind": "servers.create",
                                                        "status": 503, "count": 1})
    assert st == 201 and body["fault"]["status"] == 503
    st, body = http(emu, "POST", "/_emulator/faults", {"action": "explode"})
    assert st == 400 and "action: 'explode' is not allowed" in body["error"]
    conn = connect(emu, tmp_path)
    with pytest.raises(osx.HttpException):
        create(conn)
    st, body = http(emu, "GET", "/_emulator/calls")
    creates = [c for c in body["calls"] if c["kind"] == "servers.create"]
    assert [(c["method"], c["status"], c["fault"]) for c in creates] == [("POST", 503, "error:503")]
    st, body = http(emu, "GET", "/_emulator/faults")
    assert body["faults"] == []
    st, _ = http(emu, "POST", "/_emulator/quota", {"cores": 7})
    st, body = http(emu, "GET", "/_emulator/quota")
    assert body["quota"]["cores"] == 7 and body["usage"]["instances"] == 0


def test_thirty_concurrent_clients(emu, tmp_path):
    path = emu.write_clouds_yaml(tmp_path / "clouds.yaml")
    errors, names = [], []

    def client(i):
        try:
            cfg = openstack.config.OpenStackConfig(config_files=[path])
            conn = openstack.connection.Connection(config=cfg.get_one(cloud="emulator"))
            s = create(conn, name=f"c{i}", tags=["storm"])
            conn.compute.wait_for_server(s, wait=20, interval=0.2)
            names.append(conn.compute.get_server(s.id).name)
            conn.compute.delete_server(s)
            conn.compute.wait_for_delete(s, interval=0.2, wait=20)
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert sorted(names) == sorted(f"c{i}" for i in range(30))
    assert emu.servers() == []
    assert len(emu.calls(kind="servers.create")) == 30


def test_cli_serves_writes_clouds_yaml_and_stops_on_ctrl_c(tmp_path):
    import signal
    import subprocess
    import sys

    cy = tmp_path / "clouds.yaml"
    p = subprocess.Popen([sys.executable, "-m", "jupyter_spark_openstack.cli", "emulator",
                          "--no-jvm", "--boot-delay", "0.2", "--clouds-yaml", str(cy)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = p.stdout.readline()
        assert first.startswith("OpenStack emulator on http://127.0.0.1:")
        p.stdout.readline()
        cfg = openstack.config.OpenStackConfig(config_files=[str(cy)])
        conn = openstack.connection.Connection(config=cfg.get_one(cloud="emulator"))
        s = create(conn, name="cli-vm")
        assert conn.compute.wait_for_server(s, wait=10, interval=0.1).status == "ACTIVE"
        p.send_signal(signal.SIGINT)
        out, _ = p.communicate(timeout=30)
        assert p.returncode == 0 and "deleting servers" in out
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    bad = subprocess.run([sys.executable, "-m", "jupyter_spark_openstack.cli", "emulator",
                          "--host", "0.0.0.0"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2
    assert "--host: '0.0.0.0' is not allowed; expected 127.0.0.1 or localhost" in bad.stderr


def test_security_groups_and_rules_like_neutron(emu, tmp_path):
    conn = connect(emu, tmp_path)
    net = conn.network
    sg = net.create_security_group(name="cluster-a", description="workers of a")
    other = net.create_security_group(name="cluster-b")
    assert net.find_security_group("cluster-a").id == sg.id
    assert [g.name for g in net.security_groups(name="cluster-a")] == ["cluster-a"]
    assert sorted(g.name for g in net.security_groups()) == ["cluster-a", "cluster-b", "default"]
    own = net.create_security_group_rule(security_group_id=sg.id, direction="ingress", ether_type="IPv4",
                                         protocol="tcp", port_range_min=1024, port_range_max=65535,
                                         remote_group_id=sg.id)
    hub = net.create_security_group_rule(security_group_id=sg.id, direction="ingress", ether_type="IPv4",
                                         protocol="tcp", remote_ip_prefix="10.0.0.7/24")
    assert (own.remote_group_id, own.remote_ip_prefix, own.port_range_min) == (sg.id, None, 1024)
    assert hub.remote_ip_prefix == "10.0.0.0/24"   # normalised, as Neutron does
    rules = {r.id: r for r in net.security_group_rules(security_group_id=sg.id)}
    assert {own.id, hub.id} <= set(rules) and len(rules) == 4   # + the two default egress rules
    assert net.get_security_group_rule(own.id).remote_group_id == sg.id
    assert net.security_group_rules(security_group_id=other.id) and \
        all(r.direction == "egress" for r in net.security_group_rules(security_group_id=other.id))
    with pytest.raises(osx.ConflictException, match="already exists"):
        net.create_security_group_rule(security_group_id=sg.id, direction="ingress", ether_type="IPv4",
                                       protocol="tcp", port_range_min=1024, port_range_max=65535,
                                       remote_group_id=sg.id)
    with pytest.raises(osx.BadRequestException, match="Only remote_ip_prefix or remote_group_id"):
        net.create_security_group_rule(security_group_id=sg.id, direction="ingress",
                                       remote_group_id=sg.id, remote_ip_prefix="10.0.0.0/24")
    with pytest.raises(osx.BadRequestException, match="not a valid IP subnet"):
        net.create_security_group_rule(security_group_id=sg.id, direction="ingress",
                                       remote_ip_prefix="10.0.0.0/33")
    with pytest.raises(osx.BadRequestException, match="Conflicting value ethertype IPv4"):
        net.create_security_group_rule(security_group_id=sg.id, direction="ingress", remote_ip_prefix="::/0")
    with pytest.raises(osx.NotFoundException, match="does not exist"):
        net.create_security_group_rule(security_group_id=sg.id, direction="ingress",
                                       remote_group_id="00000000-0000-4000-8000-00000000dead")
    net.delete_security_group_rule(hub)
    assert hub.id not in {r.id for r in net.security_group_rules(security_group_id=sg.id)}
    with pytest.raises(osx.NotFoundException):
        net.delete_security_group_rule(hub.id, ignore_missing=False)
    # a server by the group's id: Nova shows its name; Neutron refuses to delete it meanwhile
    s = create(conn, security_groups=[{"name": sg.id}, {"name": "default"}])
    assert {x["id"]: x["security_groups"] for x in emu.servers()}[s.id] == ["cluster-a", "default"]
    with pytest.raises(osx.ConflictException, match="in use"):
        net.delete_security_group(sg)
    with pytest.raises(osx.ConflictException, match="default security group"):
        net.delete_security_group(net.find_security_group("default"))
    conn.compute.delete_server(s)
    conn.compute.wait_for_delete(s, interval=0.05, wait=10)
    # a rule of another group naming it as remote goes with it
    net.create_security_group_rule(security_group_id=other.id, direction="ingress", remote_group_id=sg.id)
    net.delete_security_group(sg)
    assert net.find_security_group("cluster-a") is None
    assert all(r.remote_group_id != sg.id for r in net.security_group_rules())
    with pytest.raises(osx.NotFoundException):
        net.delete_security_group(sg.id, ignore_missing=False)
    assert [c.status for c in emu.calls(kind="security_groups") if c.method == "DELETE"] == \
        [204, 404, 409, 409, 204, 404]


def test_server_with_an_ambiguous_group_name_is_refused_like_nova(emu, tmp_path):
    conn = connect(emu, tmp_path)
    conn.network.create_security_group(name="twin")
    conn.network.create_security_group(name="twin")
    with pytest.raises(osx.ConflictException, match="Multiple security groups found matching 'twin'"):
        create(conn, security_groups=[{"name": "twin"}])
    assert emu.servers() == []
