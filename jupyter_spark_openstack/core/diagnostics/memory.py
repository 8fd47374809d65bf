"""A kernel's memory, read from where it ran: its memory cgroup's counters and its own peak RSS.

When the Linux OOM killer ends a kernel it sends SIGKILL, and the kernel cannot say why. The
cgroup it ran in can. The capture provisioner (``serverext/capture.py``) reads the cgroup's
OOM-kill count when it launches a kernel and again when the kernel dies. It also reads the
kernel's peak RSS (``VmHWM``) each time the server polls the kernel (every few seconds), since
a dead process's own counters are gone. A death with more OOM kills than at launch
is an out-of-memory kill, proven, and the line it writes names the limit and the peaks.

Both cgroup versions are read:

- v2: ``memory.events`` (``oom_kill``), ``memory.max``, ``memory.peak``;
- v1: ``memory.oom_control`` (``oom_kill``), ``memory.limit_in_bytes``,
  ``memory.max_usage_in_bytes``.

No jupyter import.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
_UNLIMITED = 1 << 62  # v1 reports "no limit" as a page-rounded 2**63 - 1


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _int(text: str | None) -> int | None:
    try:
        return int(text.strip()) if text is not None else None
    except ValueError:
        return None


def _field(text: str | None, key: str) -> int | None:
    for line in (text or "").splitlines():
        k, _, v = line.partition(" ")
        if k == key:
            return _int(v)
    return None


@dataclass(frozen=True)
class MemoryCgroup:
    """The memory cgroup a process ran in: its directory, and the cgroup version (1 or 2)."""

    path: Path
    version: int

    def oom_kills(self) -> int | None:
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        return _field(_read(self.path / name), "oom_kill")

    def limit(self) -> int | None:
        """Bytes, or None when there is no limit (or it cannot be read)."""
        if self.version == 2:
            text = _read(self.path / "memory.max")
            return None if text is None or text.strip() == "max" else _int(text)
        v = _int(_read(self.path / "memory.limit_in_bytes"))
        return None if v is None or v >= _UNLIMITED else v

    def peak(self) -> int | None:
        name = "memory.peak" if self.version == 2 else "memory.max_usage_in_bytes"
        return _int(_read(self.path / name))


def cgroup_of(pid: int, root: Path = CGROUP_ROOT) -> MemoryCgroup | None:
    """The memory cgroup of ``pid`` (read now: call while it lives), or None."""
    text = _read(Path(f"/proc/{pid}/cgroup"))
    if text is None:
        return None
    v2 = None
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        rel = path.lstrip("/")
        if "memory" in controllers.split(","):
            d = root / "memory" / rel
            if (d / "memory.limit_in_bytes").exists():
                return MemoryCgroup(d, 1)
        elif controllers == "" and path:
            v2 = rel
    if v2 is not None:
        for base in (root, root / "unified"):
            d = base / v2
            if (d / "memory.max").exists():
                return MemoryCgroup(d, 2)
    return None


def peak_rss(pid: int) -> int | None:
    """The process's peak resident set size in bytes (``VmHWM``), or None."""
    for line in (_read(Path(f"/proc/{pid}/status")) or "").splitlines():
        if line.startswith("VmHWM:"):
            parts = line.split()
            return int(parts[1]) * 1024 if len(parts) >= 2 and parts[1].isdigit() else None
    return None


def mib(n: int | None) -> str:
    return "unknown" if n is None else f"{n / (1 << 20):.0f} MiB"


@dataclass
class MemoryWatch:
    """What the capture provisioner keeps about one kernel life's memory."""

    cgroup: MemoryCgroup | None
    oom_kills_at_launch: int | None
    peak_rss: int | None = None

    @classmethod
    def start(cls, pid: int) -> MemoryWatch:
        cg = cgroup_of(pid)
        return cls(cg, cg.oom_kills() if cg else None, peak_rss(pid))

    def sample(self, pid: int) -> None:
        rss = peak_rss(pid)
        if rss is not None and (self.peak_rss is None or rss > self.peak_rss):
            self.peak_rss = rss

    def oom_kills_since_launch(self) -> int | None:
        if self.cgroup is None or self.oom_kills_at_launch is None:
            return None
        now = self.cgroup.oom_kills()
        return None if now is None else now - self.oom_kills_at_launch

    def report(self, kernel_id: str, pid: int | None, signum: int) -> str:
        """One line on the kernel's memory at its death. It starts with ``OOM_MARKER`` when the
        cgroup counted an OOM kill during this life (the rule in rules.yaml keys on that)."""
        kills = self.oom_kills_since_launch()
        cg = self.cgroup
        where = (f"its memory cgroup {cg.path} (limit {mib(cg.limit())}, peak usage "
                 f"{mib(cg.peak())})" if cg else "no readable memory cgroup")
        facts = (f"{where}; the kernel's own peak RSS when last seen alive {mib(self.peak_rss)} "
                 f"(VmHWM, read every few seconds: a last fast allocation is not in it)")
        if kills:
            return (f"{OOM_MARKER} kernel {kernel_id} (pid {pid}) was killed by the OOM killer "
                    f"(signal {signum}): {kills} OOM kill(s) in {facts}\n")
        return (f"[spark-openstack] memory of kernel {kernel_id} (pid {pid}) at its death: "
                f"no OOM kill counted in {facts}\n")


OOM_MARKER = "[spark-openstack] out of memory:"
