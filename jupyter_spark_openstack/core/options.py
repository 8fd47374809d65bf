"""The one options schema for a user's cluster: the spawn form and the REST API both go here.

An admin configures worker sizes and limits; :class:`OptionsSchema` renders the form from the
same field list it validates with, so the two cannot drift apart. Whatever arrives (form data
as lists of strings, REST JSON values) is parsed by :meth:`OptionsSchema.parse` into a typed
:class:`ClusterOptions` or refused with a :class:`ValidationError` naming the field, the value
and the allowed range. Raw option strings go nowhere else.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .errors import ValidationError
from .models import format_mb, memory_mb, parse_memory, parse_positive_int

_SIZE_NAME_ALLOWED = "a short name: letters, digits, '-' and '_'"


@dataclass(frozen=True)
class WorkerSize:
    """A worker size an admin offers: cores and memory a worker gives Spark. What machine a
    size is on a backend (an OpenStack flavor) is that provisioner's own setting."""

    name: str
    cores: int
    memory: str                   # Spark memory string the worker offers, e.g. "4g"
    description: str = ""

    @property
    def memory_mb(self) -> int:
        return memory_mb(self.memory)

    @property
    def label(self) -> str:
        return self.description or f"{self.name} ({self.cores} cores, {self.memory.upper()}B)"

    @classmethod
    def parse(cls, raw: Mapping, field: str = "worker_sizes") -> WorkerSize:
        if not isinstance(raw, Mapping):
            raise ValidationError(field, raw, "a dict with name, cores, memory (and optional description)")
        if "flavor" in raw:
            raise ValidationError(f"{field}.flavor", raw["flavor"],
                                  "no key here: a size's flavor is the openstack provisioner's "
                                  "setting, its 'flavors' mapping ({size name: flavor})")
        unknown = set(raw) - {"name", "cores", "memory", "description"}
        if unknown:
            raise ValidationError(f"{field}.{sorted(unknown)[0]}", raw[sorted(unknown)[0]],
                                  "only the keys name, cores, memory, description")
        name = str(raw.get("name", ""))
        if not name or not all(c.isalnum() or c in "-_" for c in name):
            raise ValidationError(f"{field}.name", raw.get("name"), _SIZE_NAME_ALLOWED)
        return cls(
            name=name,
            cores=parse_positive_int(f"{field}[{name}].cores", raw.get("cores"), maximum=1024),
            memory=parse_memory(f"{field}[{name}].memory", raw.get("memory")),
            description=str(raw.get("description") or ""),
        )


DEFAULT_SIZES = (
    WorkerSize("small", 1, "1g", description="small (1 core, 1 GB)"),
    WorkerSize("medium", 2, "2g", description="medium (2 cores, 2 GB)"),
)


@dataclass(frozen=True)
class Limits:
    """Admin limits. ``max_workers_total`` bounds the whole hub."""

    max_workers_per_user: int = 4
    max_cores_per_user: int = 16
    max_memory_per_user: str = "32g"
    max_workers_total: int = 32

    @classmethod
    def parse(cls, *, max_workers_per_user=4, max_cores_per_user=16, max_memory_per_user="32g",
              max_workers_total=32) -> Limits:
        return cls(
            max_workers_per_user=parse_positive_int("max_workers_per_user", max_workers_per_user),
            max_cores_per_user=parse_positive_int("max_cores_per_user", max_cores_per_user),
            max_memory_per_user=parse_memory("max_memory_per_user", max_memory_per_user),
            max_workers_total=parse_positive_int("max_workers_total", max_workers_total),
        )


@dataclass(frozen=True)
class ClusterOptions:
    """What one user asked for, validated against the admin's sizes and limits."""

    workers: int
    size: WorkerSize

    @property
    def total_cores(self) -> int:
        return self.workers * self.size.cores

    @property
    def total_memory_mb(self) -> int:
        return self.workers * self.size.memory_mb

    def to_dict(self) -> dict:
        return {"workers": self.workers, "size": self.size.name}

    def describe(self) -> str:
        w = "worker" if self.workers == 1 else "workers"
        c = "core" if self.total_cores == 1 else "cores"
        return f"{self.workers} {w} · {self.total_cores} {c}"


class OptionsSchema:
    """Fields ``workers`` and ``size``; renders the form and parses form or REST input."""

    FIELDS = ("workers", "size")

    def __init__(self, sizes: Sequence[WorkerSize | Mapping] = DEFAULT_SIZES,
                 limits: Limits | None = None, default_workers: int = 2,
                 default_size: str | None = None):
        parsed = [s if isinstance(s, WorkerSize) else WorkerSize.parse(s) for s in sizes]
        if not parsed:
            raise ValidationError("worker_sizes", list(sizes), "at least one size")
        names = [s.name for s in parsed]
        if len(set(names)) != len(names):
            raise ValidationError("worker_sizes", names, "sizes with distinct names")
        self.sizes = {s.name: s for s in parsed}
        self.limits = limits or Limits()
        self.default_size = default_size or parsed[0].name
        if self.default_size not in self.sizes:
            raise ValidationError("default_size", default_size, "one of " + ", ".join(self.sizes))
        self.default_workers = parse_positive_int(
            "default_workers", default_workers, maximum=self.limits.max_workers_per_user)

    # -- the allowed range, said once ---------------------------------------------------------
    def max_workers_for(self, size: WorkerSize) -> int:
        lim = self.limits
        by_cores = lim.max_cores_per_user // size.cores
        by_mem = memory_mb(lim.max_memory_per_user) // size.memory_mb
        return max(0, min(lim.max_workers_per_user, by_cores, by_mem))

    @staticmethod
    def _scalar(field: str, value):
        """Form data arrives as one-element lists of strings; REST as JSON values."""
        if isinstance(value, list | tuple):
            if len(value) != 1:
                raise ValidationError(field, value, "a single value")
            value = value[0]
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        return value

    def parse(self, raw: Mapping | None) -> ClusterOptions:
        """Validate user options (from the form or the REST API) into :class:`ClusterOptions`."""
        raw = dict(raw or {})
        unknown = sorted(set(raw) - set(self.FIELDS))
        if unknown:
            raise ValidationError(unknown[0], raw[unknown[0]],
                                  "only the options " + ", ".join(self.FIELDS))
        size_name = self._scalar("size", raw.get("size", self.default_size))
        if not isinstance(size_name, str) or size_name not in self.sizes:
            raise ValidationError("size", size_name, "one of " + ", ".join(self.sizes))
        size = self.sizes[size_name]
        limit = self.max_workers_for(size)
        if limit < 1:
            raise ValidationError("size", size_name,
                                  f"a size within the per-user limits ({self.limits.max_cores_per_user} cores, "
                                  f"{self.limits.max_memory_per_user.upper()}B)")
        workers_raw = self._scalar("workers", raw.get("workers", min(self.default_workers, limit)))
        try:
            workers = parse_positive_int("workers", workers_raw)
        except ValidationError:
            raise ValidationError("workers", workers_raw, self._workers_allowed(size, limit)) from None
        if workers > limit:
            raise ValidationError("workers", workers_raw, self._workers_allowed(size, limit))
        return ClusterOptions(workers=workers, size=size)

    def _workers_allowed(self, size: WorkerSize, limit: int) -> str:
        lim = self.limits
        return (f"a whole number from 1 to {limit} for size {size.name!r} "
                f"(limits per user: {lim.max_workers_per_user} workers, {lim.max_cores_per_user} cores, "
                f"{format_mb(memory_mb(lim.max_memory_per_user)).upper()}B memory)")

    def check_hub_total(self, options: ClusterOptions, in_use: int) -> None:
        """Refuse when the hub as a whole would exceed ``max_workers_total``."""
        free = self.limits.max_workers_total - in_use
        if options.workers > free:
            raise ValidationError(
                "workers", options.workers,
                f"at most {max(free, 0)} now: the hub runs {in_use} of its "
                f"{self.limits.max_workers_total} workers")

    def check_user_total(self, options: ClusterOptions, others: Sequence[ClusterOptions]) -> None:
        """Refuse when ``options`` plus the user's ``others`` (her other servers' clusters)
        exceed a per-user limit: the limits are per user, not per server."""
        lim = self.limits
        used = (sum(o.workers for o in others), sum(o.total_cores for o in others),
                sum(o.total_memory_mb for o in others))
        if not others:
            return
        for label, have, want, limit in (
                ("workers", used[0], options.workers, lim.max_workers_per_user),
                ("cores", used[1], options.total_cores, lim.max_cores_per_user),
                ("memory", used[2], options.total_memory_mb, memory_mb(lim.max_memory_per_user))):
            if have + want > limit:
                fmt = (lambda mb: f"{format_mb(mb).upper()}B") if label == "memory" else str
                raise ValidationError(
                    "workers", options.workers,
                    f"fewer: with this server's {fmt(want)} the user would hold {fmt(have + want)} "
                    f"{label} over her {len(others) + 1} servers (per-user limit {fmt(limit)}; "
                    f"her other servers hold {fmt(have)})")

    # -- the form, from the same fields ---------------------------------------------------------
    def render_form(self, previous: Mapping | None = None) -> str:
        prev = dict(previous or {})
        cur_size = prev.get("size") if prev.get("size") in self.sizes else self.default_size
        try:
            cur_workers = int(prev.get("workers", self.default_workers))
        except (TypeError, ValueError):
            cur_workers = self.default_workers
        max_any = max(self.max_workers_for(s) for s in self.sizes.values())
        opts = "\n".join(
            f'<option value="{html.escape(s.name)}" data-max-workers="{self.max_workers_for(s)}"'
            f'{" selected" if s.name == cur_size else ""}>{html.escape(s.label)}</option>'
            for s in self.sizes.values())
        lim = self.limits
        return f"""
<div class="form-group">
  <label for="spark-workers">Spark workers</label>
  <input class="form-control" type="number" id="spark-workers" name="workers" min="1"
         max="{max_any}" value="{min(max(cur_workers, 1), max_any)}" required>
</div>
<div class="form-group">
  <label for="spark-size">Worker size</label>
  <select class="form-control" id="spark-size" name="size">
{opts}
  </select>
</div>
<p class="help-block">Your own Spark cluster: up to {lim.max_workers_per_user} workers,
{lim.max_cores_per_user} cores and {html.escape(lim.max_memory_per_user.upper())}B of memory.</p>
"""
