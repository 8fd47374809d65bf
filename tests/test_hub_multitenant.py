"""Attacks between users on a real hub running as root: ``SparkOpenStackSpawner``
(LocalProcessSpawner), the ``local`` provisioner, real system accounts made for the test.

Each test is an attack that worked before the isolation work: daemons ran as root with the
hub's environment, the run directory was chowned to the user recursively, colliding names
shared a run directory, and Spark's UIs let anyone kill an application."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from pathlib import Path

import psutil
import pytest

from jupyter_spark_openstack.core import naming
from jupyter_spark_openstack.core.spark.master_client import fetch_master_state
from jupyter_spark_openstack.demo.client import HubClient
from jupyter_spark_openstack.demo.hubprocess import (
    start_hub,
    stop_hub_leaving_nothing,
)
from tests._clusters import cluster_state, ui_token
from tests._system import (  # noqa: F401 - fixtures
    _module_system_users_fixture,
    _sys_venv_fixture,
    make_root_hub_dir,
    run_as,
)

pytestmark = [pytest.mark.hub, pytest.mark.spark, pytest.mark.timeout(1800)]

CANARY = "jso-canary-" + secrets.token_hex(6)
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.fixture(scope="module")
def users(module_system_users):
    a, b = module_system_users(2)
    secret = b.home / "secret.txt"
    run_as(b, ["sh", "-c", f"umask 077; echo b-private > {secret}"], check=True)
    return {"a": a, "b": b}


@pytest.fixture(scope="module")
def hub(sys_venv, users):
    with make_root_hub_dir() as d:
        saved = {k: os.environ.get(k) for k in ("OS_PASSWORD", "JSO_HUB_CANARY")}
        # what the hub's environment holds that no user may see
        os.environ.update(OS_PASSWORD=CANARY, JSO_HUB_CANARY=CANARY)
        try:
            h = start_hub(d, system_users=sys_venv.hub_config(), spawner_overrides={
                "default_workers": 1, "cluster_start_timeout": 400.0,
                "max_workers_total": 8, "reconcile_interval": 0, "max_servers_per_user": 2,
                "connect_conf": {"spark.dynamicAllocation.executorIdleTimeout": "5s",
                                 "spark.dynamicAllocation.shuffleTracking.timeout": "5s"}},
                extra=f"c.ConfigurableHTTPProxy.auth_token = {CANARY!r}")
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        h.client = HubClient(h.url, h.token)
        try:
            yield h
        finally:
            try:
                stop_hub_leaving_nothing(h)
            finally:  # the hub's log outlives its directory, for a failure's post-mortem
                ARTIFACTS.mkdir(exist_ok=True)
                shutil.copyfile(h.log_path, ARTIFACTS / "hub-multitenant-jupyterhub.log")


def _spawn_ready(hub, name, options=None, server_name=""):
    r = hub.client.spawn(name, options or {"workers": 1, "size": "small"}, server_name)
    assert r.status_code in (201, 202), f"{r.text}\n{hub.log_tail(80)}"
    try:
        return hub.client.wait_ready(name, server_name, timeout=900)
    except Exception:
        print(hub.log_tail(120))
        raise


def _cluster(hub, name, server_name=""):
    srv = hub.client.server(name, server_name) or {}
    return cluster_state((srv.get("state") or {}).get("cluster"))


def _master(cluster: dict):
    return fetch_master_state(cluster["master"]["webui_url"], timeout=10,
                              ui_token=ui_token(cluster))


def _daemons(cluster: dict) -> list[psutil.Process]:
    """The user's JVMs: processes whose command line names her session directory."""
    session = cluster["session_dir"]
    return [p for p in psutil.process_iter(["cmdline"])
            if "java" in " ".join(p.info["cmdline"] or [])[:200] and
            any(session in a for a in (p.info["cmdline"] or []))]


@pytest.fixture(scope="module")
def running(hub, users):
    """Users a and b, each with a running server and cluster (1 worker, Connect)."""
    for u in users.values():
        _spawn_ready(hub, u.name)
    return {k: _cluster(hub, u.name) for k, u in users.items()}


def test_each_users_jvms_run_as_her_with_no_extra_groups(users, running):
    for key, u in users.items():
        procs = _daemons(running[key])
        roles = sorted({("Master" if any(a.endswith("deploy.master.Master") for a in p.cmdline())
                         else "Worker" if any(a.endswith("deploy.worker.Worker") for a in p.cmdline())
                         else "Connect") for p in procs})
        assert roles == ["Connect", "Master", "Worker"], [p.cmdline()[:6] for p in procs]
        for p in procs:
            assert p.uids().real == u.uid and p.uids().effective == u.uid, p.cmdline()[:4]
            assert p.gids().real == u.gid
            groups = next(line for line in Path(f"/proc/{p.pid}/status").read_text().splitlines()
                          if line.startswith("Groups:"))
            assert groups.split(":", 1)[1].split() in ([], [str(u.gid)]), groups
            env = Path(f"/proc/{p.pid}/environ").read_bytes().decode(errors="replace")
            assert CANARY not in env, f"a hub secret reached {p.cmdline()[:4]}"


PROBE = """
import json, os
from pyspark.sql.functions import udf

def probe(_):
    import json, os
    out = {"uid": os.getuid(), "groups": os.getgroups()}
    for path in ("/etc/shadow", %(secret)r):
        try:
            open(path).read()
            out[path] = "read"
        except PermissionError:
            out[path] = "PermissionError"
        except Exception as e:
            out[path] = type(e).__name__
    out["hub_vars"] = sorted(k for k, v in os.environ.items()
                             if k.startswith(("OS_", "CONFIGPROXY", "JUPYTERHUB", "JSO_"))
                             or %(canary)r in v)
    return json.dumps(out)

print("PROBE=" + spark.range(1).select(udf(probe, "string")("id")).collect()[0][0])
"""


def test_her_spark_task_cannot_read_others_files_nor_the_hubs_environment(hub, users, running):
    a, b = users["a"], users["b"]
    kid = hub.client.start_kernel(a.name, "pyspark")
    try:
        res = hub.client.execute(a.name, kid, PROBE % {"secret": str(b.home / "secret.txt"),
                                                     "canary": CANARY}, timeout=600)
    finally:
        hub.client.delete_kernel(a.name, kid)
    assert res["error"] is None, res
    out = json.loads(res["text"].split("PROBE=", 1)[1].strip().splitlines()[0])
    assert out["uid"] == a.uid                       # her executor runs as her
    assert out["/etc/shadow"] == "PermissionError"
    assert out[str(b.home / "secret.txt")] == "PermissionError"
    assert out["hub_vars"] == [], out
    assert out["groups"] in ([], [a.gid]), out


def test_another_user_cannot_kill_her_application_through_any_ui(hub, users, running, sys_venv):
    b = users["b"]
    ms = _master(running["a"])
    assert ms.reachable
    apps = [x for x in ms.active_apps]
    assert apps, "a's Connect server is not registered with her master"
    app = apps[0]
    worker = ms.alive_workers[0]
    # every kill or decommission door of Spark's UIs, tried by b (a local account) with curl
    # from her own session: the master UI's app kill and worker decommission
    urls = [f"{running['a']['master']['webui_url']}/app/kill/?id={app.id}&terminate=true",
            f"{running['a']['master']['webui_url']}/workers/kill/?host={worker.host}"]
    code = ("import sys, urllib.request, urllib.error\n"
            "for u in sys.argv[1:]:\n"
            "    try:\n"
            "        r = urllib.request.urlopen(urllib.request.Request(u, data=b'', method='POST'), timeout=10)\n"
            "        print(u, r.status)\n"
            "    except urllib.error.HTTPError as e:\n"
            "        print(u, e.code)\n"
            "    except Exception as e:\n"
            "        print(u, type(e).__name__)\n")
    r = run_as(b, [sys_venv.python, "-c", code, *urls], timeout=60)
    assert r.returncode == 0, r.stderr
    # and even past the UI guard (with her token, as her own proxy would send it) Spark
    # itself refuses: kill links are off, decommissioning from the UI is denied
    import urllib.error
    import urllib.request

    for u in urls:
        req = urllib.request.Request(u, data=b"", method="POST",
                                     headers={"X-Spark-UI-Token": ui_token(running["a"])})
        try:
            urllib.request.urlopen(req, timeout=10).close()
        except urllib.error.HTTPError:
            pass
    time.sleep(3)
    after = _master(running["a"])
    assert app.id in [x.id for x in after.active_apps], (r.stdout, "her app was killed")
    assert worker.id in [w.id for w in after.alive_workers], (r.stdout, "her worker was decommissioned")


GET = ("import sys, urllib.request, urllib.error\n"
       "for u in sys.argv[1:]:\n"
       "    try:\n"
       "        r = urllib.request.urlopen(u, timeout=10)\n"
       "        print(r.status, u)\n"
       "    except urllib.error.HTTPError as e:\n"
       "        print(e.code, u)\n"
       "    except Exception as e:\n"
       "        print(type(e).__name__, u)\n")


def test_her_spark_uis_answer_her_proxy_and_the_hub_only(hub, users, running, sys_venv):
    """Every account can reach loopback ports: the UI guard makes her master, worker and
    application UIs (executor logs included) answer 403 to anyone without her token."""
    a, b = users["a"], users["b"]
    c = running["a"]
    ms = _master(c)
    worker_ui = ms.alive_workers[0].webui
    app = ms.active_apps[0]
    urls = [c["master"]["webui_url"] + "/json/", c["master"]["webui_url"] + f"/app/?appId={app.id}",
            worker_ui + "/", worker_ui + f"/logPage/?appId={app.id}&executorId=0&logType=stderr"]
    r = run_as(b, [sys_venv.python, "-c", GET, *urls], timeout=60)
    codes = [line.split()[0] for line in r.stdout.splitlines()]
    assert codes == ["403"] * len(urls), r.stdout + r.stderr
    # her notebook server's panel reads her master through the guard (with her token)
    info = hub.client.s.get(hub.client.user_url(a.name) + "spark-openstack/api/cluster",
                            timeout=60).json()
    assert info["master"]["reachable"] and info["totals"]["workers_alive"] == 1, info
    # through her own notebook server's proxy (the serverext sends her token): the pages
    page = hub.client.s.get(hub.client.user_url(a.name) + "spark-openstack/ui/master/",
                            timeout=60)
    assert page.status_code == 200 and "Spark Master" in page.text, page.text[:300]
    # and with the token (what the hub and her proxy send) the worker page answers
    import urllib.request

    req = urllib.request.Request(worker_ui + "/", headers={"X-Spark-UI-Token": ui_token(c)})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200 and b"Spark Worker" in resp.read()


def test_her_state_is_out_of_her_reach_and_a_planted_link_chowns_nothing(hub, users, running):
    a = users["a"]
    c = running["a"]
    run_dir, session = Path(c["run_dir"]), Path(c["session_dir"])
    victim = Path("/var/tmp") / f"jso-victim-{secrets.token_hex(4)}"
    victim.write_text("root's file\n")
    try:
        # she cannot write the hub's state, the reconciler's input, nor plant in her session
        for target in (run_dir / "cluster.json", run_dir / "planted", session / "planted",
                       session / "jupyter" / "kernels" / "pyspark" / "kernel.json"):
            r = run_as(a, ["sh", "-c", f"echo x >> {target}"])
            assert r.returncode != 0 and "Permission denied" in r.stderr, (target, r)
        # she owns her work dir: she plants links to root's file there
        work = session / "work"
        for name in ("evil", "master.properties", "connect.properties"):
            r = run_as(a, ["ln", "-s", str(victim), str(work / name)])
            assert r.returncode == 0, r.stderr
        # a restart: stop and start her server; nothing may change the victim's owner
        hub.client.stop(a.name)
        _spawn_ready(hub, a.name)
        st = victim.stat()
        assert (st.st_uid, st.st_gid) == (0, 0)
        assert victim.read_text() == "root's file\n"
        # the new start is a new, fresh session directory; the old one is gone
        new = _cluster(hub, a.name)
        assert new["session_dir"] != str(session) and not session.exists()
        running["a"] = new
    finally:
        victim.unlink(missing_ok=True)


def test_colliding_names_get_separate_working_clusters(hub, module_system_users):
    users = module_system_users(suffixes=["a.b", "a_b", "a-b"])
    try:
        for u in users:
            r = hub.client.spawn(u.name, {"workers": 1, "size": "small"})
            assert r.status_code in (201, 202), f"{r.text}\n{hub.log_tail(80)}"
        for u in users:
            hub.client.wait_ready(u.name, timeout=900)
        clusters = {u.name: _cluster(hub, u.name) for u in users}
        assert len({c["run_dir"] for c in clusters.values()}) == 3
        assert len({c["cluster_id"] for c in clusters.values()}) == 3
        assert len({c["master"]["master_url"] for c in clusters.values()}) == 3
        for u in users:
            c = clusters[u.name]
            assert Path(c["run_dir"]).name == naming.user_key(u.name)
            ms = _master(c)
            assert ms.reachable and len(ms.alive_workers) == 1, (u.name, ms)
            assert all(p.uids().real == u.uid for p in _daemons(c))
        # stopping one leaves the others running
        hub.client.stop(users[0].name)
        for u in users[1:]:
            ms = _master(clusters[u.name])
            assert ms.reachable and len(ms.alive_workers) == 1, (u.name, "lost its cluster")
    finally:
        for u in users:
            try:
                hub.client.stop(u.name)
            except Exception as e:  # noqa: BLE001 - the first failure is the one to see
                print(f"stopping {u.name}: {e}")


def test_her_clusters_are_limited_per_user_over_her_servers(hub, users, running):
    a = users["a"]
    # she already runs 1 worker on her default server; the per-user limit is 4 workers
    r = hub.client.spawn(a.name, {"workers": 4, "size": "small"}, server_name="second")
    assert r.status_code == 400, r.text
    msg = r.json()["message"]
    assert msg.startswith("Invalid spawn options: workers"), msg
    assert "over her 2 servers" in msg
    assert not _cluster(hub, a.name, "second")
    # within the sum she may have a second server, but not a third cluster
    _spawn_ready(hub, a.name, {"workers": 1, "size": "small"}, server_name="second")
    try:
        r = hub.client.spawn(a.name, {"workers": 1, "size": "small"}, server_name="third")
        assert r.status_code == 400, r.text
        msg = r.json()["message"]
        assert msg.startswith("Invalid spawn options: max_servers_per_user: 3 is not allowed"), msg
        assert "at most 2 Spark cluster(s) per user" in msg and "'second'" in msg, msg
        assert not _cluster(hub, a.name, "third")
    finally:
        hub.client.stop(a.name, "second")
