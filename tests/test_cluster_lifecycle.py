"""The core lifecycle (core/cluster.py) with the local provisioner and real Spark processes:
shared-master mode, and a worker that dies during the spawn fails it fast and leaves nothing."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from jupyter_spark_openstack.core.cluster import ClusterConfig, SparkCluster
from jupyter_spark_openstack.core.errors import ClusterError, ValidationError
from jupyter_spark_openstack.core.options import OptionsSchema
from jupyter_spark_openstack.core.provisioners.local import LocalProvisioner
from jupyter_spark_openstack.core.spark import daemons
from jupyter_spark_openstack.core.spark.master_client import fetch_master_state


@pytest.mark.spark
def test_shared_master_mode_adds_and_removes_only_this_users_workers(tmp_path, spark_cluster):
    before = {w.id for w in fetch_master_state(spark_cluster["webui_url"]).alive_workers}
    prov = LocalProvisioner({"run_dir": str(tmp_path / "prov")})
    config = ClusterConfig(hub_id="t", master_mode="shared",
                           shared_master_url=spark_cluster["master_url"],
                           shared_master_webui_url=spark_cluster["webui_url"],
                           authenticate=False, connect_server=False, start_timeout=180)
    events = []
    cluster = SparkCluster.new(config, prov, owner="sam", run_dir=tmp_path / "sam",
                               options=OptionsSchema().parse({"workers": 1}),
                               emit=lambda p, m: events.append(m))

    async def run():
        await cluster.start()
        mine = {w.id for w in fetch_master_state(spark_cluster["webui_url"]).alive_workers} - before
        assert len(mine) == 1
        assert cluster.master_url == spark_cluster["master_url"]
        assert await cluster.poll() == "running"
        await cluster.stop()
        return mine

    mine = asyncio.run(run())
    assert f"Using the shared Spark master {spark_cluster['master_url']}" in events
    assert "Worker 1/1 registered" in events
    # the shared master and its other workers are untouched; ours is gone from this host
    assert daemons.is_running(spark_cluster["master"])
    assert not asyncio.run(prov.list_workers(hub_id="t"))
    alive = {w.id for w in fetch_master_state(spark_cluster["webui_url"]).alive_workers}
    assert before <= alive
    assert not (mine & alive)


class KillingProvisioner(LocalProvisioner):
    """Fault injection: the real worker process is killed right after it starts."""

    name = "local"

    async def request_worker(self, spec):
        rec = await super().request_worker(spec)
        daemons.stop_daemon(rec.data, timeout=5)
        return rec


@pytest.mark.spark
def test_a_worker_dying_during_spawn_fails_fast_and_leaves_nothing(tmp_path):
    prov = KillingProvisioner({"run_dir": str(tmp_path / "prov")})
    config = ClusterConfig(hub_id="t", connect_server=False, start_timeout=300)
    cluster = SparkCluster.new(config, prov, owner="kim", run_dir=tmp_path / "kim",
                               options=OptionsSchema().parse({"workers": 2}))
    with pytest.raises(ClusterError, match=r"Spark worker t-kim-w\d failed: worker process \d+ exited"):
        asyncio.run(asyncio.wait_for(cluster.start(), 120))
    assert not asyncio.run(prov.list_workers(hub_id="t"))
    assert cluster.state.phase == "stopped" and cluster.state.master is None
    assert not (tmp_path / "kim" / "master" / "state.json").exists()


def test_shared_mode_needs_its_urls():
    with pytest.raises(ValidationError, match="shared_master_url"):
        ClusterConfig(master_mode="shared")
    with pytest.raises(ValidationError, match="master_mode: 'solo'"):
        ClusterConfig(master_mode="solo")


@pytest.mark.parametrize("bad", [-1, 20, "5", 2.5, True])
def test_daemon_nice_must_be_0_to_19(bad):
    with pytest.raises(ValidationError, match=r"spark_daemon_nice: .* is not allowed; expected an integer from 0"):
        ClusterConfig(daemon_nice=bad)


def test_spawned_daemons_get_the_niceness_and_keep_their_record(tmp_path):
    import psutil

    # a marker no other process carries: `sleep 30.<pid><n>` (a bare "30" may be in the
    # command line of some other session leader on a busy machine)
    secs = f"30.{os.getpid()}{time.monotonic_ns() % 100000}"
    rec = daemons._spawn("probe", ["sleep", secs, "1"], tmp_path / "probe.log", {}, nice=7,
                         marker=secs)
    try:
        p = psutil.Process(rec["pid"])
        deadline = time.monotonic() + 10
        # (read while `nice` execs, the command line can be empty for a moment)
        while p.cmdline()[:1] in ([], ["nice"]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert p.cmdline()[:2] == ["sleep", secs]   # `nice` exec'd the command in place
        assert p.nice() == 7
        assert rec["argv"] == [secs, "1"]           # the record names the command, not `nice`
        assert daemons.is_running(rec)
        # a record whose marker the process does not carry (forged, or a recycled pid) is
        # not that process: stopping it signals nothing
        forged = {**rec, "marker": str(tmp_path / "other.properties")}
        daemons.stop_daemon(forged)
        time.sleep(0.5)
        assert daemons.is_running(rec) and p.status() != psutil.STATUS_ZOMBIE
        assert daemons.find_by_marker(forged) == []
        # a daemon whose pid was never saved is found by its marker
        assert daemons.find_by_marker({**rec, "pid": None}) == [rec["pid"]]
    finally:
        daemons.stop_daemon(rec)
    assert not daemons.is_running(rec)


def test_connect_on_the_hub_with_a_remote_notebook_spawner_is_refused():
    from jupyterhub.spawner import Spawner

    from jupyter_spark_openstack.spawner import SparkClusterMixin

    class RemoteSpawner(SparkClusterMixin, Spawner):
        pass

    with pytest.raises(ValidationError, match="listens on the hub's loopback only") as ei:
        RemoteSpawner(connect_server=True)._check_connect_is_local()
    assert ei.value.field == "head_placement"
    RemoteSpawner(connect_server=False)._check_connect_is_local()
    # her head on her cluster, reached over TLS: any spawner
    RemoteSpawner(connect_server=True, head_placement="cluster")._check_connect_is_local()


def test_master_start_slots_are_validated_and_shared(tmp_path, monkeypatch):
    """One gate for every cluster of the hub (its HubState owns it, the spawner puts it in
    each ClusterConfig): at most ``master_start_slots`` per-user masters start at once, the
    others say on the spawn page that they wait."""
    import threading

    from jupyterhub.spawner import Spawner

    from jupyter_spark_openstack.core import cluster as core_cluster
    from jupyter_spark_openstack.spawner import SparkClusterMixin
    from jupyter_spark_openstack.spawner.hubstate import HubState

    with pytest.raises(ValidationError, match=r"master_start_slots: -1 is not allowed; expected an integer >= 0"):
        ClusterConfig(master_start_slots=-1)
    assert ClusterConfig().start_gate is None
    hub = HubState.get("gate-test")
    assert hub.start_gate(0) is None
    gate = hub.start_gate(2)
    assert hub.start_gate(2) is gate
    assert ClusterConfig(master_start_slots=2, start_gate=gate) == ClusterConfig(master_start_slots=2)

    class GatedSpawner(SparkClusterMixin, Spawner):
        pass

    # each spawner builds its own ClusterConfig, all with the hub's one gate
    a, b = (GatedSpawner(hub_id="gate-test", master_start_slots=2)._cluster_config()
            for _ in range(2))
    assert a.start_gate is gate and b.start_gate is gate
    assert GatedSpawner(hub_id="gate-test", master_start_slots=0)._cluster_config().start_gate is None

    lock = threading.Lock()
    running, peak = 0, 0

    def start_master(run_dir, **kw):   # in a worker thread, as the real one
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.1)
        with lock:
            running -= 1
        return {"master_url": "spark://127.0.0.1:7077", "webui_url": "http://127.0.0.1:8080",
                "master": {}}

    monkeypatch.setattr(core_cluster, "start_master_process", start_master)
    prov = LocalProvisioner({"run_dir": str(tmp_path / "prov")})
    events = []

    async def run():
        clusters = []
        for i in range(5):
            c = SparkCluster.new(a if i % 2 else b, prov, owner=f"u{i}", run_dir=tmp_path / f"u{i}",
                                 options=OptionsSchema().parse({"workers": 1}),
                                 emit=lambda p, m: events.append(m))
            c._make_dirs()
            clusters.append(c)
        await asyncio.gather(*(c._start_master(None) for c in clusters))

    asyncio.run(run())
    assert peak == 2
    assert sum("Waiting to start the Spark master: 2 other users' masters" in m for m in events) >= 3
    assert events.count("Spark master ready at spark://127.0.0.1:7077") == 5
