"""The reconciler against the emulator through the openstack provisioner: orphans (servers of a
hub that lost its records) are deleted after the grace period, owned ones are kept."""

from __future__ import annotations

import asyncio
import logging

import pytest

from jupyter_spark_openstack.core.provisioners.base import WorkerSpec
from jupyter_spark_openstack.core.provisioners.openstack import OpenStackProvisioner
from jupyter_spark_openstack.core.reconcile import Reconciler
from jupyter_spark_openstack.testing.emulator import Emulator
from jupyter_spark_openstack.testing.emulator.helpers import provisioner_config


@pytest.fixture
def emu(tmp_path):
    e = Emulator(boot_delay=0.2, delete_delay=0.1, spark_mode="none", run_dir=tmp_path / "emu")
    e.start()
    try:
        yield e
    finally:
        e.stop()


def spec(owner, i=1, hub="hub1"):
    cid = f"{hub}-{owner}"
    return WorkerSpec(hub_id=hub, owner=owner, cluster_id=cid, name=f"{cid}-w{i}", index=i,
                      cores=1, memory="1g", master_url="spark://127.0.0.1:7077", size="small")


async def _provisioner(emu, tmp_path):
    return OpenStackProvisioner(provisioner_config(emu, tmp_path / "clouds.yaml"))


async def test_orphans_of_a_crashed_hub_are_deleted_after_grace(emu, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="jupyter_spark_openstack.reconcile")
    # "hub 1" creates workers for alice and bob, then dies: its records are lost
    p1 = await _provisioner(emu, tmp_path)
    await asyncio.gather(*(p1.request_worker(s) for s in
                           [spec("alice", 1), spec("alice", 2), spec("bob", 1)]))
    other_hub = await p1.request_worker(spec("carol", hub="hub2"))
    await p1.close()
    ids = {s["name"]: s["id"] for s in emu.servers()}

    # the restarted hub knows only bob's server is running
    p2 = await _provisioner(emu, tmp_path)
    try:
        async def known():
            return {"hub1-bob"}

        rec = Reconciler(p2, "hub1", known, grace=2.5)  # Nova times are whole seconds
        r1 = await rec.run_once()
        assert r1.seen == 3 and r1.deleted == [] and r1.kept == [ids["hub1-bob-w1"]]
        assert sorted(r1.waiting) == sorted([ids["hub1-alice-w1"], ids["hub1-alice-w2"]])
        assert len(emu.servers()) == 4
        await asyncio.sleep(2.6)
        r2 = await rec.run_once()
        assert sorted(r2.deleted) == sorted([ids["hub1-alice-w1"], ids["hub1-alice-w2"]])
        assert sorted(s["name"] for s in emu.servers()) == ["hub1-bob-w1", "hub2-carol-w1"]
        assert other_hub.id in {s["id"] for s in emu.servers()}  # another hub's: untouched
        # the per-cluster security group of a hub that died before its first server
        # (created as the provisioner names and describes them) goes in the same rounds
        from jupyter_spark_openstack.core.provisioners.openstack import (
            SG_DESCRIPTION_PREFIX,
            security_group_name,
        )

        conn = p2._connection()
        name = security_group_name("hub1", "hub1-dave")
        await asyncio.to_thread(conn.network.create_security_group, name=name,
                                description=SG_DESCRIPTION_PREFIX + "cluster hub1-dave")
        groups = lambda: sorted(g.name for g in conn.network.security_groups()  # noqa: E731
                                if g.name.startswith("spark-openstack-hub1."))
        assert name in await asyncio.to_thread(groups)
        await asyncio.sleep(2.6)
        await rec.run_once()
        assert await asyncio.to_thread(groups) == [security_group_name("hub1", "hub1-bob")]
        # every action logged with the user and the server id
        text = caplog.text
        for name in ("hub1-alice-w1", "hub1-alice-w2"):
            assert f"deleting orphan server {name} ({ids[name]}) of user alice" in text
            assert f"deleted orphan server {name} ({ids[name]}) of user alice" in text
    finally:
        await p2.close()


async def test_old_orphans_go_at_once_young_ones_wait(emu, tmp_path):
    p = await _provisioner(emu, tmp_path)
    try:
        await p.request_worker(spec("alice"))

        async def known():
            return set()

        # Nova's creation time says the server is brand new: a 1 h grace keeps it
        r = await Reconciler(p, "hub1", known, grace=3600).run_once()
        assert r.deleted == [] and len(r.waiting) == 1
        # with no grace it goes at the first round
        r = await Reconciler(p, "hub1", known, grace=0).run_once()
        assert len(r.deleted) == 1 and emu.servers() == []
    finally:
        await p.close()


async def test_nothing_is_deleted_when_the_hub_state_is_unreadable(emu, tmp_path):
    p = await _provisioner(emu, tmp_path)
    try:
        await p.request_worker(spec("alice"))

        async def broken():
            raise RuntimeError("database is locked")

        r = await Reconciler(p, "hub1", broken, grace=0).run_once()
        assert r.deleted == [] and "database is locked" in r.skipped
        assert len(emu.servers()) == 1
    finally:
        await p.close()


async def test_run_forever_backs_off_on_api_errors_then_cleans_up(emu, tmp_path, caplog):
    caplog.set_level(logging.ERROR, logger="jupyter_spark_openstack.reconcile")
    p = OpenStackProvisioner(provisioner_config(emu, tmp_path / "clouds.yaml", retries=0))
    try:
        await p.request_worker(spec("alice"))

        async def known():
            return set()

        emu.add_fault(action="error", kind="servers.list", status=503, count=2)
        rec = Reconciler(p, "hub1", known, grace=0)
        task = asyncio.create_task(rec.run_forever(interval=10.0))
        for _ in range(100):
            if not emu.servers():
                break
            await asyncio.sleep(0.1)
        rec.stop()
        await asyncio.wait_for(task, 5)
        assert emu.servers() == []
        assert caplog.text.count("reconciler: round failed") == 2
        assert "HTTP 503" in caplog.text
        assert [c.status for c in emu.calls(kind="servers.list")][:2] == [503, 503]
    finally:
        await p.close()


CRASHING_HUB = """
import asyncio, sys, time
from jupyter_spark_openstack.core.provisioners.base import WorkerSpec
from jupyter_spark_openstack.core.provisioners.openstack import OpenStackProvisioner
from jupyter_spark_openstack.testing.emulator.helpers import provisioner_config

async def main(cfg):
    p = OpenStackProvisioner(cfg)
    specs = [WorkerSpec(hub_id="hub1", owner="dave", cluster_id="hub1-dave", name=f"hub1-dave-w{i}",
                        index=i, cores=1, memory="1g", master_url="spark://127.0.0.1:7077",
                        size="small") for i in (1, 2, 3)]
    await asyncio.gather(*(p.request_worker(s) for s in specs))
    print("requested", flush=True)
    await asyncio.sleep(3600)   # "waiting for registration" when the hub is killed

import json
asyncio.run(main(json.loads(sys.argv[1])))
"""


async def test_hub_process_killed_mid_spawn_then_reconciled(emu, tmp_path, caplog):
    """A real process (the "hub") requests workers and is SIGKILLed mid-spawn: its records die
    with it. A fresh provisioner + reconciler (the restarted hub, knowing no cluster of dave)
    finds the servers by their tag and deletes them."""
    import json
    import signal
    import subprocess
    import sys

    caplog.set_level(logging.INFO, logger="jupyter_spark_openstack.reconcile")
    cfg = provisioner_config(emu, tmp_path / "clouds.yaml")
    proc = subprocess.Popen([sys.executable, "-c", CRASHING_HUB, json.dumps(cfg)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "requested"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    orphans = sorted(s["id"] for s in emu.servers())
    assert len(orphans) == 3
    p = await _provisioner(emu, tmp_path)
    try:
        async def known():
            return set()   # the restarted hub has no running or pending server of dave

        r = await Reconciler(p, "hub1", known, grace=0).run_once()
        assert sorted(r.deleted) == orphans
        assert emu.servers() == []
        for oid in orphans:
            assert f"({oid}) of user dave" in caplog.text
    finally:
        await p.close()
