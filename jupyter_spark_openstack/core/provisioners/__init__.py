"""Provisioners: where a user's Spark workers run. Found through the entry-point group
``jupyter_spark_openstack.provisioners`` (``local``, ``openstack``; third parties may add more)."""

from __future__ import annotations

from importlib.metadata import entry_points

from ..errors import ValidationError
from .base import Provisioner, WorkerRecord, WorkerSpec, WorkerStatus

GROUP = "jupyter_spark_openstack.provisioners"


def available() -> dict[str, object]:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def load_provisioner_class(name: str) -> type[Provisioner]:
    eps = available()
    if name not in eps:
        raise ValidationError("provisioner", name, "one of: " + ", ".join(sorted(eps)))
    cls = eps[name].load()
    if not (isinstance(cls, type) and issubclass(cls, Provisioner)):
        raise ValidationError("provisioner", name, "an entry point naming a Provisioner subclass")
    return cls


__all__ = ["Provisioner", "WorkerRecord", "WorkerSpec", "WorkerStatus", "available",
           "load_provisioner_class", "GROUP"]
