"""A real JupyterHub with the ``openstack`` provisioner against the emulator (in this test
process): spawn through the REST API, workers booted by the emulator's cloud-init as real
Spark workers, a job in the user's kernel, stop leaves no server; an injected fault fails the
spawn with Nova's message and leaves nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from jupyter_spark_openstack.demo.client import HubClient
from jupyter_spark_openstack.demo.hubconfig import write_hub_config
from jupyter_spark_openstack.demo.hubprocess import HubProcess, kill_processes, processes_under
from jupyter_spark_openstack.testing.emulator.demo import start_demo_emulator
from tests._clusters import hub_cluster_state

pytestmark = [pytest.mark.hub, pytest.mark.spark]


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    d = tmp_path_factory.mktemp("hub-openstack")
    emu, prov_cfg, extra = start_demo_emulator(d, boot_delay=1.0, boot_backend="process")
    prov_cfg["retry_backoff"] = 0.1
    info = write_hub_config(d / "hub", provisioner="openstack", provisioner_config=prov_cfg,
                            extra=extra, spawner_overrides={"cluster_start_timeout": 240.0,
                                                            "hub_id": "hubtest",
                                                            "reconcile_interval": 2.0,
                                                            "reconcile_grace": 5.0})
    hub = HubProcess(info).start()
    hub.client = HubClient(info["url"], info["api_token"])
    try:
        yield hub, emu
    finally:
        hub.stop()
        emu.stop()
        left = processes_under(d)
        kill_processes(left)
        assert not left, f"processes left: {[p.cmdline()[:3] for p in left]}"



def test_spawn_on_openstack_job_and_stop(cloud):
    hub, emu = cloud
    c = hub.client
    r = c.spawn("alice", {"workers": 2, "size": "small"})
    assert r.status_code in (201, 202), r.text
    events = c.progress("alice")
    messages = [e["message"] for e in events]
    assert any(m.startswith("Requested 2 workers") for m in messages), messages
    assert "Worker 2/2 registered" in messages
    assert events[-1].get("ready"), events[-1]
    c.wait_ready("alice")
    servers = emu.servers()
    assert len(servers) == 2
    assert {s["metadata"]["spark_openstack_owner"] for s in servers} == {"alice"}
    assert {s["metadata"]["spark_openstack_hub"] for s in servers} == {"hubtest"}
    assert {s["flavor"] for s in servers} == {"m1.small"}
    cluster = hub_cluster_state(hub.client, "alice")
    assert sorted(r["id"] for r in cluster["records"]) == sorted(s["id"] for s in servers)
    # no cloud credential and no hub token in the user-data, nor in the notebook's environment
    clouds_yaml = Path(emu.run_dir).parent / "clouds.yaml"
    password = __import__("yaml").safe_load(clouds_yaml.read_text())["clouds"]["emulator"]["auth"]["password"]
    for s in servers:
        assert password not in s["user_data"] and hub.token not in s["user_data"]
    kid = c.start_kernel("alice", "pyspark-classic")
    try:
        res = c.execute("alice", kid, "import os\nprint(sc.parallelize(range(1000)).sum(), "
                                      "any('OS_PASSWORD' in k or 'OS_AUTH' in k for k in os.environ))")
        assert res["error"] is None, res
        assert "499500 False" in res["text"]
    finally:
        c.delete_kernel("alice", kid)
    c.stop("alice")
    assert emu.servers() == [] and emu.worker_processes() == []


def test_injected_fault_fails_the_spawn_with_novas_message(cloud):
    hub, emu = cloud
    emu.add_fault(action="boot_error", count=1,
                  message="No valid host was found. There are not enough hosts available.")
    c = hub.client
    r = c.spawn("bob", {"workers": 2, "size": "small"})
    assert r.status_code in (201, 202, 500), r.text
    # a spawn that fails within slow_spawn_timeout is answered 500 by JupyterHub's REST API
    # (the message then reaches the person through the spawn page's events and the hub log)
    events = c.progress("bob") if r.status_code != 500 else []
    text = "\n".join(e.get("message", "") for e in events) + r.text + hub.log_path.read_text()
    assert "is in ERROR: No valid host was found" in text, text[-3000:]
    srv = c.server("bob")
    assert not srv or not srv.get("ready")
    assert emu.servers() == [] and emu.worker_processes() == []


def test_hub_killed_mid_spawn_then_restarted_deletes_the_orphan_servers(cloud):
    """The hub is SIGKILLed while ivan's workers boot; the cloud (the emulator, in this test
    process) keeps the servers. The restarted hub deletes them (its reconciler finds them by
    the hub tag, or the spawner finds ivan's half-started server in its database)."""
    import threading
    import time

    from jupyter_spark_openstack.demo.hubprocess import processes_under

    hub, emu = cloud
    c = hub.client
    c.ensure_user("ivan")
    answers = []
    t = threading.Thread(target=lambda: answers.append(c.api(
        "POST", "/users/ivan/server", json={"workers": 2, "size": "small"}, timeout=600)),
        daemon=True)
    t.start()
    deadline = time.monotonic() + 180

    def ivans():
        return [s for s in emu.servers() if s["metadata"].get("spark_openstack_owner") == "ivan"]

    while time.monotonic() < deadline and len(ivans()) < 2:
        time.sleep(0.1)
    assert len(ivans()) == 2, ("ivan's workers were not requested",
                               [(a.status_code, a.text[:300]) for a in answers], hub.log_tail())
    hub.stop(kill=True)   # mid-spawn: the workers are booting, the hub is gone
    t.join(timeout=30)
    orphans = {s["id"] for s in ivans()}
    assert len(orphans) == 2
    mark = len(hub.log_path.read_text())
    hub.start()
    # at once, as an admin would: the startup check of ivan's server must be done (JupyterHub
    # answers a DELETE during a pending check with a 500, "ivan pending check")
    c.stop("ivan")
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and ivans():
        time.sleep(0.5)
    assert ivans() == []
    assert not [w for w in emu.worker_processes() if "ivan" in w.get("name", "")]
    log = hub.log_path.read_text()
    assert (any(f"({oid}) of user ivan" in log for oid in orphans)
            or "ivan's notebook server is gone; deleting its Spark cluster" in log), log[-3000:]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and processes_under(Path(hub.info["dir"]) / "clusters" / "ivan"):
        time.sleep(0.5)
    assert not processes_under(Path(hub.info["dir"]) / "clusters" / "ivan")
    assert "Uncaught exception" not in log[mark:], log[mark:][-3000:]


def test_chaos_spawn_stop_cycles_while_the_hub_keeps_answering(cloud):
    """Spawn/stop cycles of two users while 20% of all OpenStack API calls fail (503), with
    real Spark workers (few cycles: each starts JVMs; the 100-cycle chaos runs at the
    provisioner level in no-JVM mode, test_openstack_chaos.py). The hub answers every probe,
    and at the end no server and no worker process is left."""
    import threading
    import time
    import urllib.request

    hub, emu = cloud
    c = hub.client
    probes, failures = [], []
    done = threading.Event()

    def probe():
        while not done.is_set():
            t0 = time.perf_counter()
            try:
                with urllib.request.urlopen(hub.url + "/hub/api/", timeout=10) as r:
                    assert r.status == 200
                probes.append(time.perf_counter() - t0)
            except Exception as e:  # noqa: BLE001
                failures.append(repr(e))
            done.wait(0.2)

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    emu.add_fault(action="error", kind="*", status=503, rate=0.2)
    outcomes = []
    try:
        for _cycle in range(2):
            users = ("chaos1", "chaos2")
            for u in users:
                r = c.spawn(u, {"workers": 1, "size": "small"})
                assert r.status_code in (201, 202, 500), r.text
            for u in users:
                srv = c.server(u)
                if srv and srv.get("pending"):
                    events = c.progress(u)
                    outcomes.append("ready" if events[-1].get("ready") else "failed")
                    if not events[-1].get("ready"):
                        assert "Spark cluster could not start" in events[-1]["message"] or \
                            "OpenStack" in events[-1]["message"], events[-1]
                else:
                    outcomes.append("ready" if srv and srv.get("ready") else "failed")
            for u in users:
                c.stop(u)
    finally:
        emu.clear_faults()
        done.set()
        t.join(15)
    failed_calls = [x for x in emu.calls() if x.status == 503 and x.fault]
    assert failed_calls, "the faults did not fire"
    assert failures == [] and len(probes) > 20
    assert "ready" in outcomes, outcomes
    assert emu.servers() == [] and emu.worker_processes() == []
