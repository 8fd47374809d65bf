"""Head placement ``cluster`` on real machines: the cluster lifecycle with the ``openstack``
provisioner against the emulator in container mode. Her head boots as a machine whose real
cloud-init starts her Spark master, her Connect server (on the head's loopback) and HAProxy
(TLS, ALPN h2, a certificate of the cluster's own CA); her workers boot as machines and join
the master on the head's tenant address; a job runs through Connect over TLS, verified against
the cluster CA (executors on the workers, the driver on the head); the hub host starts no JVM
for her; stop leaves no server, machine or file."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from jupyter_spark_openstack.core.cluster import ClusterConfig, SparkCluster
from jupyter_spark_openstack.core.errors import ClusterError
from jupyter_spark_openstack.core.options import OptionsSchema
from jupyter_spark_openstack.core.spark import connect as cc
from jupyter_spark_openstack.demo.hubprocess import processes_under
from tests._machines import (
    DROPPED,
    OPEN,
    boot_server,
    container_emulator,
    delete_server,
    java_pids_here,
    machines_provisioner_config,
    reach_from_here,
    reach_from_machine,
    sdk_connection,
)

pytestmark = [pytest.mark.spark, pytest.mark.timeout(900)]

SIZES = [{"name": "small", "cores": 1, "memory": "1g"}]

JOB = textwrap.dedent("""
    import json, sys
    from jupyter_spark_openstack.core.spark import connect as cc
    from pyspark.sql.connect.session import SparkSession
    url, token_file, ca_file, name = sys.argv[1:5]
    b = cc.channel_builder(url, cc.read_token_file(token_file),
                           ca_pem=open(ca_file, "rb").read(), server_name=name)
    spark = SparkSession.builder.channelBuilder(b).create()
    df = spark.range(0, 200000, 1, 8).selectExpr("id % 7 AS k", "id AS v")
    rows = df.groupBy("k").count().orderBy("k").collect()
    print(json.dumps({"total": sum(r["count"] for r in rows), "groups": len(rows),
                      "version": spark.version}))
    spark.stop()
""")


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    with container_emulator(tmp_path_factory, "head-machines") as (emu, d):
        yield emu, d


def _provisioner(emu, d, **kw):
    from jupyter_spark_openstack.core.provisioners.openstack import OpenStackProvisioner

    # the hub's own address only, and no stock "default" group: her groups alone admit traffic
    return OpenStackProvisioner(machines_provisioner_config(
        emu, d, hub_cidr=f"{emu.hub_address}/32", security_groups=[],
        install={"mode": "preinstalled", "spark_home": "/opt/spark",
                 "java_home": "/usr/lib/jvm/java-17-openjdk-amd64"}, **kw))


async def test_head_on_her_cluster_tls_job_no_jvm_on_the_hub_and_stop(cloud, tmp_path):
    emu, d = cloud
    prov = _provisioner(emu, d)
    events: list[str] = []
    opts = OptionsSchema(sizes=SIZES).parse({"workers": 2, "size": "small"})
    cfg = ClusterConfig(hub_id="headtest", master_host=emu.hub_address, start_timeout=400,
                        connect_driver_memory="768m",
                        connect_conf={"spark.executor.memory": "512m"})
    assert cfg.head_placement is None and prov.default_head_placement == "cluster"
    cluster = SparkCluster.new(cfg, prov, owner="alice", options=opts, run_dir=tmp_path / "alice",
                               emit=lambda p, m: events.append(m))
    stranger_server = None
    try:
        state = await cluster.start()
        assert state["placement"] == "cluster"
        heads = [r for r in cluster.records if r.is_head]
        assert len(heads) == 1 and len(cluster.worker_records) == 2
        vms = {vm.id: vm for vm in emu.model.list_servers()}
        head_ip = state["master"]["host"]
        assert vms[heads[0].id].address == head_ip != emu.hub_address
        assert state["master"]["master_url"] == f"spark://{head_ip}:7077"
        assert state["connect"]["url"] == f"sc://{head_ip}:15002"
        # the head is its own step of the spawn's progress
        assert any("head server" in e.lower() for e in events), events
        assert any("Spark master ready on the head" in e for e in events), events
        # the hub host runs no JVM for her: her master and driver are in the head machine (a
        # master or Connect server of hers on this host would name her run directory)
        assert java_pids_here() & {p.pid for p in processes_under(tmp_path)} == set()
        head = emu.backend.machine(vms[heads[0].id])
        for unit in ("spark-openstack-master.service", "spark-openstack-connect.service",
                     "spark-openstack-tls.service"):
            assert head.run(["systemctl", "is-active", unit]).stdout.strip() == "active", unit
        # her master and workers are daemons: the hub's daemon JVM settings, from their units
        from jupyter_spark_openstack.core.spark.daemons import DAEMON_JAVA_OPTS, DAEMON_MEMORY

        for m, cls in [(head, "deploy.master.Master")] + [
                (emu.backend.machine(vms[r.id]), "deploy.worker.Worker") for r in cluster.worker_records]:
            jvm = [a for a in m.run(["ps", "-eo", "args"]).stdout.splitlines() if cls in a]
            assert len(jvm) == 1 and f"-Xmx{DAEMON_MEMORY}" in jvm[0].split() and \
                all(o in jvm[0].split() for o in DAEMON_JAVA_OPTS.split()), jvm
        # the Connect server itself listens on the head's loopback only; TLS is on 15002
        listening = [line.split()[3] for line in head.run(["ss", "-Hltn"]).stdout.splitlines()]
        on_15003 = [a for a in listening if a.endswith(":15003")]
        assert on_15003 and all("127.0.0.1" in a for a in on_15003), listening
        assert any(a.endswith(":15002") for a in listening), listening
        # the token and the secret are in files of the service user only
        perms = head.run(["stat", "-c", "%a %U", "/etc/spark-openstack/connect.properties"]).stdout.split()
        assert perms == ["600", "spark"], perms
        assert "spark.connect.authenticate.token" not in head.run(["ps", "-eo", "args"]).stdout
        # a job through Connect over TLS, verified against her cluster's CA
        c = state["connect"]
        res = subprocess.run([sys.executable, "-c", JOB, c["url"], c["token_file"], c["ca_file"],
                              c["server_name"]], capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr[-3000:]
        out = json.loads(res.stdout.strip().splitlines()[-1])
        assert (out["total"], out["groups"]) == (200000, 7), out
        # its executors ran on the worker machines
        ran = [emu.backend.machine(vms[r.id]).run(
            ["sh", "-c", "ls /var/lib/spark-openstack/work | grep -c app- || true"]).stdout.strip()
            for r in cluster.worker_records]
        assert any(n not in ("", "0") for n in ran), ran
        # the wrong CA is refused by the real head too
        from jupyter_spark_openstack.core.tls import make_cluster_tls

        other = make_cluster_tls(c["server_name"]).ca_pem.encode()
        with pytest.raises(cc.ConnectTLSError):
            cc.probe(c["url"], cc.read_token_file(c["token_file"]), ca_pem=other,
                     server_name=c["server_name"])
        assert cluster.state.master.webui_url == f"http://{head_ip}:8080"
        # only the hub reaches her head's UIs and Connect; her workers reach its master and
        # driver ports only; a stranger's server reaches nothing of hers
        worker_ip = vms[cluster.worker_records[0].id].address
        worker = emu.backend.machine(vms[cluster.worker_records[0].id])
        ui = {8080: "master UI", 4040: "application UI", 15002: "Connect (TLS)", 7077: "master"}
        assert {p: reach_from_here(head_ip, p) for p in ui} == {p: OPEN for p in ui}
        assert {p: reach_from_machine(worker, head_ip, p) for p in ui} == \
            {8080: DROPPED, 4040: DROPPED, 15002: DROPPED, 7077: OPEN}
        stranger_conn = sdk_connection(emu, d)
        stranger_server, stranger = boot_server(emu, stranger_conn, "stranger")
        assert {p: reach_from_machine(stranger, head_ip, p) for p in ui} == {p: DROPPED for p in ui}
        assert reach_from_here(worker_ip, 8081) == OPEN            # her worker's UI, from the hub
        assert reach_from_machine(stranger, worker_ip, 8081) == DROPPED
        machines = [emu.backend.machine(vms[r.id]) for r in cluster.records]
    finally:
        if stranger_server is not None:
            delete_server(stranger_conn, stranger_server)
        await cluster.stop()
        await prov.close()
    assert emu.model.list_servers() == []
    assert all(m.deleted and m.leftovers() == [] for m in machines)
    assert not Path(state["connect"]["token_file"]).exists()
    assert not Path(state["connect"]["ca_file"]).exists()
    assert java_pids_here() & {p.pid for p in processes_under(tmp_path)} == set()


async def test_head_placement_needs_a_head_flavor_and_nothing_is_left(cloud, tmp_path):
    emu, d = cloud
    from jupyter_spark_openstack.core.errors import ValidationError
    from jupyter_spark_openstack.core.provisioners.openstack import OpenStackProvisioner
    from jupyter_spark_openstack.testing.emulator.helpers import provisioner_config

    prov = OpenStackProvisioner(provisioner_config(emu, d / "clouds.yaml", master_host=emu.hub_address))
    opts = OptionsSchema(sizes=SIZES).parse({"workers": 1, "size": "small"})
    cluster = SparkCluster.new(ClusterConfig(hub_id="headtest", master_host=emu.hub_address), prov,
                               owner="bob", options=opts, run_dir=tmp_path / "bob")
    try:
        with pytest.raises((ValidationError, ClusterError)) as ei:
            await cluster.start()
        assert "openstack.head_flavor" in str(ei.value)
    finally:
        await prov.close()
    assert emu.model.list_servers() == []
    assert not (tmp_path / "bob" / "connect.token").exists()
