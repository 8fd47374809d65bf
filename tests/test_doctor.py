"""`jupyter-spark-openstack doctor`: each broken setup fails its check (exit 1), a good one passes.

The CLI runs as a subprocess with its own Jupyter data dir holding the kernelspecs under test.
Broken setups are real: venvs without ipykernel / pyspark, a JAVA_HOME with no java, a stand-in
for an old Java (a script printing Java 8's banner: no old JDK here), a SPARK_HOME that is not a
Spark, a master on a closed port, a master host under .invalid, a Spark Connect URL with no
server. Not covered: an unresolvable own host name (it would need editing this shared machine's
/etc/hosts).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jupyter_spark_openstack.core.kernelspec import (
    ENV_CONNECT_URL,
    ENV_MASTER_URL,
    ENV_WEBUI_URL,
    METADATA_KEY,
)
from jupyter_spark_openstack.core.spark.ports import free_port
from tests._venv import make_venv


def spec(data_dir: Path, name: str, python: str = sys.executable, env: dict | None = None,
         master: str | None = None) -> None:
    d = data_dir / "kernels" / name
    d.mkdir(parents=True)
    (d / "kernel.json").write_text(json.dumps({
        "argv": [python, "-m", "jupyter_spark_openstack.kernel", "-f", "{connection_file}"],
        "display_name": name, "language": "python", "env": env or {},
        "metadata": {METADATA_KEY: {"master_url": master}}}))


@pytest.fixture
def home(tmp_path):
    data = tmp_path / "data"
    (data / "kernels").mkdir(parents=True)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SPARK_OPENSTACK_", "PYSPARK", "JUPYTER_PATH"))}
    env.update(JUPYTER_DATA_DIR=str(data), PYTHONPATH="")
    return data, env


def doctor(env: dict) -> tuple[int, dict[str, dict]]:
    out = subprocess.run([sys.executable, "-m", "jupyter_spark_openstack.cli", "doctor", "--json",
                          "--timeout", "2"], capture_output=True, text=True, env=env, timeout=180)
    assert out.returncode in (0, 1), out.stderr
    result = json.loads(out.stdout)
    assert result["ok"] == (out.returncode == 0)
    checks = {c["name"]: c for c in result["checks"]}
    for c in checks.values():
        assert c["status"] in ("ok", "warn", "fail") and c["message"]
        if c["status"] == "fail":
            assert c["fix"]
    return out.returncode, checks


def test_kernel_python_without_ipykernel(home, tmp_path):
    data, env = home
    spec(data, "bare", make_venv(tmp_path / "bare", None))
    rc, checks = doctor(env)
    assert rc == 1
    assert checks["kernelspec:bare:ipykernel"]["status"] == "fail"
    assert "No module named 'ipykernel'" in checks["kernelspec:bare:ipykernel"]["message"]
    assert checks["kernelspec:bare:pyspark"]["status"] == "fail"


def test_kernel_python_without_pyspark_or_py4j(home, tmp_path):
    data, env = home
    spec(data, "nopyspark", make_venv(tmp_path / "v1", ("pyspark",)))
    spec(data, "nopy4j", make_venv(tmp_path / "v2", ("py4j",)))
    rc, checks = doctor(env)
    assert rc == 1
    assert checks["kernelspec:nopyspark:ipykernel"]["status"] == "ok"
    assert checks["kernelspec:nopyspark:pyspark"]["status"] == "fail"
    assert "cannot import pyspark" in checks["kernelspec:nopyspark:pyspark"]["message"]
    assert "cannot import py4j" in checks["kernelspec:nopy4j:pyspark"]["message"]


def test_java_missing_or_too_old(home, tmp_path):
    data, env = home
    spec(data, "nojava", env={"JAVA_HOME": str(tmp_path / "no-jdk")})
    rc, checks = doctor(env)
    assert rc == 1 and checks["kernelspec:nojava:java"]["status"] == "fail"
    assert "no-jdk for kernelspec nojava has no bin/java" in checks["kernelspec:nojava:java"]["message"]

    # no java at all for the server: no JAVA_HOME, a PATH without java
    env2 = {**env, "PATH": str(tmp_path / "empty-bin")}
    env2.pop("JAVA_HOME", None)
    rc, checks = doctor(env2)
    assert rc == 1 and checks["java"]["status"] == "fail"

    old = tmp_path / "jdk8" / "bin"
    old.mkdir(parents=True)
    (old / "java").write_text("#!/bin/sh\necho 'openjdk version \"1.8.0_402\"' >&2\n")
    (old / "java").chmod(0o755)
    rc, checks = doctor({**env, "JAVA_HOME": str(tmp_path / "jdk8")})
    assert rc == 1 and checks["java"]["status"] == "fail"
    assert "1.8.0_402" in checks["java"]["message"] and "too old" in checks["java"]["message"]


def test_spark_home_invalid(home, tmp_path):
    _, env = home
    rc, checks = doctor({**env, "SPARK_HOME": str(tmp_path)})
    assert rc == 1 and checks["spark_home"]["status"] == "fail"
    assert str(tmp_path) in checks["spark_home"]["message"]


def test_master_unreachable_and_unknown_host(home):
    _, env = home
    port = free_port()
    rc, checks = doctor({**env, ENV_MASTER_URL: f"spark://127.0.0.1:{port}"})
    assert rc == 1 and checks["master"]["status"] == "fail"
    assert f"127.0.0.1:{port}" in checks["master"]["message"]
    rc, checks = doctor({**env, ENV_MASTER_URL: "spark://no-such-host.invalid:7077"})
    assert rc == 1 and "does not resolve" in checks["master"]["message"]


def test_bad_master_setting_is_a_failed_check_not_a_crash(home):
    _, env = home
    rc, checks = doctor({**env, ENV_MASTER_URL: "http://wrong"})
    assert rc == 1 and ENV_MASTER_URL in checks["master"]["message"]


def test_connect_kernelspec_without_a_server_fails_its_connect_check(home):
    data, env = home
    port = free_port()  # nothing listens there
    spec(data, "pyspark-connect", env={ENV_CONNECT_URL: f"sc://localhost:{port}"})
    spec(data, "pyspark-classic", env={ENV_CONNECT_URL: ""}, master="local[*]")  # no Connect check
    rc, checks = doctor(env)
    assert rc == 1
    c = checks["kernelspec:pyspark-connect:connect"]
    assert c["status"] == "fail" and f"localhost:{port}" in c["message"], c
    assert "start the Connect server" in c["fix"]
    assert "kernelspec:pyspark-connect:executor-python" not in checks  # not run without a server
    assert not any(n.startswith("kernelspec:pyspark-classic:connect") for n in checks)


def test_bad_timeout_is_exit_2(home):
    _, env = home
    out = subprocess.run([sys.executable, "-m", "jupyter_spark_openstack.cli", "doctor", "--timeout", "0"],
                         capture_output=True, text=True, env=env)
    assert out.returncode == 2 and "--timeout" in out.stderr


@pytest.mark.spark
def test_good_setup_passes_and_wrong_cluster_fails(home, spark_cluster):
    data, env = home
    env.update({ENV_MASTER_URL: spark_cluster["master_url"], ENV_WEBUI_URL: spark_cluster["webui_url"]})
    spec(data, "pyspark", master=spark_cluster["master_url"])
    rc, checks = doctor(env)
    bad = {n: c for n, c in checks.items() if c["status"] != "ok"}
    assert rc == 0 and bad == {}, bad
    assert "2 alive worker(s)" in checks["master"]["message"]
    assert checks["kernelspec:pyspark:cluster"]["status"] == "ok"

    spec(data, "elsewhere", master=f"spark://127.0.0.1:{free_port()}")
    rc, checks = doctor(env)
    assert rc == 1
    assert checks["kernelspec:elsewhere:cluster"]["status"] == "fail"
    assert spark_cluster["master_url"] in checks["kernelspec:elsewhere:cluster"]["fix"]
