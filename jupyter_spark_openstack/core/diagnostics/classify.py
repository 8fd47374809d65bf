"""Classify kernel / driver logs with the rules in ``rules.yaml``.

``classify(text)`` returns a :class:`Diagnosis` (category, title, explanation, fix, evidence).
``diagnose_kernel(kernel_id)`` reads the two per-kernel logs (the kernel's own log and the
stdout/stderr the notebook server captured, see :mod:`jupyter_spark_openstack.core.paths`) and
classifies them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml

from .. import paths
from ..errors import ValidationError

RULES_FILE = Path(__file__).with_name("rules.yaml")
LAUNCH_MARKER = "[spark-openstack] launching kernel"   # written by the capture provisioner
MAX_EVIDENCE = 8
TAIL_LINES = 200
_TELLING_RE = re.compile(
    r"(Error|Exception|FATAL|Fatal|Traceback|Caused by|refused|denied|failed|Failed|"
    r"cannot|Cannot|not found|No such|exited|Killed)")
_LOG_START_RE = re.compile(r"^(\d\d/\d\d/\d\d |\d{4}-\d\d-\d\d[ T]|\[[IWEDC] )")  # next log4j / jupyter event
_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

UNKNOWN = {
    "category": "unknown",
    "title": "No known cause found",
    "explanation": "None of the known failure patterns appears in the kernel's logs. The lines "
                   "below are the most telling ones found.",
    "fix": "Read the evidence and the full logs (log_paths); `jupyter-spark-openstack doctor` "
           "checks Java, SPARK_HOME, the kernelspecs and the master.",
}


@dataclass(frozen=True)
class Rule:
    id: str
    category: str
    title: str
    patterns: tuple[re.Pattern, ...]
    explanation: str
    fix: str
    priority: int = 0


@dataclass
class Diagnosis:
    category: str
    title: str
    explanation: str
    fix: str
    evidence: list[str] = field(default_factory=list)
    rule: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def parse_rules(data: object, source: str = "rules") -> list[Rule]:
    """Validate a rules document (``{"rules": [...]}``) into :class:`Rule` objects."""
    if not isinstance(data, dict) or not isinstance(data.get("rules"), list):
        raise ValidationError(source, type(data).__name__, "a mapping with a 'rules' list")
    rules = []
    for i, r in enumerate(data["rules"]):
        where = f"{source}: rules[{i}]"
        if not isinstance(r, dict):
            raise ValidationError(where, r, "a mapping")
        for key in ("id", "category", "title", "patterns", "explanation", "fix"):
            if not r.get(key):
                raise ValidationError(f"{where}.{key}", r.get(key), "a non-empty value")
        if not isinstance(r["patterns"], list):
            raise ValidationError(f"{where}.patterns", r["patterns"], "a list of regular expressions")
        compiled = []
        for p in r["patterns"]:
            try:
                compiled.append(re.compile(str(p)))
            except re.error as e:
                raise ValidationError(f"{where}.patterns", p, f"a valid regular expression ({e})") from None
        rules.append(Rule(id=str(r["id"]), category=str(r["category"]), title=str(r["title"]).strip(),
                          patterns=tuple(compiled), explanation=" ".join(str(r["explanation"]).split()),
                          fix=" ".join(str(r["fix"]).split()), priority=int(r.get("priority", 0))))
    return rules


@lru_cache(maxsize=4)
def _load(path: str, mtime: float) -> tuple[Rule, ...]:
    with open(path, encoding="utf-8") as f:
        return tuple(parse_rules(yaml.safe_load(f), source=path))


def load_rules(path: str | Path | None = None) -> list[Rule]:
    p = Path(path) if path else RULES_FILE
    return list(_load(str(p), p.stat().st_mtime))


def _clean(line: str) -> str:
    return _ANSI_RE.sub("", line).rstrip("\r\n").strip()[:500]


def _last_launch_sections(lines: Sequence[str]) -> tuple[Sequence[str], Sequence[str]]:
    """The kernel's current life (from its last launch line) and the life before it, which
    ends with how it died (the capture provisioner writes that before the next launch)."""
    starts = [i for i, line in enumerate(lines) if LAUNCH_MARKER in line]
    if not starts:
        return lines, ()
    last = lines[starts[-1]:]
    before = lines[starts[-2]:starts[-1]] if len(starts) > 1 else lines[:starts[-1]]
    return last, before


def _telling(lines: Sequence[str], n: int = MAX_EVIDENCE) -> list[str]:
    out: list[str] = []
    for line in reversed(lines):
        c = _clean(line)
        if c and _TELLING_RE.search(c) and c not in out and LAUNCH_MARKER not in c:
            out.append(c)
            if len(out) >= n:
                break
    if not out:
        out = [c for c in (_clean(x) for x in lines[-n:]) if c]
    return list(reversed(out))


def _match(rules: Iterable[Rule], lines: Sequence[str]) -> tuple[Rule, list[str]] | None:
    best: tuple[int, int, Rule, list[str]] | None = None
    for order, rule in enumerate(rules):
        hits: list[str] = []
        for i, line in enumerate(lines):
            if any(p.search(line) for p in rule.patterns):
                c = _clean(line)
                if c and c not in hits:
                    hits.append(c)
                # the root cause of a Java exception follows as "Caused by:" lines
                for nxt in lines[i + 1:i + 120]:
                    if _LOG_START_RE.match(nxt):
                        break
                    cn = _clean(nxt)
                    if cn.startswith("Caused by:") and cn not in hits:
                        hits.append(cn)
        if hits:
            key = (-rule.priority, order)
            if best is None or key < (best[0], best[1]):
                best = (key[0], key[1], rule, hits)
    return (best[2], best[3]) if best else None


def classify(text: str, rules: Sequence[Rule] | None = None) -> Diagnosis:
    """Diagnose a log text: the kernel's latest life. Its current life (from the last launch)
    counts first, then the life just before, which ends with the death that made the server
    restart it. Older lives never count: a failure an hour and two restarts ago is not why
    the kernel died now."""
    rules = load_rules() if rules is None else rules
    lines = text.splitlines()
    last, before = _last_launch_sections(lines)
    found = _match(rules, last)
    if found is None and before:
        found = _match(rules, before)
    if found is None:
        shown = last if any(x.strip() for x in last[1:]) or not before else before
        return Diagnosis(**UNKNOWN, evidence=_telling(shown))
    rule, hits = found
    evidence = hits[:MAX_EVIDENCE]
    return Diagnosis(category=rule.category, title=rule.title, explanation=rule.explanation,
                     fix=rule.fix, evidence=evidence, rule=rule.id)


def _read(path: Path, max_bytes: int = 2_000_000) -> str | None:
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return None


def read_kernel_logs(kernel_id: str) -> dict[str, str]:
    """``{path: text}`` of the kernel's logs that exist: the captured stdout/stderr first, then
    the kernel's own log (so that the last launch section of the joined text includes both)."""
    out = {}
    for p in (paths.kernel_output_path(kernel_id), paths.kernel_log_path(kernel_id)):
        text = _read(p)
        if text is not None:
            out[str(p)] = text
    return out


_KERNEL_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


def diagnose_kernel(kernel_id: str, rules: Sequence[Rule] | None = None) -> dict | None:
    """Diagnosis of a kernel from its logs, or None when it has no logs at all."""
    if not _KERNEL_ID_RE.match(kernel_id or ""):
        raise ValidationError("kernel_id", kernel_id, "a kernel id (letters, digits, '-', '_', '.')")
    logs = read_kernel_logs(kernel_id)
    if not logs:
        return None
    # The captured output has the raw interpreter / JVM messages; the kernel's own log names
    # the cause when the kernel caught the error.
    diag = classify("\n".join(logs.values()), rules)
    tail: list[str] = []
    for path, text in logs.items():
        lines = text.splitlines()[-TAIL_LINES:]
        tail.append(f"==> {path} <==")
        tail.extend(lines)
    return {**diag.to_dict(), "log_paths": list(logs), "log_text": "\n".join(tail)}
