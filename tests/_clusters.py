"""Reading a hub-spawned cluster's master from a test (which runs as the hub's user)."""

from __future__ import annotations

import json
from pathlib import Path

from jupyter_spark_openstack.core.spark.master_client import MasterState, fetch_master_state


def cluster_state(entry: dict | None) -> dict | None:
    """Her cluster's state, from the one store the hub API's ``state["cluster"]`` entry (a
    reference) names: ``<run_dir>/cluster.json`` (tests run as the hub's user). None when the
    entry names none, or the cluster is stopped (its file removed)."""
    if not entry:
        return None
    path = Path(entry["run_dir"]) / "cluster.json"
    try:
        state = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    assert state["cluster_id"] == entry["cluster_id"], (state["cluster_id"], entry)
    return state


def ui_token(cluster: dict) -> str | None:
    """The cluster's UI guard token, from the hub's own copy (None without the guard)."""
    path = (cluster.get("ui_guard") or {}).get("token_file")
    return Path(path).read_text().strip() if path else None


def master_state(cluster: dict, timeout: float = 10.0) -> MasterState:
    """The master's /json/ of a cluster state (as the hub API shows it), with its token."""
    return fetch_master_state(cluster["master"]["webui_url"], timeout=timeout,
                              ui_token=ui_token(cluster))


def hub_cluster_state(client, user: str) -> dict | None:
    """Her cluster's state, from the entry the hub API shows for her default server."""
    r = client.api("GET", f"/users/{user}")
    r.raise_for_status()
    return cluster_state((r.json()["servers"].get("") or {}).get("state", {}).get("cluster"))
