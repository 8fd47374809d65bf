"""The full path with real Spark: the cluster lifecycle (core/cluster.py) with the ``openstack``
provisioner, openstacksdk, the emulator over HTTP, the emulator's cloud-init starting real Spark
workers from the user-data, a real per-user master with spark.authenticate, and a real job.
Then every injected fault: the spawn fails with an error a person understands, and nothing is
left (no server, no worker process, no master)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import psutil
import pytest

from jupyter_spark_openstack.core.cluster import ClusterConfig, SparkCluster
from jupyter_spark_openstack.core.errors import ClusterError, ProvisionerError, QuotaError
from jupyter_spark_openstack.core.options import OptionsSchema
from jupyter_spark_openstack.core.provisioners.openstack import OpenStackProvisioner
from jupyter_spark_openstack.core.spark import daemons
from jupyter_spark_openstack.testing.emulator import Emulator
from jupyter_spark_openstack.testing.emulator.helpers import provisioner_config

pytestmark = pytest.mark.spark

SIZES = [{"name": "small", "cores": 1, "memory": "1g"},   # flavors: the provisioner's "flavors"
         {"name": "large", "cores": 4, "memory": "1g"}]


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    e = Emulator(boot_delay=1.0, delete_delay=0.1, spark_mode="jvm",
                 run_dir=tmp_path_factory.mktemp("emu-spark"))
    e.start()
    try:
        yield e
    finally:
        e.stop()


@pytest.fixture
async def prov(emu, tmp_path):
    emu.clear_faults()
    emu.set_quota(cores=64, instances=100)
    p = OpenStackProvisioner(provisioner_config(emu, tmp_path / "clouds.yaml", retries=2))
    try:
        yield p
    finally:
        await p.close()
        emu.clear_faults()


def new_cluster(prov, tmp_path, workers, size="small", timeout=120.0, events=None):
    opts = OptionsSchema(sizes=SIZES).parse({"workers": workers, "size": size})
    cfg = ClusterConfig(hub_id="ostest", start_timeout=timeout, patience_interval=5,
                        head_placement="hub",  # in-process workers: her head on the hub host
                        connect_server=False,  # the job below is a classic driver
                        daemon_nice=5)
    emit = (lambda p, m: events.append(m)) if events is not None else None
    return SparkCluster.new(cfg, prov, owner="alice", options=opts, run_dir=tmp_path / "cluster",
                            emit=emit)


JOB = textwrap.dedent("""
    import json, sys, time
    from pyspark.sql import SparkSession
    url, secret_file, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    spark = (SparkSession.builder.master(url).appName("openstack-emulator-job")
             .config("spark.authenticate", "true")
             .config("spark.authenticate.secret", open(secret_file).read().strip())
             .config("spark.driver.host", "127.0.0.1").config("spark.driver.bindAddress", "127.0.0.1")
             .config("spark.executor.memory", "512m").config("spark.executor.cores", "1")
             .config("spark.cores.max", str(n)).config("spark.ui.enabled", "false")
             .getOrCreate())
    sc = spark.sparkContext
    deadline = time.time() + 90
    while sc._jsc.sc().getExecutorMemoryStatus().size() - 1 < n and time.time() < deadline:
        time.sleep(0.5)
    total = sc.parallelize(range(1000), 4 * n).map(lambda x: x * x).sum()
    execs = sc._jsc.sc().getExecutorMemoryStatus().size() - 1
    print(json.dumps({"sum": total, "executors": execs}))
    spark.stop()
""")


def run_job(master_url: str, secret_file: str, n: int) -> dict:
    out = subprocess.run([sys.executable, "-c", JOB, master_url, secret_file, str(n)],
                         capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def assert_nothing_left(emu, cluster):
    assert emu.servers() == []
    assert emu.worker_processes() == []
    m = cluster.state.master
    assert m is None or not m.process or not daemons.is_running(m.process)


@pytest.mark.parametrize("n", [1, 4])
async def test_spawn_job_and_stop(emu, prov, tmp_path, n):
    events: list[str] = []
    cluster = new_cluster(prov, tmp_path, n, events=events)
    try:
        state = await cluster.start()
        servers = emu.servers()
        assert len(servers) == n and all(s["status"] == "ACTIVE" for s in servers)
        pids = [s["worker"]["pid"] for s in servers]
        assert all(daemons.is_running(s["worker"]) for s in servers)
        # each worker was started from its server's cloud-config (the env file's values)
        assert all("Started Spark worker" in "\n".join(s["console"]) for s in servers)
        assert {s["metadata"]["spark_openstack_cluster"] for s in servers} == {cluster.cluster_id}
        assert f"Worker {n}/{n} registered" in events
        # the hub-host master runs at the configured niceness; the emulated VMs' workers at
        # the emulator's (they stand for other machines)
        assert psutil.Process(state["master"]["process"]["pid"]).nice() == 5
        assert {psutil.Process(p).nice() for p in pids} == {emu.vm_nice} == {10}
        res = run_job(state["master"]["master_url"], cluster.secret_file, n)
        assert res["sum"] == sum(x * x for x in range(1000))
        assert res["executors"] == n
        assert len([c for c in emu.calls(kind="servers.create") if c.status == 202]) >= n
    finally:
        await cluster.stop()
    assert_nothing_left(emu, cluster)
    assert not any(daemons.is_running({"pid": p}) for p in pids)


async def _failing_spawn(emu, prov, tmp_path, n=2, timeout=60.0, exc=(ClusterError, ProvisionerError),
                         size="small"):
    events: list[str] = []
    cluster = new_cluster(prov, tmp_path, n, size=size, timeout=timeout, events=events)
    with pytest.raises(exc) as ei:
        await cluster.start()
    assert_nothing_left(emu, cluster)
    assert any("cleaning up" in e for e in events)
    return str(ei.value)


async def test_fault_api_5xx_beyond_retries(emu, prov, tmp_path):
    emu.add_fault(action="error", kind="servers.create", status=503, count=3,
                  message="Service Unavailable: nova-api is restarting")
    msg = await _failing_spawn(emu, prov, tmp_path, n=1)
    assert "creating server ostest-alice-w1 failed: HTTP 503: Service Unavailable: nova-api is restarting" in msg


async def test_fault_server_error_fails_fast_with_novas_message(emu, prov, tmp_path):
    emu.add_fault(action="boot_error", count=1,
                  message="No valid host was found. There are not enough hosts available.")
    msg = await _failing_spawn(emu, prov, tmp_path, n=2)
    assert "is in ERROR: No valid host was found. There are not enough hosts available." in msg


async def test_fault_quota_exceeded_at_create(emu, prov, tmp_path):
    emu.add_fault(action="quota", count=1)
    msg = await _failing_spawn(emu, prov, tmp_path, n=2, exc=QuotaError)
    assert "Quota exceeded for cores" in msg


async def test_fault_quota_precheck_with_numbers(emu, prov, tmp_path):
    emu.set_quota(cores=10)
    emu.clear_calls()
    msg = await _failing_spawn(emu, prov, tmp_path, n=4, size="large", exc=QuotaError)
    assert msg.startswith("OpenStack quota: needs 16 vCPUs, 10 left in project quota (10 total, 0 used)")
    assert emu.calls(kind="servers.create") == []  # refused before creating anything


async def test_fault_workers_that_never_register(emu, prov, tmp_path):
    emu.add_fault(action="no_worker", count=1)
    msg = await _failing_spawn(emu, prov, tmp_path, n=1, timeout=40.0)  # master start included
    assert "Timed out after" in msg and "0/1 Spark workers registered" in msg


async def test_fault_server_vanishes(emu, prov, tmp_path):
    emu.add_fault(action="vanish", count=1, seconds=0.1)
    msg = await _failing_spawn(emu, prov, tmp_path, n=1, timeout=60.0)
    assert "gone" in msg and "does not exist (404)" in msg


async def test_fault_slow_boot_still_succeeds(emu, prov, tmp_path):
    emu.add_fault(action="slow_boot", count=1, seconds=6.0)
    events: list[str] = []
    cluster = new_cluster(prov, tmp_path, 1, events=events)
    try:
        await cluster.start()
        assert "Worker 1/1 registered" in events
        assert any("Still waiting for Spark workers" in e for e in events)
    finally:
        await cluster.stop()
    assert_nothing_left(emu, cluster)
