"""The async interface every provisioner implements.

A provisioner creates the *workers* of a user's Spark cluster somewhere (local processes,
OpenStack VMs, ...). The cluster lifecycle (:mod:`..cluster`) owns the master, the order of
things, progress and cleanup; a provisioner only does four things, each async:

* :meth:`Provisioner.request_worker` asks for one worker and returns its :class:`WorkerRecord`
  as soon as the backend has given it an id (before it boots). The caller saves the record at
  once, so a hub that dies right after still knows what to delete.
* :meth:`Provisioner.worker_status` observes one worker: ``pending`` / ``running`` /
  ``failed`` / ``gone``. A backend error raises :class:`ProvisionerError`: the state is
  *unknown*, never "gone" (a flaky API must not orphan a cluster).
* :meth:`Provisioner.delete_worker` deletes it and waits until it is gone (idempotent).
* :meth:`Provisioner.list_workers` lists what exists for a hub (and owner), for cleanup after a
  restart and for the reconciler.

Records are plain JSON-able dicts underneath (``WorkerRecord.to_dict``/``from_dict``), so they
fit in a spawner's ``get_state()``.
"""

from __future__ import annotations

import abc
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal

WorkerState = Literal["pending", "running", "failed", "gone"]


@dataclass(frozen=True)
class WorkerSpec:
    """One worker to create. All values are validated before a spec is built."""

    hub_id: str            # which hub owns it (tags/metadata, reconciliation)
    owner: str             # the JupyterHub user
    cluster_id: str        # one per user server: "<hub>-<user>-<server>" made safe
    name: str              # unique within the cluster, e.g. "alice-w1"
    index: int             # 1-based
    cores: int
    memory: str            # Spark memory string offered by the worker, e.g. "4g"
    master_url: str        # spark://host:port the worker joins
    secret: str | None = None          # spark.authenticate secret (never logged)
    size: str | None = None            # the admin's size name ("small", ...): a provisioner
                                       # maps it to a machine type of its own (openstack.flavors)
    server_name: str = ""              # JupyterHub named-server name ("" for the default)
    #: the master is on the cluster's head (placement ``cluster``), not on the hub host
    master_on_head: bool = False
    #: Spark properties the worker daemon must run with (hardening, network crypto): every
    #: provisioner passes them to the worker as they are, on top of its own
    spark_conf: dict[str, str] = field(default_factory=dict)
    #: who a worker on the hub host runs as (``local`` provisioner); None: the hub's own user
    daemon_user: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:  # keep the secret out of logs and tracebacks
        return (f"WorkerSpec(cluster_id={self.cluster_id!r}, name={self.name!r}, "
                f"cores={self.cores}, memory={self.memory!r}, master_url={self.master_url!r})")


@dataclass(frozen=True)
class HeadSpec:
    """A cluster's head to create (head placement ``cluster``): a machine of her cluster that
    runs her Spark master and her Connect server behind TLS. Validated before it is built."""

    hub_id: str
    owner: str
    cluster_id: str
    name: str                          # e.g. "<cluster_id>-head"
    token: str                         # the Connect token (never logged)
    tls: Any                           # :class:`..tls.ClusterTLS` (its key never logged)
    secret: str | None = None          # spark.authenticate secret (never logged)
    server_name: str = ""
    #: run her Connect server (and its TLS terminator) on the head, or her master only
    connect: bool = True
    driver_memory: str = "1g"
    #: Spark properties of her Connect server (executor sizes, hardening, network crypto)
    connect_conf: dict[str, str] = field(default_factory=dict)
    #: Spark properties of her master
    master_conf: dict[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"HeadSpec(cluster_id={self.cluster_id!r}, name={self.name!r})"


#: ``WorkerRecord.data["role"]`` of a head (workers have none, or "worker")
ROLE_HEAD = "head"


@dataclass
class WorkerRecord:
    """What we know about a created worker; ``id`` is the backend's id (server UUID, pid...)."""

    id: str
    name: str
    provisioner: str
    owner: str = ""
    cluster_id: str = ""
    hub_id: str = ""
    created_at: float = 0.0
    data: dict[str, Any] = field(default_factory=dict)   # backend specifics, JSON-able

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def is_head(self) -> bool:
        return (self.data or {}).get("role") == ROLE_HEAD

    @classmethod
    def from_dict(cls, d: dict) -> WorkerRecord:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


@dataclass
class WorkerStatus:
    state: WorkerState
    message: str = ""
    host: str | None = None


class Provisioner(abc.ABC):
    """Base class; subclasses are constructed with a plain ``config`` dict (already validated
    by :meth:`validate_config`)."""

    name: ClassVar[str] = ""
    #: seconds a worker may take from request to registration before we give up
    default_boot_timeout: ClassVar[float] = 120.0
    #: True when workers run on other hosts than the hub: Spark traffic between them then
    #: crosses a network and is encrypted (``spark.network.crypto.enabled``)
    remote_workers: ClassVar[bool] = False

    def __init__(self, config: dict | None = None, *, log=None):
        import logging  # noqa: PLC0415

        self.config = self.validate_config(dict(config or {}))
        self.log = log or logging.getLogger(f"jupyter_spark_openstack.provisioners.{self.name}")

    @classmethod
    def validate_config(cls, config: dict) -> dict:
        """Return the config with defaults filled in; raise ValidationError naming the key."""
        return config

    async def check_capacity(self, specs: list[WorkerSpec], *, head: bool = False) -> None:  # noqa: B027
        """Raise :class:`~..errors.QuotaError`-like ProvisionerError before creating anything
        when the backend cannot hold ``specs`` (and, with ``head``, the cluster's head server
        too; e.g. Nova quota). Default: no check."""

    @abc.abstractmethod
    async def request_worker(self, spec: WorkerSpec) -> WorkerRecord: ...

    @abc.abstractmethod
    async def worker_status(self, record: WorkerRecord) -> WorkerStatus: ...

    @abc.abstractmethod
    async def delete_worker(self, record: WorkerRecord) -> None: ...

    @abc.abstractmethod
    async def list_workers(self, *, hub_id: str, owner: str | None = None) -> list[WorkerRecord]: ...

    @property
    def executor_python(self) -> str | None:
        """The Python the executors on this provisioner's workers run (Python UDFs, RDD
        lambdas); None: the driver's own (workers on the hub host)."""
        return None

    #: where a user's head (master + Connect server) runs by default: ``hub`` (on the hub
    #: host) or ``cluster`` (a machine of her cluster, :meth:`request_head`)
    default_head_placement: ClassVar[str] = "hub"

    async def request_head(self, spec: HeadSpec) -> WorkerRecord:
        """Ask for the cluster's head machine (placement ``cluster``); its record (with
        ``data["role"] == "head"``) is status-checked, listed and deleted like a worker's."""
        from ..errors import ValidationError  # noqa: PLC0415

        raise ValidationError("head_placement", "cluster",
                              f"'hub' with the {self.name!r} provisioner (it has no cluster "
                              "machines to run a head on)")

    async def worker_log(self, record: WorkerRecord) -> str:
        """Console/log output of a worker, for error messages. Default: empty."""
        return ""

    async def boot_failure(self, record: WorkerRecord) -> str | None:
        """While a running worker has not registered yet: why it never will, if its backend
        can already tell (e.g. a VM's console shows cloud-init's failure), else None."""
        return None

    async def reconcile_extras(self, *, hub_id: str, min_age: float) -> None:  # noqa: B027
        """Called once per reconciler round: delete backend resources of this hub that
        belong to no worker any more (e.g. per-cluster security groups) once older than
        ``min_age`` seconds. Default: nothing to do."""

    async def close(self) -> None:  # noqa: B027
        """Release clients and thread pools."""
