"""One user's cluster state: typed, versioned, and kept in one place.

:class:`ClusterState` is everything the lifecycle (:class:`.cluster.SparkCluster`) knows of a
cluster: who owns it, its size, its head (:class:`MasterState`, :class:`ConnectState`), every
machine (:class:`~.provisioners.base.WorkerRecord`, the head's included) and every file and
process on the hub host. It is frozen: a change is a new state (:meth:`ClusterState.evolve`),
written at once.

**One source of truth.** The state lives in ``<run_dir>/cluster.json`` only (:func:`write`,
:func:`read`). It is written the moment anything is created, before the hub's database hears of
it, by the hub's own user, and it is what the reconciler scans. The hub's database keeps a
:class:`StateRef` (which cluster, where its file is) and a read-only summary for the admin API
(:meth:`ClusterState.summary`); nothing is ever read back from that summary.

**Versioned.** :data:`STATE_VERSION` is written into every file; :func:`migrate` brings older
states up to it as they are read (version 1: before head placement; version 2: an untyped dict,
copied into the hub's database too) and refuses newer ones (:class:`StateVersionError`), so a
downgraded hub never acts on a state it would misread.

**Checked.** Every path a state holds must lie under its ``run_dir``, and ``run_dir`` under the
hub's base directory (:meth:`ClusterState.check_paths`); a state naming paths elsewhere is refused
(:class:`~.safefs.UnsafePathError`) and nothing is stopped or deleted from it.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from . import safefs
from .errors import ClusterError
from .options import WorkerSize
from .provisioners.base import WorkerRecord

#: the version of the cluster state this code writes; older ones are migrated as they are read
STATE_VERSION = 3
STATE_FILE = "cluster.json"

Phase = Literal["new", "head", "master", "workers", "running", "stopping", "stopped"]
Placement = Literal["hub", "cluster"]
MasterMode = Literal["per-user", "shared", "head"]


class StateVersionError(ClusterError):
    """A saved cluster state of a version this code does not know (a newer release wrote it)."""


def _fields(cls, d: dict) -> dict:
    """``d``'s fields of dataclass ``cls``; a key ``cls`` does not have (a misspelt optional
    field would otherwise be dropped silently) is refused, naming it and the allowed ones."""
    allowed = cls.__dataclass_fields__
    unknown = sorted(set(d) - set(allowed))
    if unknown:
        raise StateVersionError(f"a cluster state whose {cls.__name__} has the unknown field(s) "
                                f"{', '.join(unknown)} (read as version {STATE_VERSION}); "
                                f"allowed: {', '.join(allowed)}")
    return {k: d[k] for k in allowed if k in d}


@dataclass(frozen=True)
class MasterState:
    """Her Spark master: on the hub host (``per-user``, :attr:`process` is its JVM, its logs
    under :attr:`run_dir`), an admin's ``shared`` one, or on her ``head`` machine (:attr:`host`)."""

    mode: MasterMode
    master_url: str | None = None
    webui_url: str | None = None
    run_dir: str | None = None
    host: str | None = None
    #: the JVM's record (:mod:`.spark.daemons`), saved before the process exists
    process: dict[str, Any] | None = None


@dataclass(frozen=True)
class ConnectState:
    """Her Spark Connect server: on the hub host (:attr:`process`), or ``remote`` on her head
    behind TLS (the cluster's CA in :attr:`ca_file`, the certificate's :attr:`server_name`).
    The token is only in :attr:`token_file` (0600), never here."""

    url: str | None = None
    token_file: str | None = None
    remote: bool = False
    ca_file: str | None = None
    server_name: str | None = None
    host: str | None = None
    port: int | None = None
    spark_version: str | None = None
    warm_up_s: float | None = None
    #: a server on the hub host: its record (:func:`.spark.connect.start_connect_server`)
    process: dict[str, Any] | None = None

    #: what :meth:`from_server_record` lifts out of a server's record
    _LIFTED: ClassVar[tuple[str, ...]] = ("url", "token_file", "spark_version", "warm_up_s")

    @classmethod
    def from_server_record(cls, rec: dict) -> ConnectState:
        """The state of a Connect server on this host from its record (:mod:`.connectserver`)."""
        return cls(**{k: rec.get(k) for k in cls._LIFTED},
                   process={k: v for k, v in rec.items() if k not in cls._LIFTED})

    def server_record(self) -> dict:
        """The record :mod:`.connectserver` works on (a server on this host)."""
        return {**(self.process or {}), **{k: getattr(self, k) for k in self._LIFTED}}


@dataclass(frozen=True)
class UiGuardState:
    """The UI guard of her cluster (:mod:`.spark.uiguard`): its classes and token files."""

    classes: str
    token_file: str
    user_token_file: str


@dataclass(frozen=True)
class StateRef:
    """What the hub's database keeps of a cluster: which one, and where its state is."""

    cluster_id: str
    run_dir: str

    @property
    def path(self) -> Path:
        return Path(self.run_dir) / STATE_FILE


@dataclass(frozen=True)
class ClusterState:
    """Everything known of one user's cluster (module docstring)."""

    cluster_id: str
    key: str
    owner: str
    hub_id: str
    provisioner: str
    run_dir: str
    #: the worker size she chose (the provisioner maps its name to a flavor, a machine...)
    size: WorkerSize
    workers: int
    cores: int
    memory_mb: int
    server_name: str = ""
    #: her spawn options as she gave them (``ClusterOptions.to_dict``)
    options: dict[str, Any] = field(default_factory=dict)
    placement: Placement = "hub"
    phase: Phase = "new"
    started_at: float | None = None
    master: MasterState | None = None
    connect: ConnectState | None = None
    #: every machine: the workers and (placement ``cluster``) the head
    records: tuple[WorkerRecord, ...] = ()
    session_dir: str | None = None
    secret_file: str | None = None
    ui_guard: UiGuardState | None = None
    version: int = STATE_VERSION

    def evolve(self, **changes) -> ClusterState:
        if "records" in changes:
            changes["records"] = tuple(changes["records"])
        return dataclasses.replace(self, **changes)

    @property
    def ref(self) -> StateRef:
        return StateRef(self.cluster_id, self.run_dir)

    def database_entry(self) -> dict:
        """What the hub's database keeps (read back by :func:`ref_of`): the reference, the
        version, and :meth:`summary`."""
        return {"cluster_id": self.cluster_id, "run_dir": self.run_dir, "version": self.version,
                "summary": self.summary()}

    # ---- (de)serialisation -------------------------------------------------------------
    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["records"] = [r.to_dict() for r in self.records]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ClusterState:
        """A state from its JSON form, migrated to :data:`STATE_VERSION` first."""
        d = migrate(d)
        try:
            out = dict(_fields(cls, d))
            out["size"] = WorkerSize(**_fields(WorkerSize, d["size"]))
            out["records"] = tuple(WorkerRecord.from_dict(r) for r in d.get("records") or ())
            for name, typ in (("master", MasterState), ("connect", ConnectState),
                              ("ui_guard", UiGuardState)):
                out[name] = typ(**_fields(typ, d[name])) if d.get(name) else None
            return cls(**out)
        except (KeyError, TypeError, AttributeError) as e:
            raise StateVersionError(f"a cluster state that lacks or misspells a field (read as "
                                    f"version {STATE_VERSION}): {type(e).__name__}: {e}") from None

    def summary(self) -> dict:
        """A read-only view for the admin API (``admin:server_state``); never read back."""
        return {"workers": self.workers, "cores": self.cores, "memory_mb": self.memory_mb,
                "started_at": self.started_at, "phase": self.phase, "placement": self.placement,
                "master_url": self.master.master_url if self.master else None}

    # ---- paths -------------------------------------------------------------------------
    def paths(self) -> dict[str, str]:
        """Every path this state holds, by the field that holds it."""
        found: dict[str, str | None] = {"secret_file": self.secret_file,
                                        "session_dir": self.session_dir}
        if self.master:
            found["master.run_dir"] = self.master.run_dir
            for k in ("log", "marker"):
                found[f"master.process.{k}"] = (self.master.process or {}).get(k)
        if self.ui_guard:
            found["ui_guard.token_file"] = self.ui_guard.token_file
            found["ui_guard.user_token_file"] = self.ui_guard.user_token_file
        if self.connect:
            found["connect.token_file"] = self.connect.token_file
            found["connect.ca_file"] = self.connect.ca_file
            for k in ("properties_file", "marker", "log"):
                found[f"connect.process.{k}"] = (self.connect.process or {}).get(k)
        return {k: v for k, v in found.items() if v is not None}

    def check_paths(self, base_dir: str | os.PathLike | None) -> None:
        """Refuse (:class:`~.safefs.UnsafePathError`) a state naming a path outside its
        run directory, or a run directory outside ``base_dir``."""
        if not isinstance(self.run_dir, str) or not self.run_dir:
            raise safefs.UnsafePathError(f"refusing cluster state without a run_dir ({self.run_dir!r})")
        if base_dir is not None:
            safefs.require_under(self.run_dir, base_dir, "run_dir")
        for name, value in self.paths().items():
            if not isinstance(value, str):
                raise safefs.UnsafePathError(f"refusing cluster state: {name} is {value!r}")
            safefs.require_under(value, self.run_dir, name)


# ---- the one store ------------------------------------------------------------------------
def write(state: ClusterState) -> None:
    """Write ``state`` to its run directory's ``cluster.json`` (atomically, 0600)."""
    safefs.write_json_atomic(Path(state.run_dir) / STATE_FILE, state.to_dict())


def read(path: str | os.PathLike, base_dir: str | os.PathLike | None) -> ClusterState:
    """The state in ``path`` (a ``cluster.json``): a regular file of this process's user, in the
    run directory it names, every path in it under that directory. Raises ``OSError`` (no such
    file), ``ValueError`` (not JSON), :class:`~.safefs.UnsafePathError` or
    :class:`StateVersionError`."""
    path = Path(path)
    d = safefs.read_json(path, owner_uid=os.geteuid())
    if d is None:
        raise FileNotFoundError(f"no cluster state in {path}")
    if not isinstance(d, dict):
        raise StateVersionError(f"a cluster state is a JSON object, not {type(d).__name__}")
    if d.get("run_dir") != str(path.parent):
        raise safefs.UnsafePathError(f"it names run_dir {d.get('run_dir')!r}, not its own directory")
    return parse(d, base_dir)


def parse(d: object, base_dir: str | os.PathLike | None) -> ClusterState:
    """A state from its JSON form: migrated, typed, and every path in it checked
    (:meth:`ClusterState.check_paths`)."""
    state = ClusterState.from_dict(d)
    state.check_paths(base_dir)
    return state


def remove(state: ClusterState) -> None:
    (Path(state.run_dir) / STATE_FILE).unlink(missing_ok=True)


# ---- migration ----------------------------------------------------------------------------
def migrate(state: dict) -> dict:
    """A copy of a saved state (its JSON form) at :data:`STATE_VERSION`.

    * version 1 (no ``version`` key): its head was on the hub (``placement`` 'hub') and its
      size may name an OpenStack flavor, which is the provisioner's setting now (dropped);
    * version 2: the Connect server's record was one flat dict (now its typed fields and the
      server's ``process`` record);
    * a newer version raises :class:`StateVersionError`."""
    if not isinstance(state, dict):
        raise StateVersionError(f"a cluster state is a JSON object, not {type(state).__name__}")
    out = dict(state)
    version = out.get("version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise StateVersionError(f"cluster state version {version!r} is not allowed; expected an "
                                f"integer 1 to {STATE_VERSION}")
    if version > STATE_VERSION:
        raise StateVersionError(f"cluster state version {version} is not allowed; expected at most "
                                f"{STATE_VERSION} (a newer jupyter-spark-openstack wrote it: "
                                "upgrade this hub before it stops that cluster)")
    if version == 1:
        out.setdefault("placement", "hub")
        if isinstance(out.get("size"), dict):
            out["size"] = {k: v for k, v in out["size"].items() if k != "flavor"}
        version = 2
    if version == 2:
        conn = out.get("connect")
        if isinstance(conn, dict) and not conn.get("remote") and "process" not in conn:
            out["connect"] = dataclasses.asdict(ConnectState.from_server_record(conn))
        version = 3
    out["version"] = version
    return out


def ref_of(saved: object) -> StateRef | None:
    """The :class:`StateRef` in what the hub's database holds for a cluster (``None`` if it
    names none). A version 1 or 2 database entry was a whole copy of the state: its
    ``cluster_id`` and ``run_dir`` are the reference."""
    if not isinstance(saved, dict):
        return None
    cid, run_dir = saved.get("cluster_id"), saved.get("run_dir")
    if isinstance(cid, str) and cid and isinstance(run_dir, str) and run_dir:
        return StateRef(cid, run_dir)
    return None
