"""Chaos: 100 request/delete cycles through the openstack provisioner while 20% of all API
calls (identity, discovery, servers, limits...) fail with 5xx. The emulator runs in its no-JVM
mode (servers start no Spark process: hundreds of JVMs would not fit in CI on 2 cores); the
Spark path with real workers is covered in test_openstack_spark.py. Must end with zero servers
and no worker process."""

from __future__ import annotations

import asyncio
import random

import pytest

from jupyter_spark_openstack.core.errors import ProvisionerError
from jupyter_spark_openstack.core.provisioners.base import WorkerSpec
from jupyter_spark_openstack.core.provisioners.openstack import OpenStackProvisioner
from jupyter_spark_openstack.testing.emulator import Emulator
from jupyter_spark_openstack.testing.emulator.helpers import provisioner_config

CYCLES = 100


@pytest.fixture
def emu(tmp_path):
    e = Emulator(boot_delay=0.2, delete_delay=0.05, spark_mode="none", run_dir=tmp_path / "emu",
                 seed=42)
    e.start()
    try:
        yield e
    finally:
        e.stop()


async def test_100_cycles_with_20_percent_api_failures_leave_nothing(emu, tmp_path):
    emu.add_fault(action="error", kind="*", status=503, rate=0.1)
    emu.add_fault(action="error", kind="*", status=500, rate=0.1)
    prov = OpenStackProvisioner(provisioner_config(emu, tmp_path / "clouds.yaml",
                                                   retry_backoff=0.02, poll_interval=0.1))
    sem = asyncio.Semaphore(10)
    outcome = {"ok": 0, "request_failed": 0, "delete_retried": 0}
    rnd = random.Random(7)

    async def cycle(i: int) -> None:
        owner = f"user{i % 10}"
        s = WorkerSpec(hub_id="chaos", owner=owner, cluster_id=f"chaos-{owner}-{i}",
                       name=f"chaos-{owner}-{i}-w1", index=1, cores=1, memory="1g",
                       master_url="spark://127.0.0.1:7077", secret="s", size="small")
        async with sem:
            try:
                rec = await prov.request_worker(s)
            except ProvisionerError:
                outcome["request_failed"] += 1
                return
            for _ in range(rnd.randint(0, 6)):   # watch it for a while, like a spawn would
                try:
                    await prov.worker_status(rec)
                except ProvisionerError:
                    pass
                await asyncio.sleep(0.05)
            for _attempt in range(5):
                try:
                    await prov.delete_worker(rec)
                    break
                except ProvisionerError:
                    outcome["delete_retried"] += 1
            outcome["ok"] += 1

    try:
        await asyncio.gather(*(cycle(i) for i in range(CYCLES)))
    finally:
        await prov.close()
    calls = emu.calls()
    failed = [c for c in calls if c.status >= 500]
    # the faults really fired on about a fifth of the calls, over every kind of call
    assert 0.12 < len(failed) / len(calls) < 0.28, (len(failed), len(calls))
    assert {"servers.create", "servers.get", "servers.delete"} <= {c.kind for c in failed}
    assert outcome["ok"] + outcome["request_failed"] == CYCLES
    assert outcome["ok"] >= 95
    # nothing left: no server, no worker process
    assert emu.servers() == []
    assert emu.worker_processes() == []
    assert len([c for c in calls if c.kind == "servers.create" and c.status == 202]) == outcome["ok"]
