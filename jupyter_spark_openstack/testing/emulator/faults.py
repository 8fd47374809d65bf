"""Fault injection for the emulator, configured at run time (Python or ``POST /_emulator/faults``).

A fault matches requests by *kind* (``servers.create``, ``servers.get``, ``servers.list``,
``servers.delete``, ``servers.action``, ``limits``, ``flavors``, ``images``, ``networks``,
``identity.auth`` ... see :func:`.routing.request_kind`; ``*`` matches every API request and a
trailing ``*`` a prefix, e.g. ``servers.*``) and fires for the next ``count`` matches or with
probability ``rate`` (seeded, reproducible). Actions:

* ``error``: answer ``status`` (default 500) with a Nova-style fault body, *before* handling;
* ``delay``: handle the request, then hold the answer ``seconds`` (a client timeout shorter
  than that sees a timeout; the request still took effect, as on a real cloud);
* ``quota``: ``servers.create`` answered 403 "Quota exceeded for cores..." as Nova does, as if
  another client had taken the quota between our check and our create;
* ``boot_error``: the created server goes ERROR after its boot delay with ``message`` as its
  fault (like "No valid host was found");
* ``slow_boot``: the created server takes ``seconds`` to go ACTIVE;
* ``no_worker``: the server goes ACTIVE but no Spark worker ever starts;
* ``vanish``: ``seconds`` after going ACTIVE the server disappears (404, not listed).
"""

from __future__ import annotations

import fnmatch
import random
import threading
from dataclasses import asdict, dataclass

ACTIONS = ("error", "delay", "quota", "boot_error", "slow_boot", "no_worker", "vanish")
#: actions applied to a server at create time (kind is always servers.create)
SERVER_ACTIONS = ("boot_error", "slow_boot", "no_worker", "vanish")


@dataclass
class Fault:
    action: str
    kind: str = "*"
    count: int | None = None        # fire for the next N matches (None: unlimited)
    rate: float | None = None       # or with this probability
    status: int = 500
    seconds: float = 0.0
    message: str = ""
    id: int = 0
    fired: int = 0

    def __post_init__(self):
        if self.action not in ACTIONS:
            raise ValueError(f"action: {self.action!r} is not allowed; expected one of {', '.join(ACTIONS)}")
        if self.action in SERVER_ACTIONS + ("quota",):
            self.kind = "servers.create"
        if self.count is not None and int(self.count) < 0:
            raise ValueError(f"count: {self.count!r} is not allowed; expected a whole number >= 0")
        if self.rate is not None and not 0 <= float(self.rate) <= 1:
            raise ValueError(f"rate: {self.rate!r} is not allowed; expected a number from 0 to 1")
        if not 100 <= int(self.status) <= 599:
            raise ValueError(f"status: {self.status!r} is not allowed; expected an HTTP status")

    def to_dict(self) -> dict:
        return asdict(self)


class FaultSet:
    """Thread-safe list of active faults."""

    def __init__(self, seed: int = 1234):
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._next_id = 1

    def add(self, fault: Fault | None = None, **kwargs) -> Fault:
        fault = fault or Fault(**kwargs)
        with self._lock:
            fault.id = self._next_id
            self._next_id += 1
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def remove(self, fault_id: int) -> bool:
        with self._lock:
            n = len(self._faults)
            self._faults = [f for f in self._faults if f.id != fault_id]
            return len(self._faults) != n

    def list(self) -> list[dict]:
        with self._lock:
            return [f.to_dict() for f in self._faults]

    def take(self, kind: str, actions: tuple[str, ...]) -> list[Fault]:
        """Faults with one of ``actions`` that fire for a request of ``kind`` (consumes counts)."""
        out = []
        with self._lock:
            for f in list(self._faults):
                if f.action not in actions:
                    continue
                if not (f.kind == "*" or f.kind == kind or fnmatch.fnmatchcase(kind, f.kind)):
                    continue
                if f.rate is not None and self._rng.random() >= float(f.rate):
                    continue
                if f.count is not None:
                    if f.count <= 0:
                        continue
                    f.count -= 1
                f.fired += 1
                out.append(f)
                if f.count == 0:
                    self._faults.remove(f)
        return out
