"""A stop that failed (Nova answers 5xx past every retry) is retried by the hub's reconciler
with a backoff until nothing is left; each failed round says what is still there, and a
stopped cluster no longer counts against the hub's limits. Real parts: the OpenStack
emulator over HTTP, openstacksdk unmodified, the hub-wide state the spawners share."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from pathlib import Path

import pytest

from jupyter_spark_openstack.core.cluster import ClusterConfig, SparkCluster
from jupyter_spark_openstack.core.errors import ClusterError
from jupyter_spark_openstack.core.options import OptionsSchema
from jupyter_spark_openstack.core.provisioners.base import WorkerSpec
from jupyter_spark_openstack.core.provisioners.openstack import OpenStackProvisioner
from jupyter_spark_openstack.spawner.hubstate import HubState, Usage
from jupyter_spark_openstack.testing.emulator import Emulator
from jupyter_spark_openstack.testing.emulator.helpers import provisioner_config


@pytest.fixture
def emu(tmp_path):
    e = Emulator(boot_delay=0.1, delete_delay=0.05, spark_mode="none", run_dir=tmp_path / "emu")
    e.start()
    try:
        yield e
    finally:
        e.stop()


async def test_a_failed_stop_is_retried_with_backoff_until_nothing_is_left(emu, tmp_path, caplog):
    prov = OpenStackProvisioner(provisioner_config(emu, tmp_path / "clouds.yaml",
                                                   retry_backoff=0.01, retries=1,
                                                   poll_interval=0.05))
    base = tmp_path / "clusters"
    config = ClusterConfig(hub_id="retry", connect_server=False, base_dir=str(base),
                           head_placement="hub")
    options = OptionsSchema().parse({"workers": 2, "size": "small"})
    cluster = SparkCluster.new(config, prov, owner="alice", options=options,
                               run_dir=base / "alice")
    cluster._make_dirs()
    for spec in cluster._specs(None):
        spec = WorkerSpec(**{**spec.__dict__, "master_url": "spark://127.0.0.1:7077"})
        rec = await prov.request_worker(spec)
        cluster._save(records=[*cluster.state.records, rec])
    assert len(emu.servers()) == 2
    hub = HubState("retry-test")
    hub.usage["alice"] = Usage("alice", "", options, cluster.cluster_id)
    try:
        emu.add_fault(action="error", kind="servers.delete", status=503, rate=1.0)
        with pytest.raises(ClusterError) as e:
            await cluster.stop(retries=1)
        assert "still there: worker alice" not in str(e.value)   # names are the cluster's
        assert f"worker {cluster.cluster_id}-w1" in str(e.value)
        state = json.loads((base / "alice" / "cluster.json").read_text())
        assert state["phase"] == "stopping" and len(state["records"]) == 2
        old = time.time() - 60
        os.utime(base / "alice" / "cluster.json", (old, old))

        log = logging.getLogger("test.retry")
        with caplog.at_level(logging.WARNING, logger="test.retry"):
            # round 1: still failing; the log names what is still there
            assert await hub.stop_orphans(prov, config, base, interval=0.5, grace=0.2,
                                          log=log) == []
            assert any("failed 1 time(s)" in r.getMessage() and "still there" in r.getMessage()
                       and f"{cluster.cluster_id}-w2" in r.getMessage() for r in caplog.records)
            deletes = len(emu.calls("servers.delete"))
            # round 2, at once: held back by the backoff, no API call
            await hub.stop_orphans(prov, config, base, interval=0.5, grace=0.2, log=log)
            assert len(emu.calls("servers.delete")) == deletes
            assert hub.workers_in_use() == 2           # still counts: its servers exist
            # the cloud recovers; after the backoff the next round deletes everything
            emu.clear_faults()
            await asyncio.sleep(0.6)
            stopped = await hub.stop_orphans(prov, config, base, interval=0.5, grace=0.2, log=log)
        assert stopped == [cluster.cluster_id]
        assert emu.servers() == []
        assert not (base / "alice" / "cluster.json").exists()
        assert any("nothing of it is left" in r.getMessage() for r in caplog.records)
        assert hub.workers_in_use() == 0               # no longer counts against the limits
    finally:
        emu.clear_faults()
        await prov.close()


async def test_a_hub_killed_before_its_database_heard_still_stops_what_cluster_json_recorded(
        emu, tmp_path):
    """The hub was killed after the run dir's cluster.json recorded the workers and a Connect
    server, before its database heard of them. The database keeps only a reference to the one
    state: the next hub loads it from cluster.json and its stop deletes everything."""
    from jupyter_spark_openstack.core import safefs
    from jupyter_spark_openstack.core.spark import daemons
    from jupyter_spark_openstack.core.state import ConnectState

    prov = OpenStackProvisioner(provisioner_config(emu, tmp_path / "clouds.yaml",
                                                   retry_backoff=0.01, poll_interval=0.05))
    base = tmp_path / "clusters"
    config = ClusterConfig(hub_id="stale", connect_server=False, base_dir=str(base),
                           head_placement="hub")
    options = OptionsSchema().parse({"workers": 2, "size": "small"})
    cluster = SparkCluster.new(config, prov, owner="alice", options=options, run_dir=base / "alice")
    cluster._make_dirs()
    ref = cluster.state.ref                      # what the database had: no workers yet
    for spec in cluster._specs(None):
        spec = WorkerSpec(**{**spec.__dict__, "master_url": "spark://127.0.0.1:7077"})
        rec = await prov.request_worker(spec)
        cluster._save(records=[*cluster.state.records, rec])
    # a "Connect server" recorded in cluster.json only: a real process found by its record
    marker = str(base / "alice" / "connect" / "conf" / "connect.properties")
    Path(marker).parent.mkdir(parents=True)
    Path(marker).write_text("")
    proc = daemons._spawn("connect", ["/bin/sh", "-c", "sleep 600", marker],
                          base / "alice" / "connect" / "logs" / "connect.log", dict(os.environ),
                          marker=marker)
    cluster._save(connect=ConnectState.from_server_record({**proc, "properties_file": marker}))
    assert daemons.is_running(proc)
    assert len(emu.servers()) == 2
    try:
        again = SparkCluster.load(config, prov, ref)
        assert [r.id for r in again.records] == [r.id for r in cluster.records]
        await again.stop()
        assert not daemons.is_running(proc)
        assert emu.servers() == []
        assert not (base / "alice" / "cluster.json").exists()
        assert SparkCluster.load(config, prov, ref) is None      # stopped: nothing to load
        # a cluster.json of another cluster than the reference names is refused
        other = SparkCluster.new(config, prov, owner="bob", options=options, run_dir=base / "bob")
        other._make_dirs()
        bobs_ref = other.state.ref
        other._save(cluster_id="someone-else")
        with pytest.raises(safefs.UnsafePathError, match="someone-else"):
            SparkCluster.load(config, prov, bobs_ref)
    finally:
        await prov.close()
