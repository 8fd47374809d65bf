"""Reconciliation: delete workers that belong to no running or pending user server.

A hub that dies between creating a server and saving its id, a spawn killed half-way, a stop
that gave up: each can leave a worker VM that nobody will delete, burning quota. The
reconciler lists every worker tagged with this hub (:meth:`Provisioner.list_workers`), asks
the hub which clusters are running or pending (``known_clusters``), and deletes the others,
but only after a grace period (a spawn in flight may not be known yet). Every action is
logged with the user and the server id.

Safety rules: if the hub's list of known clusters cannot be read, nothing is deleted that
round; a worker is deleted only when it has been unknown for ``grace`` seconds in this process
*or* its backend creation time is older than ``grace`` (so orphans found right after a hub
restart go at once when they are old, young ones get the grace period).

Pure core: the spawner wires it into the hub (``run_once`` at start, ``run_forever``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from .errors import ProvisionerError
from .provisioners.base import Provisioner, WorkerRecord

log = logging.getLogger("jupyter_spark_openstack.reconcile")


@dataclass
class ReconcileReport:
    seen: int = 0
    kept: list[str] = field(default_factory=list)        # ids owned by a known cluster
    waiting: list[str] = field(default_factory=list)     # orphans still in their grace period
    deleted: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    skipped: str = ""                                    # why nothing was deleted, if so


class Reconciler:
    """``Reconciler(provisioner, hub_id, known_clusters, grace=300)``; ``known_clusters`` is
    an async callable returning the cluster ids of every running or pending user server;
    ``before_round``, an async callable run at the start of every round."""

    def __init__(self, provisioner: Provisioner, hub_id: str,
                 known_clusters: Callable[[], Awaitable[set[str]]], *, grace: float = 300.0,
                 log: logging.Logger | None = None, max_parallel_deletes: int = 8,
                 before_round: Callable[[], Awaitable[object]] | None = None):
        self.before_round = before_round
        self.provisioner = provisioner
        self.hub_id = hub_id
        self.known_clusters = known_clusters
        self.grace = float(grace)
        self.log = log or globals()["log"]
        self._first_seen: dict[str, float] = {}
        self._sem = asyncio.Semaphore(max_parallel_deletes)
        self._stopping = asyncio.Event()
        self.rounds = 0

    def _age(self, rec: WorkerRecord, now_mono: float) -> float:
        first = self._first_seen.setdefault(rec.id, now_mono)
        local_age = now_mono - first
        backend_age = time.time() - rec.created_at if rec.created_at else 0.0
        return max(local_age, backend_age)

    async def run_once(self) -> ReconcileReport:
        """One round: ``before_round`` (the hub's orphan clusters on this host), then every
        worker of this hub that no known cluster owns."""
        if self.before_round is not None:
            await self.before_round()
        report = ReconcileReport()
        records = await self.provisioner.list_workers(hub_id=self.hub_id)
        report.seen = len(records)
        try:
            known = set(await self.known_clusters())
        except Exception as e:  # noqa: BLE001 - never delete blind
            report.skipped = f"could not read the hub's running servers: {e}"
            self.log.warning("reconciler: %s; deleting nothing this round", report.skipped)
            return report
        now = time.monotonic()
        orphans = []
        present = set()
        for rec in records:
            present.add(rec.id)
            if rec.cluster_id and rec.cluster_id in known:
                report.kept.append(rec.id)
                self._first_seen.pop(rec.id, None)
                continue
            age = self._age(rec, now)
            if age < self.grace:
                report.waiting.append(rec.id)
                self.log.info("reconciler: server %s (%s) of user %s belongs to no running or "
                              "pending server; deleting it if still so in %.0fs",
                              rec.name, rec.id, rec.owner or "?", self.grace - age)
                continue
            orphans.append((rec, age))
        for gone in set(self._first_seen) - present:
            self._first_seen.pop(gone, None)

        async def delete(rec: WorkerRecord, age: float) -> None:
            async with self._sem:
                self.log.warning("reconciler: deleting orphan server %s (%s) of user %s, cluster "
                                 "%s: no running or pending server owns it (unowned for %.0fs)",
                                 rec.name, rec.id, rec.owner or "?", rec.cluster_id or "?", age)
                try:
                    await self.provisioner.delete_worker(rec)
                except ProvisionerError as e:
                    report.errors[rec.id] = str(e)
                    self.log.error("reconciler: could not delete server %s (%s) of user %s: %s; "
                                   "will retry next round", rec.name, rec.id, rec.owner or "?", e)
                    return
                report.deleted.append(rec.id)
                self._first_seen.pop(rec.id, None)
                self.log.warning("reconciler: deleted orphan server %s (%s) of user %s",
                                 rec.name, rec.id, rec.owner or "?")

        await asyncio.gather(*(delete(r, a) for r, a in orphans))
        try:
            await self.provisioner.reconcile_extras(hub_id=self.hub_id, min_age=self.grace)
        except ProvisionerError as e:
            self.log.error("reconciler: cleaning up %s resources failed: %s; will retry next "
                           "round", self.provisioner.name, e)
        self.rounds += 1
        return report

    async def run_forever(self, interval: float = 300.0, *, max_backoff: float = 1800.0) -> None:
        """``run_once`` every ``interval`` seconds until :meth:`stop`; on errors back off
        (doubling from ``interval / 10`` up to ``max_backoff``) and log them."""
        failures = 0
        while not self._stopping.is_set():
            try:
                await self.run_once()
                failures = 0
                wait = interval
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001
                failures += 1
                wait = min(max_backoff, max(interval / 10, 1.0) * 2 ** (failures - 1))
                self.log.error("reconciler: round failed (%s); next try in %.0fs", e, wait)
            try:
                await asyncio.wait_for(self._stopping.wait(), timeout=wait)
            except TimeoutError:
                pass

    def stop(self) -> None:
        self._stopping.set()
