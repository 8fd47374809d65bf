"""The diagnostics rules and classifier, on log excerpts from real breakages made on this machine
(see tests/data/diagnostics/README.md for how each was made), and the `diagnose` CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from jupyter_spark_openstack.cli import main
from jupyter_spark_openstack.core.diagnostics import classify, load_rules
from jupyter_spark_openstack.core.diagnostics.classify import LAUNCH_MARKER, parse_rules
from jupyter_spark_openstack.core.errors import ValidationError

DATA = Path(__file__).resolve().parent / "data" / "diagnostics"
REQUIRED = {"missing-ipykernel", "missing-py4j", "missing-pyspark", "java-not-found",
            "java-version-unsupported", "master-unreachable", "unknown-host", "driver-bind-failed",
            "insufficient-resources", "auth-failed", "out-of-memory", "version-mismatch"}
FIXTURES = sorted(p.stem for p in DATA.glob("*.log"))

# a telling line each fixture's evidence must show
EXPECTED_EVIDENCE = {
    "auth-failed": "Mismatched response",
    "driver-bind-failed": "Service 'sparkDriver' failed after 0 retries",
    "insufficient-resources": "Initial job has not accepted any resources",
    "master-unreachable": "Connection refused",
    "out-of-memory": "java.lang.OutOfMemoryError: Java heap space",
    "unknown-host": "UnknownHostException: no-such-host.invalid",
    "version-mismatch": "Python in worker has different version: 3.12 than that in driver: 3.11",
}


def test_rules_cover_every_required_category():
    rules = load_rules()
    assert REQUIRED <= {r.category for r in rules}
    assert len({r.id for r in rules}) == len(rules)
    for r in rules:
        assert r.title and r.explanation and r.fix and r.patterns


def test_fixtures_are_the_ones_documented():
    assert set(FIXTURES) == set(EXPECTED_EVIDENCE)


@pytest.mark.parametrize("name", FIXTURES)
def test_real_logs_are_classified(name):
    diag = classify((DATA / f"{name}.log").read_text())
    assert diag.category == name
    assert any(EXPECTED_EVIDENCE[name] in e for e in diag.evidence), diag.evidence
    assert len(diag.evidence) <= 8


@pytest.mark.parametrize("name", FIXTURES)
def test_cli_json(name, capsys):
    assert main(["diagnose", str(DATA / f"{name}.log"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"category", "explanation", "fix", "evidence"} <= set(out)
    assert out["category"] == name


def test_cli_text_and_exit_codes(tmp_path):
    log = tmp_path / "k.log"
    log.write_text("/usr/bin/python2: No module named ipykernel\n")
    exe = [sys.executable, "-m", "jupyter_spark_openstack.cli", "diagnose"]
    out = subprocess.run([*exe, str(log)], capture_output=True, text=True)
    assert out.returncode == 0
    assert "category:    missing-ipykernel" in out.stdout
    assert "/usr/bin/python2: No module named ipykernel" in out.stdout
    missing = subprocess.run([*exe, str(tmp_path / "nope.log")], capture_output=True, text=True)
    assert missing.returncode == 2
    assert "LOGFILE" in missing.stderr and "nope.log" in missing.stderr


def test_unknown_keeps_the_telling_lines():
    text = "starting\nall good so far\nSomething odd: FooError: the frobnicator failed\nbye\n"
    diag = classify(text)
    assert diag.category == "unknown"
    assert diag.evidence == ["Something odd: FooError: the frobnicator failed"]


def test_the_last_launch_counts_first():
    old = (DATA / "master-unreachable.log").read_text()
    text = (f"{LAUNCH_MARKER} k1 (pyspark) at t0: python -m x\n{old}"
            f"{LAUNCH_MARKER} k1 (pyspark) at t1: python -m x\n"
            "ModuleNotFoundError: No module named 'py4j'\n")
    assert classify(text).category == "missing-py4j"
    # a last launch with nothing in it: the life just before, which ended in the failure
    text2 = f"{LAUNCH_MARKER} k1 (pyspark) at t0: x\n{old}{LAUNCH_MARKER} k1 (pyspark) at t1: x\nhello\n"
    assert classify(text2).category == "master-unreachable"


def test_only_the_latest_life_counts():
    """A restarted kernel's diagnosis is about its latest life: the current one, or the one
    whose death made the server restart it; never a failure of a life before those."""
    old = (DATA / "master-unreachable.log").read_text()
    life = f"{LAUNCH_MARKER} k1 (pyspark) at t{{}}: x\n"
    killed = ("[spark-openstack] kernel k1 (pid 2) killed by signal 9 (SIGKILL, not sent by the "
              "notebook server) at t\n")
    # 1: master unreachable; 2: ran fine, restarted by her; 3: running fine
    fine = life.format(0) + old + life.format(1) + "hello\n" + life.format(2) + "ready\n"
    assert classify(fine).category == "unknown"
    # 1: master unreachable; 2: killed (SIGKILL, not by the server); 3: running fine
    died = life.format(0) + old + life.format(1) + "hello\n" + killed + life.format(2) + "ready\n"
    d = classify(died)
    assert d.category == "out-of-memory" and d.evidence == [killed.strip()], d


def test_signal_9_sent_by_the_server_is_not_oom():
    ours = "[spark-openstack] kernel k (pid 1) killed by signal 9 (SIGKILL, sent by the notebook server) at t\n"
    theirs = ours.replace("sent by", "not sent by")
    assert classify(ours).category == "unknown"
    assert classify(theirs).category == "out-of-memory"


@pytest.mark.parametrize("doc, field", [
    ({"nope": []}, "rules.yaml"),
    ({"rules": [{"id": "x"}]}, "rules[0].category"),
    ({"rules": [{"id": "x", "category": "c", "title": "t", "patterns": ["("], "explanation": "e",
                 "fix": "f"}]}, "rules[0].patterns"),
])
def test_bad_rules_are_refused_with_the_field(doc, field):
    with pytest.raises(ValidationError) as e:
        parse_rules(doc, source="rules.yaml")
    assert field in str(e.value)
