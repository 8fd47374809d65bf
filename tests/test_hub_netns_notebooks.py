"""Notebooks on any spawner: a real JupyterHub whose notebook servers are not on the hub host as
far as they can tell (``testing.netns_spawner.NetnsSpawner``: each in a network namespace of its
own on the tenant network, the hub's cluster directory hidden under an empty tmpfs), with the
``openstack`` provisioner against the emulator in container mode and head placement ``cluster``.
Her kernelspec, token and CA reach the notebook server through its environment; her Connect
kernel there runs a job on her cluster over TLS; the classic kernel is not offered; stop leaves
no server, machine or namespace."""

from __future__ import annotations

import os
import time

import psutil
import pytest

from tests._machines import container_emulator, hub_on, machines_provisioner_config

pytestmark = [pytest.mark.hub, pytest.mark.spark, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    with container_emulator(tmp_path_factory, "hub-netns") as (emu, d):
        hub_dir = d / "hub"
        extra = [
            "c.JupyterHub.spawner_class = 'jupyter_spark_openstack.testing.netns_spawner.NetnsSpawner'",
            # the notebook servers reach the hub over the tenant network, as pods would
            f"c.JupyterHub.hub_ip = {emu.hub_address!r}",
            f"c.NetnsSpawner.tenant_holder_pid = {emu.network.holder_pid}",
            f"c.NetnsSpawner.tenant_cidr = {str(emu.network.network)!r}",
            f"c.NetnsSpawner.hidden_paths = [{str(hub_dir / 'clusters')!r}]",
        ]
        # hub_cidr (the tenant network) admits her notebook server's address to her head
        with hub_on(emu, hub_dir, machines_provisioner_config(emu, d), extra=extra,
                    cluster_start_timeout=300.0, hub_id="hubnetns") as hub:
            yield hub, emu, d


def _notebook_server(hub_dir) -> psutil.Process:
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if "jupyterhub-singleuser" in cmd and "nsenter" not in cmd and "unshare" not in cmd:
            return p
    raise AssertionError("no notebook server process")


def test_connect_kernel_in_a_notebook_server_elsewhere_runs_her_job(cloud):
    hub, emu, d = cloud
    c = hub.client
    r = c.spawn("alice", {"workers": 1, "size": "small"})
    assert r.status_code in (201, 202), r.text
    events = c.progress("alice", timeout=400)
    assert events[-1].get("ready"), events[-1]
    c.wait_ready("alice")
    nb = _notebook_server(d)
    # it is elsewhere: another network namespace, and the hub's cluster files are not there
    assert os.readlink(f"/proc/{nb.pid}/ns/net") != os.readlink("/proc/self/ns/net")
    hidden = f"/proc/{nb.pid}/root{d / 'hub' / 'clusters'}"
    assert os.listdir(hidden) == [], os.listdir(hidden)
    assert os.listdir(d / "hub" / "clusters")   # while the hub has them
    # her kernelspecs came through the environment: the Connect kernel only, TLS to her head
    specs = c.kernelspecs("alice")["kernelspecs"]
    ours = {k for k, v in specs.items() if "jupyter_spark_openstack" in (v["spec"].get("metadata") or {})}
    assert ours == {"pyspark"}, sorted(specs)
    env = specs["pyspark"]["spec"]["env"]
    head = [vm for vm in emu.model.list_servers() if vm.metadata.get("spark_openstack_role") == "head"][0]
    assert env["SPARK_OPENSTACK_CONNECT_URL"] == f"sc://{head.address}:15002"
    assert not env["SPARK_OPENSTACK_CONNECT_CA_FILE"].startswith(str(d / "hub" / "clusters"))
    kid = c.start_kernel("alice", "pyspark")
    try:
        res = c.execute("alice", kid, "print(spark.range(0, 100000, 1, 4).selectExpr('id % 5 AS k')"
                                      ".groupBy('k').count().count())", timeout=300)
        assert res["error"] is None and res["text"].strip().splitlines()[-1] == "5", res
        # the server dropped the token from its environment once written: kernels read the file
        res = c.execute("alice", kid, "import os; print(sorted(k for k in os.environ "
                                      "if k in ('SPARK_OPENSTACK_CONNECT_TOKEN', 'SPARK_OPENSTACK_CONNECT_CA')))")
        assert res["error"] is None and res["text"].strip().splitlines()[-1] == "[]", res
    finally:
        c.delete_kernel("alice", kid)
    holders = [p for p in psutil.process_iter(["cmdline"]) if "jsnb-holder" in (p.info["cmdline"] or [])]
    assert len(holders) == 1
    c.stop("alice")
    assert emu.model.list_servers() == []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(h.is_running() and h.status() != psutil.STATUS_ZOMBIE
                                              for h in holders):
        time.sleep(0.2)
    assert not any(h.is_running() and h.status() != psutil.STATUS_ZOMBIE for h in holders)
