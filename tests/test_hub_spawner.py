"""The spawner against a real JupyterHub process (Python configurable-http-proxy, sqlite,
DummyAuthenticator) with the local provisioner: real Spark masters and workers per user."""

from __future__ import annotations

import contextlib
import json
import os
import stat
import time
from pathlib import Path

import psutil
import pytest

from jupyter_spark_openstack.core.kernelspec import (
    ENV_MASTER_URL,
    ENV_SECRET_FILE,
    ENV_START_TIMEOUT,
    METADATA_KEY,
)
from jupyter_spark_openstack.demo.client import HubClient
from jupyter_spark_openstack.demo.hubprocess import (
    processes_under,
    start_hub,
    stop_hub_leaving_nothing,
)
from tests._clusters import cluster_state, hub_cluster_state, master_state

pytestmark = [pytest.mark.hub, pytest.mark.spark]


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    d = tmp_path_factory.mktemp("hub")
    h = start_hub(d, spawner_overrides={
        "max_workers_total": 4, "cluster_start_timeout": 240.0,
        "reconcile_interval": 2.0, "reconcile_grace": 8.0,
        # give idle executors back quickly, so the classic kernel gets cores soon after the
        # Connect kernel's job (the product default is 60 s)
        "connect_conf": {"spark.dynamicAllocation.executorIdleTimeout": "3s",
                         "spark.dynamicAllocation.shuffleTracking.timeout": "3s"}},
        # the hub polls running servers every 3 s (JupyterHub's default: 30 s)
        extra="c.Spawner.poll_interval = 3")
    h.client = HubClient(h.url, h.token)
    try:
        yield h
    finally:
        stop_hub_leaving_nothing(h)



def _user_procs(hub, user):
    return processes_under(Path(hub.info["dir"]) / "clusters" / user)


def test_login_over_http_and_the_options_form(hub):
    s = hub.client.login("alice", hub.info["password"])
    r = s.get(hub.url + "/hub/spawn/alice", timeout=30)
    assert r.status_code == 200
    assert 'name="workers"' in r.text and 'name="size"' in r.text
    assert "medium (2 cores, 2 GB)" in r.text


@pytest.mark.parametrize("options, field, allowed", [
    ({"workers": 99}, "workers", "from 1 to 4"),
    ({"workers": "two"}, "workers", "from 1 to 4"),
    ({"workers": 0}, "workers", "from 1 to 4"),
    ({"size": "huge"}, "size", "one of small, medium"),
    ({"workers": 2, "gpus": 1}, "gpus", "only the options workers, size"),
    ({"workers": 5, "size": "medium"}, "workers", "from 1 to 4"),
])
def test_invalid_options_are_refused_with_the_field_and_range(hub, options, field, allowed):
    r = hub.client.spawn("mallory", options)
    assert r.status_code == 400, r.text
    msg = r.json()["message"]
    assert msg.startswith("Invalid spawn options: " + field), msg
    assert allowed in msg
    assert not _user_procs(hub, "mallory")
    assert hub.client.server("mallory") is None


def test_spawn_progress_job_and_teardown(hub):
    c = hub.client
    r = c.spawn("alice", {"workers": 2, "size": "small"})
    assert r.status_code in (201, 202), r.text
    events = c.progress("alice")
    messages = [e["message"] for e in events]
    assert "Starting Spark master" in messages
    assert "Starting Spark Connect server" in messages
    assert any(m.startswith("Spark Connect server ready at sc://localhost:") for m in messages)
    assert any(m.startswith("Requested 2 workers") for m in messages)
    assert "Worker 1/2 registered" in messages and "Worker 2/2 registered" in messages
    assert "Starting notebook server" in messages
    assert events[-1].get("ready"), events[-1]
    c.wait_ready("alice")

    cluster = hub_cluster_state(hub.client, "alice")
    assert cluster["workers"] == 2 and len(cluster["records"]) == 2
    master = master_state(cluster)
    assert len(master.alive_workers) == 2

    specs = c.kernelspecs("alice")["kernelspecs"]
    assert specs["pyspark"]["spec"]["display_name"] == "PySpark (2 workers · 2 cores)"
    assert specs["pyspark"]["spec"]["metadata"][METADATA_KEY]["mode"] == "connect"
    assert specs["pyspark-classic"]["spec"]["display_name"] == "PySpark classic, RDD API (2 workers · 2 cores)"
    token = Path(cluster["connect"]["token_file"]).read_text().strip()
    assert token not in json.dumps(specs) and token not in hub.log_path.read_text()
    kernel_json = json.dumps(specs["pyspark"]["spec"])
    secret = Path(cluster["secret_file"]).read_text().strip()
    assert secret and secret not in kernel_json
    secret_copy = Path(specs["pyspark"]["spec"]["env"][ENV_SECRET_FILE])
    assert stat.S_IMODE(secret_copy.stat().st_mode) == 0o600
    assert secret not in hub.log_path.read_text()

    kid = c.start_kernel("alice", "pyspark")  # the default: a Spark Connect client
    try:
        res = c.execute("alice", kid, "print(spark.range(1000).count())")
        assert res["error"] is None, res
        assert "1000" in res["text"]
        apps = master_state(cluster).active_apps
        assert [a.name for a in apps] == ["spark-connect-alice"]
    finally:
        c.delete_kernel("alice", kid)
    kid = c.start_kernel("alice", "pyspark-classic")
    try:
        res = c.execute("alice", kid, "print(sc.parallelize(range(1000)).sum())")
        assert res["error"] is None, res
        assert "499500" in res["text"]
        apps = master_state(cluster).active_apps
        classic = [a for a in apps if a.name.startswith("pyspark-alice")]
        assert len(classic) == 1 and classic[0].cores >= 1
    finally:
        c.delete_kernel("alice", kid)

    c.stop("alice")
    assert not _user_procs(hub, "alice")
    assert not list((Path(hub.info["dir"]) / "provisioner").glob("*alice*/workers/*.json"))


def test_hub_wide_worker_limit(hub):
    c = hub.client
    r = c.spawn("bob", {"workers": 3})
    assert r.status_code in (201, 202), r.text
    try:
        c.wait_ready("bob")
        r = c.spawn("carol", {"workers": 2})
        assert r.status_code == 400
        assert "at most 1 now: the hub runs 3 of its 4 workers" in r.json()["message"]
    finally:
        c.stop("bob")
    assert not _user_procs(hub, "bob")


def _kernel_json(cluster, name):
    return json.loads((Path(cluster["session_dir"]) / "jupyter" / "kernels" / name / "kernel.json").read_text())


def test_two_users_get_separate_masters_and_cannot_use_each_other(hub):
    from jupyter_client import KernelManager
    from jupyter_client.kernelspec import KernelSpec

    from jupyter_spark_openstack.core.spark.connect import ConnectAuthError, probe

    c = hub.client
    for user in ("erin", "frank"):
        r = c.spawn(user, {"workers": 1})
        assert r.status_code in (201, 202), r.text
    try:
        c.wait_ready("erin")
        c.wait_ready("frank")
        erin, frank = hub_cluster_state(hub.client, "erin"), hub_cluster_state(hub.client, "frank")
        assert erin["master"]["master_url"] != frank["master"]["master_url"]
        for st in (erin, frank):
            assert len(master_state(st).alive_workers) == 1
        assert Path(erin["secret_file"]).read_text() != Path(frank["secret_file"]).read_text()

        # frank's Connect token is refused by erin's Connect server (and no token at all, too)
        frank_token = Path(frank["connect"]["token_file"]).read_text().strip()
        for token in (frank_token, None):
            with pytest.raises(ConnectAuthError):
                probe(erin["connect"]["url"], token, timeout=10)

        # frank's classic kernel pointed at erin's master: erin's master refuses it
        spec = _kernel_json(frank, "pyspark-classic")
        env = dict(spec["env"], **{ENV_MASTER_URL: erin["master"]["master_url"],
                                   ENV_START_TIMEOUT: "40"})
        km = KernelManager(kernel_name="pyspark-classic")
        km._kernel_spec = KernelSpec(argv=spec["argv"], env=env, display_name="x", language="python")
        km.start_kernel(env={**os.environ, **env})
        kc = km.client()
        kc.start_channels()
        try:
            kc.wait_for_ready(timeout=60)
            outputs = []
            reply = kc.execute_interactive("spark.range(3).count()", timeout=180,
                                           output_hook=lambda m: outputs.append(m))
            assert reply["content"]["status"] == "error"
            err = [m["content"] for m in outputs if m["msg_type"] == "error"][0]
            assert "could not start" in err["evalue"], err
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=True)
        apps = master_state(erin).active_apps
        assert not [a for a in apps if "frank" in a.name]
    finally:
        c.stop("erin")
        c.stop("frank")
    assert not _user_procs(hub, "erin") and not _user_procs(hub, "frank")


@contextlib.contextmanager
def _hub_killed(hub):
    """Kill the hub (SIGKILL: a crash). Whatever the block asserts, the hub runs again after
    it, so one failure here does not fail the module's later tests with 503s."""
    hub.stop(kill=True)
    try:
        yield
    finally:
        if hub.proc is None or hub.proc.poll() is not None:
            hub.start()


def _daemons(procs):
    """The cluster's long-lived processes: not her executors, which dynamic allocation gives
    back after executorIdleTimeout (3 s here), e.g. the one the Connect warm-up started."""
    out = []
    for p in procs:
        try:
            if "CoarseGrainedExecutorBackend" not in " ".join(p.cmdline()):
                out.append(p)
        except psutil.Error:
            pass
    return out


def test_hub_restart_mid_session_still_stops_everything(hub):
    c = hub.client
    r = c.spawn("grace", {"workers": 1})
    assert r.status_code in (201, 202), r.text
    c.wait_ready("grace")
    before = _daemons(_user_procs(hub, "grace")) + [psutil.Process(c.server("grace")["state"]["pid"])]
    assert len(before) >= 4, [p.cmdline()[-3:] for p in before]  # master, Connect, worker, notebook
    with _hub_killed(hub):  # the hub dies; the user's server and cluster live on
        dead = [p.pid for p in before if not p.is_running()]
        assert not dead, f"died with the hub: {dead}"
        hub.start()
    c.stop("grace")
    assert not _user_procs(hub, "grace")
    assert not list((Path(hub.info["dir"]) / "provisioner").glob("*grace*/workers/*.json"))


def test_hub_killed_mid_spawn_orphans_are_reconciled(hub):
    c = hub.client
    c.ensure_user("heidi")
    import threading

    t = threading.Thread(target=lambda: c.api("POST", "/users/heidi/server", json={"workers": 2},
                                              timeout=600), daemon=True)
    t.start()
    prov = Path(hub.info["dir"]) / "provisioner"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and len(list(prov.glob("*heidi*/workers/*.json"))) < 1:
        time.sleep(0.2)
    assert list(prov.glob("*heidi*/workers/*.json")), "no worker was requested"
    with _hub_killed(hub):  # killed mid-spawn: the database never saw this cluster as running
        t.join(timeout=30)
        assert _user_procs(hub, "heidi") or list(prov.glob("*heidi*/workers/*.json"))
        mark = len(hub.log_path.read_text())
        hub.start()
    # at once, as an admin would: the hub's startup check of heidi's server must be done
    # (JupyterHub answers a DELETE during a pending check with a 500, "heidi pending check")
    c.stop("heidi")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        left = _user_procs(hub, "heidi") + processes_under(prov / "jupyterhub-heidi")
        if not left and not list(prov.glob("*heidi*/workers/*.json")):
            break
        time.sleep(1)
    assert not _user_procs(hub, "heidi")
    assert not processes_under(prov / "jupyterhub-heidi")
    log = hub.log_path.read_text()
    # the restarted hub finds heidi's half-started server in its database and deletes the
    # cluster itself; what it could not know of, the reconciler deletes (tests/test_orphans.py)
    assert ("heidi's notebook server is gone; deleting its Spark cluster" in log
            or "reconciler: stopping orphan cluster jupyterhub-heidi" in log)
    assert "Uncaught exception" not in log[mark:], log[mark:][-3000:]


def test_her_master_dies_then_her_notebook_server_and_cluster_are_stopped(hub):
    """JupyterHub calls Spawner.stop() only while poll() says running, so when her master
    dies the spawner itself stops her notebook server and deletes her workers."""
    import signal

    c = hub.client
    r = c.spawn("judy", {"workers": 1})
    assert r.status_code in (201, 202), r.text
    c.wait_ready("judy")
    state = c.server("judy")["state"]
    notebook_pid, master_pid = state["pid"], cluster_state(state["cluster"])["master"]["process"]["pid"]
    assert psutil.pid_exists(notebook_pid) and psutil.pid_exists(master_pid)
    assert list((Path(hub.info["dir"]) / "provisioner").glob("*judy*/workers/*.json"))
    # her worker is slow to die (stopped: SIGTERM waits, SIGKILL comes after stop_daemon's
    # timeout), so her old cluster is still being deleted when she starts again
    worker = json.loads(next((Path(hub.info["dir"]) / "provisioner").glob("*judy*/workers/*.json")).read_text())["data"]
    os.killpg(int(worker["pid"]), signal.SIGSTOP)
    os.kill(master_pid, signal.SIGKILL)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and c.server("judy"):
        time.sleep(0.2)
    assert c.server("judy") is None
    # she starts again as soon as the hub says her server stopped, while her old cluster may
    # still be being deleted: JupyterHub makes a new spawner object for this start, and it must
    # wait for that deletion (which acts on the same run directory), not race it
    r = c.spawn("judy", {"workers": 1})
    assert r.status_code in (201, 202), r.text
    c.wait_ready("judy")
    assert not psutil.pid_exists(notebook_pid), "her notebook server outlived her master"
    log = hub.log_path.read_text()
    assert "judy's Spark master is gone; stopping the notebook server" in log
    assert "[judy] Waiting for the previous Spark cluster to be deleted" in log
    assert "Uncaught exception" not in log
    assert not psutil.pid_exists(int(worker["pid"]))
    state = c.server("judy")["state"]
    assert psutil.pid_exists(cluster_state(state["cluster"])["master"]["process"]["pid"])
    new_workers = {p.name for p in (Path(hub.info["dir"]) / "provisioner").glob("*judy*/workers/*.json")}
    assert len(new_workers) == 1, new_workers
    assert c.server("judy")["ready"]
    c.stop("judy")
    assert not _user_procs(hub, "judy")
