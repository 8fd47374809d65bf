"""What one hub process knows across its spawners: one :class:`HubState` per hub id.

JupyterHub makes a spawner object per user server and none for the hub; the state that spans
them lives here, in one object, instead of in class attributes of the spawner:

* the provisioners (one per configuration: their clients and thread pools are shared);
* the usage ledger: which cluster holds what (per-user limits are summed over a user's
  servers, ``max_workers_total`` over the hub);
* the spawners alive in this process (for the reconciler's "who owns what");
* the background deletions of dead servers' clusters, by server key: JupyterHub drops a
  stopped server's spawner object and makes a new one for her next start, which must wait
  for the deletion the old one began (both act on the same run directory);
* the start gate: how many per-user masters start at once on this host
  (:attr:`ClusterConfig.start_gate`, ``master_start_slots``);
* the reconciler loop (:meth:`Reconciler.run_forever`, with its backoff), which also stops
  clusters on this host that nobody owns, and retries failed stops with a backoff per cluster.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from dataclasses import dataclass

from ..core.cluster import ClusterConfig, stop_orphan_clusters
from ..core.options import ClusterOptions
from ..core.provisioners import load_provisioner_class
from ..core.reconcile import Reconciler


@dataclass(frozen=True)
class Usage:
    """One cluster in the ledger."""

    owner: str
    server_name: str
    options: ClusterOptions
    cluster_id: str = ""


class HubState:
    _by_hub: dict[str, HubState] = {}

    @classmethod
    def get(cls, hub_id: str) -> HubState:
        """The one state of hub ``hub_id`` in this process."""
        st = cls._by_hub.get(hub_id)
        if st is None:
            st = cls._by_hub[hub_id] = cls(hub_id)
        return st

    def __init__(self, hub_id: str):
        self.hub_id = hub_id
        self.provisioners: dict[tuple, object] = {}
        self.usage: dict[str, Usage] = {}
        self.spawners: weakref.WeakSet = weakref.WeakSet()
        self.reconcilers: dict[tuple, tuple[Reconciler, asyncio.Task]] = {}
        #: cluster id -> (failed attempts, monotonic time of the next try)
        self.stop_backoff: dict[str, tuple[int, float]] = {}
        #: master_start_slots -> the semaphore of that many slots (see :meth:`start_gate`)
        self.start_gates: dict[int, asyncio.Semaphore] = {}
        #: server key -> (cluster id, the task deleting that cluster in the background)
        self.deletions: dict[str, tuple[str, asyncio.Task]] = {}

    # ---- provisioners -------------------------------------------------------------------
    def provisioner(self, name: str, config: dict, log):
        key = (name, repr(sorted(config.items())))
        prov = self.provisioners.get(key)
        if prov is None:
            prov = self.provisioners[key] = load_provisioner_class(name)(dict(config), log=log)
        return prov

    # ---- the start gate ------------------------------------------------------------------
    def start_gate(self, slots: int) -> asyncio.Semaphore | None:
        """The semaphore every cluster of this hub waits for before it starts a per-user
        master on this host (:attr:`ClusterConfig.start_gate`); None for no limit
        (``slots`` <= 0)."""
        if slots <= 0:
            return None
        gate = self.start_gates.get(slots)
        if gate is None:
            gate = self.start_gates[slots] = asyncio.Semaphore(slots)
        return gate

    # ---- usage --------------------------------------------------------------------------
    def others_of(self, owner: str, key: str) -> dict[str, Usage]:
        """The user's clusters other than ``key``."""
        return {k: u for k, u in self.usage.items() if u.owner == owner and k != key}

    def workers_in_use(self, except_key: str | None = None) -> int:
        return sum(u.options.workers for k, u in self.usage.items() if k != except_key)

    # ---- who owns what -------------------------------------------------------------------
    def known_clusters(self) -> set[str]:
        """Cluster ids of every running or pending server of this process, and of every
        cluster a spawner is deleting: nobody else's cluster is touched by the reconciler."""
        known = set()
        for sp in list(self.spawners):
            if getattr(sp, "user", None) is not None and (sp.active or sp.pending
                                                          or getattr(sp, "_starting", False)):
                known.add(sp.cluster_id)
        known.update(cid for cid, task in self.deletions.values() if not task.done())
        return known

    # ---- the reconciler ---------------------------------------------------------------------
    def ensure_reconciler(self, provisioner, config: ClusterConfig, base_dir, *, interval: float,
                          grace: float, log: logging.Logger) -> None:
        """One reconciler task per provisioner of this hub, started with the first spawner
        (JupyterHub has no hook for the hub's own start) and running until :meth:`stop`."""
        if interval <= 0:
            return
        key = (id(provisioner), str(base_dir))
        entry = self.reconcilers.get(key)
        if entry is not None and not entry[1].done():
            return

        async def known() -> set[str]:
            return self.known_clusters()

        async def clusters_first() -> None:
            await self.stop_orphans(provisioner, config, base_dir, interval=interval,
                                    grace=grace, log=log)

        reconciler = Reconciler(provisioner, self.hub_id, known, grace=grace, log=log,
                                before_round=clusters_first)
        task = asyncio.get_running_loop().create_task(reconciler.run_forever(interval))
        self.reconcilers[key] = (reconciler, task)

    async def stop_orphans(self, provisioner, config: ClusterConfig, base_dir, *,
                           interval: float, grace: float, log: logging.Logger) -> list[str]:
        """Stop the clusters on this host that no running or pending server owns (a hub
        killed mid-spawn, a stop that failed); a cluster whose stop fails again waits twice
        as long before the next try (from ``interval``), and each failure says what is still
        there."""
        return await stop_orphan_clusters(
            base_dir, config, provisioner, self.known_clusters(), grace=grace, logger=log,
            retry_after=self._may_retry,
            on_result=lambda cid, err: self._stop_result(cid, err, interval, log))

    def _may_retry(self, cluster_id: str) -> bool:
        entry = self.stop_backoff.get(cluster_id)
        return entry is None or time.monotonic() >= entry[1]

    def _stop_result(self, cluster_id: str, error: str | None, interval: float,
                     log: logging.Logger, max_backoff: float = 3600.0) -> None:
        if error is None:
            if self.stop_backoff.pop(cluster_id, None) is not None:
                log.warning("reconciler: cluster %s is stopped; nothing of it is left", cluster_id)
            for key, u in list(self.usage.items()):   # no longer counts against any limit
                if u.cluster_id == cluster_id:
                    self.usage.pop(key, None)
            return
        failures = self.stop_backoff.get(cluster_id, (0, 0.0))[0] + 1
        wait = min(max_backoff, interval * 2 ** (failures - 1))
        self.stop_backoff[cluster_id] = (failures, time.monotonic() + wait)
        log.error("reconciler: stopping cluster %s failed %d time(s): %s; next try in %.0fs",
                  cluster_id, failures, error, wait)

    async def stop(self) -> None:
        for reconciler, task in list(self.reconcilers.values()):
            reconciler.stop()
            task.cancel()
        self.reconcilers.clear()
