"""The cluster state: typed, versioned, one store (``<run_dir>/cluster.json``).

The hub's database keeps a reference and a summary, never a second copy; a spawner of a
restarted hub loads the state from the file the reference names; an entry written by an older
hub (a whole copy of the state) is still read, and becomes the file."""

from __future__ import annotations

import dataclasses
import json
import os
from types import SimpleNamespace

import pytest
from jupyterhub.spawner import Spawner

from jupyter_spark_openstack.core.cluster import ClusterConfig, SparkCluster
from jupyter_spark_openstack.core.options import OptionsSchema
from jupyter_spark_openstack.core.provisioners.base import WorkerRecord
from jupyter_spark_openstack.core.provisioners.local import LocalProvisioner
from jupyter_spark_openstack.core.state import ClusterState, MasterState, StateVersionError
from jupyter_spark_openstack.spawner.mixin import SparkClusterMixin


class StateSpawner(SparkClusterMixin, Spawner):
    pass


def _spawner(base, hub_id="state-test", user="alice"):
    return StateSpawner(hub_id=hub_id, cluster_run_dir=str(base), provisioner="local",
                        provisioner_config={"run_dir": str(base.parent / "prov")},
                        user=SimpleNamespace(name=user, admin=False))


def _running_cluster(base, hub_id="state-test", owner="alice"):
    """A cluster as a start leaves it: its run dir, a master and a worker recorded."""
    config = ClusterConfig(hub_id=hub_id, base_dir=str(base), connect_server=False)
    prov = LocalProvisioner({"run_dir": str(base.parent / "prov")})
    c = SparkCluster.new(config, prov, owner=owner, run_dir=base / owner,
                         options=OptionsSchema().parse({"workers": 1}))
    c._make_dirs()
    rec = WorkerRecord(id="w-1", name=f"{c.cluster_id}-w1", provisioner="local", owner=owner,
                       cluster_id=c.cluster_id, hub_id=hub_id, data={"role": "worker"})
    c._save(master=MasterState("per-user", master_url="spark://127.0.0.1:7077",
                               webui_url="http://127.0.0.1:8080",
                               run_dir=str(base / owner / "master"),
                               process={"pid": 1, "log": str(base / owner / "master" / "m.log")}),
            records=[rec], phase="running", started_at=1000.0)
    return c


def test_the_state_is_typed_frozen_and_its_json_form_round_trips(tmp_path):
    c = _running_cluster(tmp_path / "clusters")
    s = c.state
    assert isinstance(s.master, MasterState) and isinstance(s.records[0], WorkerRecord)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.phase = "stopped"
    on_disk = json.loads((c.run_dir / "cluster.json").read_text())
    assert on_disk == s.to_dict() and on_disk["version"] == 3
    assert ClusterState.from_dict(on_disk) == s
    # a field that is missing or misspelt is refused, not guessed
    with pytest.raises(StateVersionError, match="lacks or misspells a field"):
        ClusterState.from_dict({k: v for k, v in on_disk.items() if k != "size"})
    # a misspelt field, required or optional, is named with the allowed ones (not dropped)
    for broken, cls, key in (({**on_disk, "master": {"mod": "per-user"}}, "MasterState", "mod"),
                             ({**on_disk, "sesion_dir": "/x"}, "ClusterState", "sesion_dir"),
                             ({**on_disk, "size": {**on_disk["size"], "core": 2}}, "WorkerSize", "core")):
        with pytest.raises(StateVersionError, match=rf"{cls} has the unknown field\(s\) {key} .*allowed: "):
            ClusterState.from_dict(broken)


def test_the_hub_database_keeps_a_reference_and_a_summary_not_a_copy(tmp_path):
    base = tmp_path / "clusters"
    c = _running_cluster(base)
    sp = _spawner(base)
    sp._cluster = c
    entry = sp.get_state()["cluster"]
    assert entry == {"cluster_id": c.cluster_id, "run_dir": str(base / "alice"), "version": 3,
                     "summary": {"workers": 1, "cores": c.state.cores,
                                 "memory_mb": c.state.memory_mb, "started_at": 1000.0,
                                 "phase": "running", "placement": "hub",
                                 "master_url": "spark://127.0.0.1:7077"}}
    # no path, record or process of the cluster is in the database
    assert "records" not in json.dumps(entry) and "pid" not in json.dumps(entry)

    # a restarted hub: the spawner loads the one state from the file the entry names
    later = _spawner(base)
    later.load_state({"cluster": entry})
    assert later._cluster.state == c.state
    # ... and what changed in the file since the database was written is there too
    c._save(records=[*c.state.records, dataclasses.replace(c.state.records[0], id="w-2")])
    again = _spawner(base)
    again.load_state({"cluster": entry})
    assert [r.id for r in again._cluster.records] == ["w-1", "w-2"]


def test_a_stopped_cluster_or_a_forged_file_loads_nothing(tmp_path, caplog):
    base = tmp_path / "clusters"
    c = _running_cluster(base)
    entry = {"cluster": {"cluster_id": c.cluster_id, "run_dir": c.state.run_dir}}
    # a file naming a path outside its run directory is refused, and nothing is loaded
    forged = {**c.state.to_dict(), "secret_file": "/etc/shadow"}
    (c.run_dir / "cluster.json").write_text(json.dumps(forged))
    sp = _spawner(base)
    sp.load_state(entry)
    assert sp._cluster is None
    assert "ignoring the saved Spark cluster" in caplog.text and "/etc/shadow" in caplog.text
    # a file of another user's uid is not trusted
    (c.run_dir / "cluster.json").write_text(json.dumps(c.state.to_dict()))
    os.chown(c.run_dir / "cluster.json", 65534, 65534)
    sp = _spawner(base)
    sp.load_state(entry)
    assert sp._cluster is None and "not trusted" in caplog.text
    # stopped: its file is gone, and a reference alone loads nothing
    (c.run_dir / "cluster.json").unlink()
    sp = _spawner(base)
    sp.load_state(entry)
    assert sp._cluster is None


def test_an_older_hubs_database_copy_is_read_and_becomes_the_file(tmp_path):
    """Version 2 kept a whole copy of the state in the database. With its cluster.json
    gone, that copy is all there is: it is read (migrated, paths checked) and written to the
    run directory, which is the one store from then on."""
    base = tmp_path / "clusters"
    c = _running_cluster(base)
    v2 = {**c.state.to_dict(), "version": 2}
    v2["connect"] = {"pid": 7, "url": "sc://localhost:15002",
                     "token_file": str(c.run_dir / "connect.token"),
                     "log": str(c.run_dir / "connect" / "logs" / "connect.log")}
    (c.run_dir / "cluster.json").unlink()
    sp = _spawner(base)
    sp.load_state({"cluster": v2})
    assert sp._cluster is not None and sp._cluster.state.version == 3
    assert sp._cluster.state.connect.url == "sc://localhost:15002"
    assert sp._cluster.state.connect.process["pid"] == 7
    on_disk = json.loads((c.run_dir / "cluster.json").read_text())
    assert on_disk["version"] == 3 and on_disk["connect"]["process"]["pid"] == 7
    assert sp.get_state()["cluster"]["version"] == 3 and "records" not in sp.get_state()["cluster"]
    # an older copy naming paths elsewhere is refused like any state
    (c.run_dir / "cluster.json").unlink()
    bad = _spawner(base)
    bad.load_state({"cluster": {**v2, "secret_file": "/etc/shadow"}})
    assert bad._cluster is None and not (c.run_dir / "cluster.json").exists()
