"""stop_orphan_clusters: clusters on this host that no running or pending server owns."""

import asyncio
import json
import os
import subprocess
import time

import psutil

from jupyter_spark_openstack.core.cluster import ClusterConfig, stop_orphan_clusters
from jupyter_spark_openstack.core.provisioners.local import LocalProvisioner


def _fake_cluster(base, prov_dir, cluster_id, owner, hub_id="hub1", age=0.0):
    """A cluster.json as a hub killed mid-spawn leaves it, whose 'worker' is a real process
    (a sleep in its own session, recorded like a Spark worker by the local provisioner)."""
    proc = subprocess.Popen(["sleep", "300"], start_new_session=True)
    rec = {"id": f"{cluster_id}/w1", "name": f"{cluster_id}-w1", "provisioner": "local",
           "owner": owner, "cluster_id": cluster_id, "hub_id": hub_id, "created_at": time.time(),
           "data": {"role": "worker", "pid": proc.pid,
                    "create_time": psutil.Process(proc.pid).create_time(), "log": ""}}
    wdir = prov_dir / cluster_id / "workers"
    wdir.mkdir(parents=True)
    (wdir / f"{rec['name']}.json").write_text(json.dumps(rec))
    run_dir = base / owner
    run_dir.mkdir(parents=True)
    state = {"cluster_id": cluster_id, "key": owner, "owner": owner, "server_name": "", "hub_id": hub_id,
             "provisioner": "local", "run_dir": str(run_dir), "records": [rec], "master": None,
             "phase": "workers", "size": {"name": "small", "cores": 1, "memory": "1g"},
             "workers": 1, "cores": 1, "memory_mb": 1024}
    path = run_dir / "cluster.json"
    path.write_text(json.dumps(state))
    os.utime(path, (time.time() - age, time.time() - age))
    return proc


def test_orphans_are_stopped_after_grace_known_and_other_hubs_kept(tmp_path):
    base, prov_dir = tmp_path / "clusters", tmp_path / "prov"
    prov = LocalProvisioner({"run_dir": str(prov_dir)})
    old = _fake_cluster(base, prov_dir, "hub1-olga", "olga", age=600)
    young = _fake_cluster(base, prov_dir, "hub1-yves", "yves", age=0)
    known = _fake_cluster(base, prov_dir, "hub1-kim", "kim", age=600)
    other = _fake_cluster(base, prov_dir, "hub2-otto", "otto", hub_id="hub2", age=600)
    try:
        stopped = asyncio.run(stop_orphan_clusters(base, ClusterConfig(hub_id="hub1"), prov,
                                                   {"hub1-kim"}, grace=300))
        assert stopped == ["hub1-olga"]
        old.wait(timeout=10)
        assert old.returncode is not None
        for p in (young, known, other):
            assert p.poll() is None
        assert not (base / "olga" / "cluster.json").exists()
        assert not list((prov_dir / "hub1-olga").glob("workers/*.json"))
    finally:
        for p in (old, young, known, other):
            p.kill()
            p.wait()
