"""End to end on real machines: a real JupyterHub with the ``openstack`` provisioner against the
emulator in container mode, head placement ``cluster`` (the openstack default). Her head and her
workers boot as machines with the real cloud-init running our user-data; her master and Connect
server run on the head, behind HAProxy's TLS; the workers register with the head's master over
the tenant network; a Spark job runs in her kernel (a Connect client in her notebook server on the
hub host, verifying the head against her cluster's CA); her master's UI comes through the
notebook server's proxy from the head; the hub host runs no JVM for her; Nova's reboot of one
worker brings it back; stop leaves no server, machine or process."""

from __future__ import annotations

import os
import time

import pytest

from jupyter_spark_openstack.demo.hubprocess import processes_under
from tests._machines import container_emulator, hub_on, machines_provisioner_config

pytestmark = [pytest.mark.hub, pytest.mark.spark, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    with container_emulator(tmp_path_factory, "hub-openstack-machines", boot_delay=0.5) as (emu, d), \
            hub_on(emu, d / "hub", machines_provisioner_config(emu, d),
                   cluster_start_timeout=240.0, hub_id="hubmachines") as hub:
        yield hub, emu


def test_spawn_on_machines_job_reboot_and_stop(cloud, monkeypatch):
    hub, emu = cloud
    c = hub.client
    t0 = time.monotonic()
    r = c.spawn("alice", {"workers": 2, "size": "small"})
    assert r.status_code in (201, 202), r.text
    events = c.progress("alice", timeout=300)
    messages = [e["message"] for e in events]
    assert "Worker 2/2 registered" in messages, messages
    assert events[-1].get("ready"), events[-1]
    c.wait_ready("alice")
    print(f"\nspawn to ready with a head and 2 workers: {time.monotonic() - t0:.1f} s")
    assert any("head server" in m.lower() for m in messages), messages   # its own step
    all_vms = emu.model.list_servers()
    assert len(all_vms) == 3
    heads = [vm for vm in all_vms if vm.metadata.get("spark_openstack_role") == "head"]
    assert len(heads) == 1
    head_vm = heads[0]
    vms = [vm for vm in all_vms if vm is not head_vm]
    machines = [emu.backend.machine(vm) for vm in vms]
    head = emu.backend.machine(head_vm)
    assert all(m is not None and m.running for m in [*machines, head])
    assert all(vm.address and vm.address != "127.0.0.1" for vm in all_vms)
    for m in machines:   # our unit runs the worker, which talks to her master on the head
        assert m.run(["systemctl", "is-active", "spark-openstack-worker.service"]).stdout.strip() == "active"
        env = m.run(["cat", "/etc/spark-openstack/worker.env"]).stdout
        assert f"SPARK_MASTER_URL=spark://{head_vm.address}:7077" in env
    # the hub host runs no JVM for her: no java process of this hub in the hub's PID namespace
    from tests._machines import java_pids_here

    ours = {p.pid for p in processes_under(hub.dir.parent)}
    assert java_pids_here() & ours == set()
    # her kernelspec: Connect over TLS to the head, CA and token in her files, not in kernel.json
    specs = c.kernelspecs("alice")["kernelspecs"]
    env = specs["pyspark"]["spec"]["env"]
    assert env["SPARK_OPENSTACK_CONNECT_URL"] == f"sc://{head_vm.address}:15002"
    assert os.path.isfile(env["SPARK_OPENSTACK_CONNECT_CA_FILE"])
    assert "BEGIN" not in str(specs["pyspark"]) and "token=" not in str(specs["pyspark"])
    # her master's UI, from the head through her notebook server's proxy
    r = c.s.get(c.user_url("alice") + "spark-openstack/ui/master/json/", timeout=60)
    assert r.status_code == 200 and len(r.json()["workers"]) == 2, r.text[:300]
    code = ("df = spark.range(0, 200000, 1, 8).selectExpr('id % 7 AS k', 'id AS v')\n"
            "rows = df.groupBy('k').count().orderBy('k').collect()\n"
            "print(sum(r['count'] for r in rows), len(rows))")
    kid = c.start_kernel("alice", "pyspark")
    try:
        res = c.execute("alice", kid, code, timeout=300)
        assert res["error"] is None, res
        assert "200000 7" in res["text"], res
        # the executors ran on the machines: each machine's worker has an app directory
        ran = [m.run(["sh", "-c", "ls /var/lib/spark-openstack/work | grep -c app- || true"]).stdout.strip()
               for m in machines]
        assert any(n not in ("", "0") for n in ran), ran
        # an executor's log, on a worker machine, through her notebook server's proxy: the
        # application UI's log links point at the proxied worker UI, not at the machine
        ui = c.user_url("alice") + "spark-openstack/ui/"
        master = c.s.get(ui + "master/json/", timeout=60).json()
        apps = [a for a in master["activeapps"] if a["name"].startswith("spark-connect")]
        assert len(apps) == 1, master["activeapps"]
        app_id = apps[0]["id"]
        execs = c.s.get(f"{ui}app/{app_id}/api/v1/applications/{app_id}/allexecutors", timeout=60).json()
        links = [e["executorLogs"]["stderr"] for e in execs if e["id"] != "driver"]
        assert links and all("/spark-openstack/ui/" in u and "/worker/worker-" in u for u in links), links
        log = c.s.get(c.user_url("alice").split("/user/")[0] + links[0], timeout=60)
        assert log.status_code == 200 and "CoarseGrainedExecutorBackend" in log.text, log.text[:500]
        # Nova's reboot of one worker: the machine reboots and our unit brings the worker back
        import openstack
        monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(emu.run_dir.parent / "clouds.yaml"))
        conn = openstack.connect(cloud="emulator")
        m0, vm0 = machines[0], vms[0]
        boots = m0.boots
        conn.compute.reboot_server(vm0.id, "SOFT")
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not (m0.boots > boots and vm0.status == "ACTIVE"):
            time.sleep(0.5)
        assert m0.boots == boots + 1 and vm0.status == "ACTIVE"
        deadline = time.monotonic() + 180
        active = ""
        while time.monotonic() < deadline:
            active = m0.run(["systemctl", "is-active", "spark-openstack-worker.service"]).stdout.strip()
            if active == "active":
                break
            time.sleep(0.5)
        assert active == "active"
        conn.close()
        # and her next job still runs on her cluster
        res = c.execute("alice", kid, "print(spark.range(1000).count())")
        assert res["error"] is None and "1000" in res["text"], res
    finally:
        c.delete_kernel("alice", kid)
    # the classic kernel works with her head on her cluster too: its driver runs in her kernel
    # on the hub host (on master_host, which her workers' group admits), her master is the head's
    assert "pyspark-classic" in specs
    kid = c.start_kernel("alice", "pyspark-classic")
    try:
        res = c.execute("alice", kid, "print(sc.master, sc.parallelize(range(1000), 4).sum())",
                        timeout=300)
        assert res["error"] is None, res
        assert f"spark://{head_vm.address}:7077 499500" in res["text"], res
    finally:
        c.delete_kernel("alice", kid)
    c.stop("alice")
    assert emu.model.list_servers() == []
    assert all(m.deleted and m.leftovers() == [] for m in machines)
