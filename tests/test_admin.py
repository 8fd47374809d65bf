"""The admin handlers (serverext/admin.py): refused to non-admins and outside JupyterHub, and
the hub-model -> cluster-row mapping; the scopes the spawner asks the hub for. Against a real
hub: tests/test_hub_admin.py (whose token can do what) and tests/browser/test_admin_browser.py
(an admin stopping another user's cluster from the browser)."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from jupyter_spark_openstack.serverext.admin import LIST_SCOPES, STOP_SCOPES, cluster_rows
from jupyter_spark_openstack.spawner import SimpleSparkOpenStackSpawner
from tests._labserver import LabServer


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    server = LabServer(tmp_path_factory.mktemp("lab-admin")).start()
    try:
        yield server
    finally:
        assert server.stop() == []


def test_admin_api_is_403_outside_jupyterhub(lab):
    status, body = lab.get("spark-openstack/api/admin/clusters")
    assert status == 403, body
    assert "JupyterHub" in body["message"]
    status, body = lab.request("DELETE", "spark-openstack/api/admin/clusters/alice")
    assert status == 403, body


def test_admin_api_needs_authentication(lab):
    status, _ = lab.get("spark-openstack/api/admin/clusters", token=None)
    assert status == 403
    status, _ = lab.get("spark-openstack/api/admin/clusters", token="wrong")
    assert status == 403


def test_cluster_rows_from_hub_user_models():
    now = time.time()
    users = [
        {"name": "alice", "servers": {"": {
            "ready": True, "pending": None, "started": "2026-11-25T10:00:00Z",
            "state": {"cluster": {"workers": 2, "cores": 4, "memory_mb": 4096,
                                  "started_at": now - 125,
                                  "master": {"master_url": "spark://127.0.0.1:7077"}}}}}},
        {"name": "bob", "servers": {"big": {"ready": False, "pending": "spawn", "started": None,
                                            "state": {}}}},
        {"name": "carol", "servers": {}},
    ]
    rows = cluster_rows(users, now=now)
    assert [(r["user"], r["server_name"], r["state"]) for r in rows] == [
        ("alice", "", "running"), ("bob", "big", "pending")]
    a = rows[0]
    assert (a["workers"], a["cores"], a["memory_mb"]) == (2, 4, 4096)
    assert a["age_seconds"] == pytest.approx(125, abs=1)
    assert a["master_url"] == "spark://127.0.0.1:7077"
    assert rows[1]["workers"] is None and rows[1]["age_seconds"] is None


@pytest.mark.parametrize("admin", [True, False])
def test_the_server_token_keeps_the_hubs_default_and_only_admins_oauth_client_asks_more(admin):
    user = SimpleNamespace(name="ann", admin=admin, url="/user/ann/", escaped_name="ann")
    spawner = SimpleSparkOpenStackSpawner(user=user, name="")
    # empty: JupyterHub gives $JUPYTERHUB_API_TOKEN the scopes of its `server` role
    assert spawner.server_token_scopes == []
    if admin:
        assert sorted(spawner.oauth_client_allowed_scopes) == sorted({*LIST_SCOPES, *STOP_SCOPES})
        assert sorted(spawner.oauth_client_allowed_scopes) == [
            "admin:server_state", "list:users", "read:servers", "read:users", "servers"]
    else:
        assert spawner.oauth_client_allowed_scopes == []
