"""The ``local`` provisioner: each worker is a Spark worker process on this host.

The embedded default, so the whole stack runs on one machine. Each worker's record is written
to ``<run_dir>/<cluster_id>/workers/<name>.json`` *before* its process starts, so a restarted
hub (or the reconciler) finds every worker this provisioner ever started.

``run_dir`` is the hub's own (0700): records and logs live there. A worker runs as the user of
``WorkerSpec.daemon_user`` (her uid, her environment, her private properties file, her work
directory), so her executors run as her too. A record read back is trusted only as a regular
file in ``run_dir`` that is no link, and the process it names is signalled only while it is
still that worker (see :func:`..spark.daemons.stop_daemon`).
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from .. import safefs
from ..errors import ProvisionerError, ValidationError
from ..localcluster import auth_properties, log_tail
from ..spark import daemons
from ..spark.ports import free_ports
from .base import Provisioner, WorkerRecord, WorkerSpec, WorkerStatus


class LocalProvisioner(Provisioner):
    """Config keys: ``run_dir`` (where records, logs and work dirs go), ``host`` (bind address,
    default 127.0.0.1), ``max_workers`` (refuse more local worker processes than this)."""

    name = "local"
    default_boot_timeout = 120.0

    @classmethod
    def validate_config(cls, config: dict) -> dict:
        allowed = {"run_dir", "host", "max_workers"}
        for key in config:
            if key not in allowed:
                raise ValidationError(f"provisioner_config.{key}", config[key],
                                      "one of the keys " + ", ".join(sorted(allowed)))
        if not config.get("run_dir"):
            from ..paths import runtime_root  # noqa: PLC0415

            config["run_dir"] = str(runtime_root() / "local-provisioner")
        config.setdefault("host", "127.0.0.1")
        mw = config.get("max_workers", 64)
        if not isinstance(mw, int) or isinstance(mw, bool) or mw < 1:
            raise ValidationError("provisioner_config.max_workers", mw, "a whole number from 1 up")
        config["max_workers"] = mw
        return config

    @property
    def run_dir(self) -> Path:
        return Path(self.config["run_dir"])

    def _cluster_dir(self, cluster_id: str) -> Path:
        return self.run_dir / cluster_id

    def _record_path(self, cluster_id: str, name: str) -> Path:
        p = self._cluster_dir(cluster_id) / "workers" / f"{name}.json"
        return safefs.require_under(p, self.run_dir, "worker record")

    def _all_records(self) -> list[WorkerRecord]:
        out = []
        for p in sorted(self.run_dir.glob("*/workers/*.json")):
            try:
                rec = WorkerRecord.from_dict(safefs.read_json(p, owner_uid=os.geteuid()) or {})
            except (OSError, ValueError, TypeError, safefs.UnsafePathError) as e:
                self.log.warning("local provisioner: ignoring worker record %s: %s", p, e)
                continue
            if p != self.run_dir / rec.cluster_id / "workers" / f"{rec.name}.json":
                self.log.warning("local provisioner: ignoring worker record %s: it names "
                                 "another place (%r, %r)", p, rec.cluster_id, rec.name)
                continue
            out.append(rec)
        return out

    async def check_capacity(self, specs: list[WorkerSpec]) -> None:
        running = sum(1 for r in self._all_records() if daemons.is_running(r.data))
        if running + len(specs) > self.config["max_workers"]:
            from ..errors import QuotaError  # noqa: PLC0415

            raise QuotaError(f"needs {len(specs)} local workers, {self.config['max_workers'] - running} "
                             f"left of this host's {self.config['max_workers']}")

    async def request_worker(self, spec: WorkerSpec) -> WorkerRecord:
        cdir = self._cluster_dir(spec.cluster_id)
        rpath = self._record_path(spec.cluster_id, spec.name)
        safefs.make_dirs(rpath.parent, 0o700)
        rec = WorkerRecord(id=f"{spec.cluster_id}/{spec.name}", name=spec.name,
                           provisioner=self.name, owner=spec.owner, cluster_id=spec.cluster_id,
                           hub_id=spec.hub_id, created_at=time.time(), data={})
        self._write(rpath, rec)  # recorded before the process exists

        def record(data: dict) -> None:  # ... and again with its marker, before it starts
            rec.data = data
            self._write(rpath, rec)

        def start() -> dict:
            (webui,) = free_ports(1, self.config["host"])
            return daemons.start_worker(
                cdir, master_url=spec.master_url, host=self.config["host"], cores=spec.cores,
                memory=spec.memory, webui_port=webui, name=spec.name,
                properties={**spec.spark_conf, **auth_properties(spec.secret)},
                user=spec.daemon_user, record=record)

        try:
            rec.data = await asyncio.to_thread(start)
        except Exception as e:
            rpath.unlink(missing_ok=True)
            raise ProvisionerError(f"could not start local worker {spec.name}: {e}") from e
        self._write(rpath, rec)
        return rec

    @staticmethod
    def _write(path: Path, rec: WorkerRecord) -> None:
        safefs.write_json_atomic(path, rec.to_dict())

    def _own_data(self, record: WorkerRecord) -> dict | None:
        """The worker's data from this provisioner's own record file (not the copy the
        caller holds: that one may come from a state file someone else could have written);
        None when there is no record (the worker is gone)."""
        try:
            d = safefs.read_json(self._record_path(record.cluster_id, record.name),
                                 owner_uid=os.geteuid())
        except (ValueError, safefs.UnsafePathError) as e:
            self.log.warning("local provisioner: ignoring the record of %s: %s", record.name, e)
            return None
        return (d.get("data") or {}) if isinstance(d, dict) else None

    async def worker_status(self, record: WorkerRecord) -> WorkerStatus:
        data = self._own_data(record)
        if data is None:
            return WorkerStatus("gone")
        if not data.get("pid"):
            return WorkerStatus("pending", "starting")
        if daemons.is_running(data):
            return WorkerStatus("running", host=data.get("host"))
        return WorkerStatus("failed", f"worker process {data['pid']} exited\n"
                            + log_tail(data.get("log", ""), 12))

    async def delete_worker(self, record: WorkerRecord) -> None:
        data = self._own_data(record) or {}
        if data.get("pid") or data.get("marker"):
            await asyncio.to_thread(daemons.stop_daemon, data)
        self._record_path(record.cluster_id, record.name).unlink(missing_ok=True)
        wdir = self._cluster_dir(record.cluster_id) / "workers"
        if wdir.exists() and not any(wdir.iterdir()):
            wdir.rmdir()

    async def list_workers(self, *, hub_id: str, owner: str | None = None) -> list[WorkerRecord]:
        return [r for r in self._all_records()
                if r.hub_id == hub_id and (owner is None or r.owner == owner)]

    async def worker_log(self, record: WorkerRecord) -> str:
        return log_tail((self._own_data(record) or {}).get("log", ""), 30)
