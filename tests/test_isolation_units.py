"""The isolation rules in pure code: injective keys, escaping, root-safe file operations,
refused forged state. (The attacks on a real hub running as root are in
test_hub_multitenant.py.)"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import subprocess
import time

import pytest

from jupyter_spark_openstack.core import naming, safefs
from jupyter_spark_openstack.core.cluster import (
    ClusterConfig,
    SparkCluster,
    stop_orphan_clusters,
)
from jupyter_spark_openstack.core.errors import ValidationError
from jupyter_spark_openstack.core.provisioners.local import LocalProvisioner
from jupyter_spark_openstack.core.spark import daemons
from jupyter_spark_openstack.core.state import UiGuardState

COLLIDING = [
    ("a.b", ""), ("a_b", ""), ("a-b", ""), ("a b", ""), ("A.b", ""), ("a.B", ""),
    ("alice", "x"), ("alice-x", ""), ("alice--x", ""), ("alice", "-x"), ("alice-", "x"),
    ("alice", ""), ("alice", "x-"), ("alic", "ex"), ("alice-2dx", ""),
    ("zoë", ""), ("zoe\u0308", ""), ("zoe", ""), ("日本", ""), ("😀", ""), ("\ud83d", ""),
    ("a\rb", ""), ("a\nb", ""), ("a\x00b", ""), ("a\x1b[31mb", ""), ("ab", ""),
    ("u" * 64, ""), ("u" * 65, ""), ("u" * 64, "s"), ("u" * 63 + "v", ""),
    ("x" * 200, "a"), ("x" * 200, "b"), ("x" * 38, ""), ("x" * 39, ""), ("x" * 40, ""),
]


def test_distinct_user_server_pairs_get_distinct_keys():
    keys = {pair: naming.user_key(*pair) for pair in COLLIDING}
    assert len(set(keys.values())) == len(COLLIDING), {
        k: [p for p in COLLIDING if keys[p] == k] for k in keys.values()
        if sum(1 for p in COLLIDING if keys[p] == k) > 1}
    for (user, server), key in keys.items():
        assert len(key) <= naming.KEY_LENGTH
        assert set(key) <= set("abcdefghijklmnopqrstuvwxyz0123456789-"), key
        assert naming.user_key(user, server) == key    # stable


def test_keys_read_as_the_name_when_it_is_plain():
    assert naming.user_key("alice") == "alice"
    assert naming.user_key("alice", "x") == "alice--x"
    assert naming.user_key("a.b") == "a-2eb"
    assert naming.user_key("a_b") == "a-5fb"
    assert naming.user_key("a-b") == "a-2db"
    assert naming.cluster_id("jupyterhub", "alice", "x") == "jupyterhub-alice--x"


def test_exact_and_hashed_keys_never_meet():
    # every escaped text shorter than KEY_LENGTH is its own key; longer ones are hashed to
    # exactly KEY_LENGTH characters
    for n in range(1, 80):
        k = naming.user_key("u" * n)
        assert (k == "u" * n) == (n < naming.KEY_LENGTH)
        if n >= naming.KEY_LENGTH:
            assert len(k) == naming.KEY_LENGTH
    # an exhaustive pass over short names of the characters that used to collide
    alphabet = "a.-_ A"
    names = ["".join(t) for n in range(1, 5) for t in itertools.product(alphabet, repeat=n)]
    servers = ["", "x", "-x"]
    keys = [naming.user_key(n, s) for n in names for s in servers]
    assert len(set(keys)) == len(keys)


@pytest.mark.parametrize("bad", ["", "Hub", "hub_1", "-hub", "hub-", "h" * 21, 7, None])
def test_hub_id_is_validated(bad):
    with pytest.raises(ValidationError) as e:
        ClusterConfig(hub_id=bad)
    assert e.value.field == "hub_id"


def test_printable_escapes_control_characters_for_log_lines():
    assert naming.printable("alice") == "alice"
    assert naming.printable("zoë") == "zoë"
    out = naming.printable("evil\r\nINFO fake line\x1b[2J")
    assert "\r" not in out and "\n" not in out and "\x1b" not in out
    assert out == "evil\\r\\nINFO fake line\\x1b[2J"


def test_properties_files_carry_no_raw_control_character(tmp_path):
    props = {"spark.app.name": "spark-connect-a\rspark.ui.killEnabled=true",
             "spark.x": "line1\nline2\\tail", "spark.y": " lead", "spark.z": "zoë\x00\x7f😀"}
    path = daemons.write_properties(tmp_path / "d.properties", props)
    text = open(path, encoding="ascii").read()    # pure ASCII: every other char is \uXXXX
    lines = text.splitlines()
    assert len(lines) == len(props)               # no value started a line of its own
    assert all(ord(c) >= 0x20 for line in lines for c in line)
    assert "spark.app.name=spark-connect-a\\rspark.ui.killEnabled=true" in lines
    assert "spark.x=line1\\nline2\\\\tail" in lines
    assert "spark.y=\\ lead" in lines
    assert "spark.z=zo\\u00eb\\u0000\\u007f\\ud83d\\ude00" in lines
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"


def test_root_never_writes_through_a_planted_link(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "file").symlink_to(victim)
    with pytest.raises(FileExistsError):
        safefs.write_file(tmp_path / "d" / "file", "attack")
    # replace=True unlinks the link itself and creates a new file: the victim is untouched
    safefs.write_file(tmp_path / "d" / "file", "new", replace=True)
    assert victim.read_text() == "precious"
    assert not (tmp_path / "d" / "file").is_symlink()
    (tmp_path / "d" / "sub").symlink_to(tmp_path)
    with pytest.raises(safefs.UnsafePathError):
        safefs.make_dir(tmp_path / "d" / "sub", exist_ok=True)
    with pytest.raises(safefs.UnsafePathError):
        safefs.make_dirs(tmp_path / "d" / "sub" / "deeper")
    assert not (tmp_path / "deeper").exists()
    (tmp_path / "state.json").symlink_to(victim)
    with pytest.raises(safefs.UnsafePathError):
        safefs.read_json(tmp_path / "state.json")
    with pytest.raises(OSError):
        safefs.open_log(tmp_path / "state.json")
    assert victim.read_text() == "precious"


def test_remove_tree_does_not_follow_links(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("x")
    tree = tmp_path / "tree"
    (tree / "a").mkdir(parents=True)
    (tree / "a" / "link").symlink_to(outside)
    safefs.remove_tree(tree)
    assert not tree.exists()
    assert (outside / "keep").read_text() == "x"


def test_paths_in_state_must_lie_under_the_run_dir(tmp_path):
    from jupyter_spark_openstack.core.options import OptionsSchema

    base = tmp_path / "clusters"
    a = str(base / "alice")
    config = ClusterConfig(base_dir=str(base))
    prov = LocalProvisioner({"run_dir": str(tmp_path / "p")})
    good = {**SparkCluster.new(config, prov, owner="alice", options=OptionsSchema().parse({}),
                               run_dir=a).get_state(),
            "secret_file": a + "/spark-secret",
            "connect": {"token_file": a + "/connect.token",
                        "process": {"log": a + "/connect/logs/connect.log"}}}
    assert SparkCluster.from_state(config, prov, good).state.connect.token_file == a + "/connect.token"
    for bad in ({**good, "secret_file": "/etc/shadow"},
                {**good, "secret_file": str(base / "alice" / ".." / ".." / "x")},
                {**good, "run_dir": "/etc"},
                {**good, "connect": {"process": {"properties_file": "/usr/bin/python3"}}},
                # a version 2 state's flat Connect record is checked as it is migrated
                {**good, "version": 2, "connect": {"properties_file": "/usr/bin/python3"}},
                {**good, "master": {"mode": "per-user", "run_dir": str(base / "bob" / "master")}},
                {**good, "master": {"mode": "per-user", "process": {"log": "/var/log/x"}}}):
        with pytest.raises(safefs.UnsafePathError):
            SparkCluster.from_state(config, prov, bad)


def test_a_forged_cluster_json_deletes_and_kills_nothing_outside(tmp_path, caplog):
    """The reconciler reads <base>/*/cluster.json: one naming files and processes elsewhere
    is refused, and one naming processes that are not its daemons signals nothing."""
    base = tmp_path / "clusters"
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    innocent = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        from jupyter_spark_openstack.core.options import OptionsSchema

        ctime = __import__("psutil").Process(innocent.pid).create_time()
        prov = LocalProvisioner({"run_dir": str(tmp_path / "prov")})
        real = SparkCluster.new(ClusterConfig(hub_id="hub1"), prov, owner="mallory",
                                options=OptionsSchema().parse({}),
                                run_dir=base / "mallory").get_state()
        forged_paths = {**real, "phase": "running", "secret_file": str(victim),
                        "master": {"mode": "per-user", "run_dir": str(tmp_path)}}
        forged_pids = {**real, "cluster_id": "hub1-eve", "owner": "eve",
                       "run_dir": str(base / "eve"), "phase": "running",
                       "connect": {"process": {"pid": innocent.pid, "create_time": ctime,
                                               "marker": str(base / "eve" / "x.properties")}}}
        for state in (forged_paths, forged_pids):
            d = base / state["owner"]
            d.mkdir(parents=True)
            (d / "cluster.json").write_text(json.dumps(state))
            old = time.time() - 3600
            os.utime(d / "cluster.json", (old, old))
        with caplog.at_level(logging.ERROR):
            asyncio.run(stop_orphan_clusters(base, ClusterConfig(hub_id="hub1"), prov, set(),
                                             grace=1.0))
        assert victim.read_text() == "precious"
        assert innocent.poll() is None, "the reconciler killed a process the state named"
        assert any("refusing" in r.getMessage() and "victim.txt" in r.getMessage()
                   for r in caplog.records), [r.getMessage() for r in caplog.records]
    finally:
        innocent.kill()
        innocent.wait()


def test_per_user_limits_are_summed_over_her_servers():
    from jupyter_spark_openstack.core.options import Limits, OptionsSchema

    schema = OptionsSchema(limits=Limits.parse(max_workers_per_user=4, max_cores_per_user=4,
                                               max_memory_per_user="4g", max_workers_total=32))
    first = schema.parse({"workers": 3, "size": "small"})
    schema.check_user_total(schema.parse({"workers": 1}), [first])
    with pytest.raises(ValidationError) as e:
        schema.check_user_total(schema.parse({"workers": 2}), [first])
    assert e.value.field == "workers"
    assert "would hold 5 workers over her 2 servers" in str(e.value)


def test_every_daemon_is_recorded_before_its_process_exists(tmp_path):
    """A hub that dies between starting a daemon and saving its pid must still find it:
    the record (with its marker) is written before the process is created."""
    marker = str(tmp_path / "probe.properties")
    seen = []

    def record(rec):
        seen.append((dict(rec), daemons.find_by_marker(rec)))

    rec = daemons._spawn("probe", ["sh", "-c", "sleep 30", marker], tmp_path / "probe.log", {},
                         marker=marker, record=record)
    try:
        assert len(seen) == 1
        early, running_then = seen[0]
        assert early["pid"] is None and early["marker"] == marker
        assert running_then == []                          # nothing existed yet
        assert daemons.find_by_marker(early) == [rec["pid"]]   # ... and it is found by it now
    finally:
        daemons.stop_daemon(early)                         # stopped from the early record
    assert not daemons.is_running(rec)


def test_workers_on_other_hosts_get_encryption_and_local_ones_the_ui_guard(tmp_path):
    from jupyter_spark_openstack.core.options import OptionsSchema
    from jupyter_spark_openstack.core.provisioners.openstack import OpenStackProvisioner

    opts = OptionsSchema().parse({"workers": 1})

    def conf(prov_cls, config):
        c = SparkCluster.new(ClusterConfig(hub_id="h"), prov_cls.__new__(prov_cls), owner="a",
                             options=opts, run_dir=tmp_path / "a")
        c.state = c.state.evolve(secret_file=str(tmp_path / "a" / "s"),
                                 ui_guard=UiGuardState(classes="/c", token_file="/t",
                                                       user_token_file="/u"))
        return c.worker_conf, c.spark_conf

    remote_w, remote_all = conf(OpenStackProvisioner, {})
    local_w, local_all = conf(LocalProvisioner, {})
    for c in (remote_w, remote_all, local_w, local_all):
        assert c["spark.ui.killEnabled"] == "false"
        assert c["spark.master.ui.decommission.allow.mode"] == "DENY"
    assert remote_w["spark.network.crypto.enabled"] == "true"
    assert remote_all["spark.network.crypto.enabled"] == "true"
    assert "spark.network.crypto.enabled" not in local_all
    assert "spark.ui.filters" not in remote_w          # VMs have no guard class: their group
    assert remote_all["spark.ui.filters"] == local_w["spark.ui.filters"] \
        == "org.jupyter_spark_openstack.UiTokenFilter"


async def test_without_javac_the_spawn_fails_naming_it_and_leaves_nothing(tmp_path, monkeypatch):
    from jupyter_spark_openstack.core.errors import ClusterError
    from jupyter_spark_openstack.core.options import OptionsSchema
    from jupyter_spark_openstack.core.spark import uiguard

    monkeypatch.setattr(uiguard, "_javac", lambda: None)   # a host with a JRE only
    base = tmp_path / "clusters"
    cluster = SparkCluster.new(ClusterConfig(hub_id="h", ui_guard=True, base_dir=str(base)),
                               LocalProvisioner({"run_dir": str(tmp_path / "prov")}),
                               owner="alice", options=OptionsSchema().parse({"workers": 1}),
                               run_dir=base / "alice")
    with pytest.raises(ClusterError) as e:
        await cluster.start()
    assert "javac" in str(e.value) and "openjdk-17-jdk-headless" in str(e.value)
    assert "spark_ui_guard = False" in str(e.value)
    assert list((base / "alice").glob("session-*")) == []
    assert not (base / "alice" / "cluster.json").exists()


def test_a_sizes_flavor_is_the_openstack_provisioners_setting():
    """Core sizes carry no flavor; the spawner moves a size's 'flavor' into the openstack
    provisioner's 'flavors' (its own wins), and refuses one with another provisioner."""
    from jupyterhub.spawner import Spawner

    from jupyter_spark_openstack.core.options import OptionsSchema
    from jupyter_spark_openstack.spawner import SparkClusterMixin

    with pytest.raises(ValidationError) as ei:
        OptionsSchema([{"name": "small", "cores": 1, "memory": "1g", "flavor": "m1.small"}])
    assert ei.value.field == "worker_sizes.flavor" and "flavors" in str(ei.value)

    class S(SparkClusterMixin, Spawner):
        pass

    sizes = [{"name": "small", "cores": 1, "memory": "1g", "flavor": "m1.small"},
             {"name": "big", "cores": 4, "memory": "8g", "flavor": "m1.large"}]
    s = S(provisioner="openstack", worker_sizes=sizes,
          provisioner_config={"flavors": {"big": "m1.xlarge"}})
    got, flavors = s._sizes_and_flavors()
    assert all("flavor" not in x for x in got) and flavors == {"small": "m1.small", "big": "m1.large"}
    assert list(s.options_schema.sizes) == ["small", "big"]
    with pytest.raises(ValidationError) as ei:
        _ = S(provisioner="local", worker_sizes=sizes).options_schema
    assert ei.value.field == "worker_sizes[0].flavor"


def test_cluster_state_is_versioned_old_ones_migrate_newer_ones_are_refused(tmp_path):
    """A state from before head placement (no version, a flavor in its size) is read with its
    head on the hub; a version 2 state's flat Connect record becomes its typed fields and the
    server's process record; a state of an unknown newer version is refused, and nothing is
    stopped from it (the reconciler logs and skips it)."""
    import json

    from jupyter_spark_openstack.core.cluster import stop_orphan_clusters
    from jupyter_spark_openstack.core.options import OptionsSchema
    from jupyter_spark_openstack.core.provisioners.local import LocalProvisioner
    from jupyter_spark_openstack.core.state import STATE_VERSION, StateVersionError, migrate

    base = tmp_path / "clusters"
    base.mkdir()
    prov = LocalProvisioner({"run_dir": str(tmp_path / "prov")})
    config = ClusterConfig(hub_id="h", base_dir=str(base))
    new = SparkCluster.new(config, prov, owner="a", options=OptionsSchema().parse({}),
                           run_dir=base / "a")
    assert new.state.version == STATE_VERSION == 3 and new.state.placement == "hub"
    old = {k: v for k, v in new.get_state().items() if k not in ("version", "placement")}
    old["size"] = {**old["size"], "flavor": "m1.small"}
    c = SparkCluster.from_state(config, prov, old)
    assert c.state.version == 3 and c.placement == "hub" and c.state.size.name == "small"
    assert "flavor" not in c.get_state()["size"]
    flat = {"pid": 42, "create_time": 1.0, "url": "sc://localhost:15002", "port": 15002,
            "token_file": str(base / "a" / "connect.token"), "spark_version": "4.3.0",
            "log": str(base / "a" / "connect" / "logs" / "c.log")}
    v2 = SparkCluster.from_state(config, prov, {**new.get_state(), "version": 2, "connect": flat})
    assert v2.state.connect.url == "sc://localhost:15002"
    assert v2.state.connect.spark_version == "4.3.0"
    assert v2.state.connect.process == {"pid": 42, "create_time": 1.0, "port": 15002,
                                        "log": flat["log"]}
    assert v2.state.connect.server_record() == {**flat, "warm_up_s": None}
    for bad in (4, "2", True, 0):
        with pytest.raises(StateVersionError, match="cluster state version"):
            migrate({**new.get_state(), "version": bad})
    # the reconciler refuses a newer state's cluster.json instead of acting on it
    (base / "a").mkdir()
    (base / "a" / "cluster.json").write_text(json.dumps({**new.get_state(), "version": 4}))
    os.utime(base / "a" / "cluster.json", (1, 1))
    logs = []

    class Log:
        def error(self, *a):
            logs.append(a[0] % a[1:])

        warning = info = error

    assert asyncio.run(stop_orphan_clusters(base, ClusterConfig(hub_id="h", base_dir=str(base)),
                                            prov, set(), grace=0, logger=Log())) == []
    assert any("cluster state version 4 is not allowed" in m for m in logs), logs


def test_the_notebook_servers_port_is_outside_the_range_port_0_binds_take():
    """CI saw a notebook server fail with "port ... is already in use": JupyterHub's
    random_port() is an ephemeral port, and a JVM binding port 0 took it first."""
    import socket

    from jupyter_spark_openstack.core.spark import ports

    lo, hi = ports.ephemeral_range()
    held = []
    try:
        for _ in range(20):
            p = ports.free_port_outside_ephemeral("127.0.0.1")
            assert 1024 <= p < lo, (p, lo, hi)
            s = socket.socket()
            s.bind(("127.0.0.1", p))      # free when returned
            held.append(s)
            z = socket.socket()
            z.bind(("127.0.0.1", 0))      # what a JVM's port-0 bind gets
            assert lo <= z.getsockname()[1] <= hi
            z.close()
    finally:
        for s in held:
            s.close()
