"""The admin handlers (serverext/admin.py): refused to non-admins and outside JupyterHub, and
the hub-model -> cluster-row mapping. The full path (a real hub, an admin stopping another
user's cluster from the browser) is in tests/browser/test_admin_browser.py."""

from __future__ import annotations

import time

import pytest

from jupyter_spark_openstack.serverext.admin import cluster_rows
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
