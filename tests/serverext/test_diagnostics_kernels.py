"""Dead-kernel diagnostics made by really breaking kernels started through a real jupyter_server.

Each test installs a PySpark kernelspec that is broken in one way, starts the kernel with
``POST /api/kernels``, and reads ``GET spark-openstack/api/kernels/{id}/diagnostics`` until
the category shows; the same captured log is then classified by the CLI. The kernels without a
JVM (missing modules, no java, old java, kill -9) are fast; the JVM ones share the session
cluster or need none.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from jupyter_spark_openstack.core import paths
from jupyter_spark_openstack.core.spark.ports import free_port
from tests._venv import make_venv

from .conftest import (
    eager_argv,
    group_alive,
    install_spec,
    jp_test,
    kernel_pgid,
    poll_diagnostics,
    start_kernel,
)

LOCAL = {"SPARK_LOCAL_IP": "127.0.0.1"}  # the driver binds and advertises loopback only
# pytest-jupyter puts this interpreter's sys.path in PYTHONPATH; a broken venv must not see it
NO_PYTHONPATH = {"PYTHONPATH": ""}


def cli_category(kernel_id: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "jupyter_spark_openstack.cli", "diagnose",
                          str(paths.kernel_output_path(kernel_id)), "--json"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


async def diagnose(jp_fetch, jp_serverapp, name: str, category: str, timeout: float = 90.0) -> dict:
    kid = await start_kernel(jp_fetch, name)
    pgid = kernel_pgid(jp_serverapp, kid)
    try:
        body = await poll_diagnostics(jp_fetch, kid, category, timeout)
    finally:
        await jp_fetch("api", "kernels", kid, method="DELETE", raise_error=False)
        for _ in range(100):
            if not group_alive(pgid):
                break
            await asyncio.sleep(0.1)
    assert group_alive(pgid) == [], "kernel processes left behind"
    assert body.get("category") == category, json.dumps(body, indent=1)[:3000]
    assert body["kernel_id"] == kid and body["evidence"] and body["fix"] and body["explanation"]
    assert str(paths.kernel_output_path(kid)) in body["log_paths"]
    assert cli_category(kid)["category"] == category
    return body


# ---- no JVM needed ----------------------------------------------------------------------------
@jp_test
async def test_missing_ipykernel(jp_fetch, jp_serverapp, jp_data_dir, tmp_path):
    bare = make_venv(tmp_path / "bare", None)
    install_spec(jp_data_dir, "no-ipykernel", [bare, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                 env=NO_PYTHONPATH)
    body = await diagnose(jp_fetch, jp_serverapp, "no-ipykernel", "missing-ipykernel")
    assert any("No module named ipykernel_launcher" in e for e in body["evidence"])
    assert body["kernel_name"] == "no-ipykernel"


@jp_test
async def test_missing_pyspark(jp_fetch, jp_serverapp, jp_data_dir, tmp_path):
    py = make_venv(tmp_path / "nopyspark", ("pyspark",))
    install_spec(jp_data_dir, "no-pyspark", eager_argv(py), env={**LOCAL, **NO_PYTHONPATH})
    body = await diagnose(jp_fetch, jp_serverapp, "no-pyspark", "missing-pyspark")
    assert "ModuleNotFoundError: No module named 'pyspark'" in body["evidence"]


@jp_test
async def test_missing_py4j(jp_fetch, jp_serverapp, jp_data_dir, tmp_path):
    py = make_venv(tmp_path / "nopy4j", ("py4j",))
    install_spec(jp_data_dir, "no-py4j", eager_argv(py), env={**LOCAL, **NO_PYTHONPATH})
    body = await diagnose(jp_fetch, jp_serverapp, "no-py4j", "missing-py4j")
    assert "ModuleNotFoundError: No module named 'py4j'" in body["evidence"]


@jp_test
async def test_java_not_found(jp_fetch, jp_serverapp, jp_data_dir, tmp_path):
    install_spec(jp_data_dir, "no-java", eager_argv(), env={**LOCAL, "JAVA_HOME": str(tmp_path / "no-jdk")})
    body = await diagnose(jp_fetch, jp_serverapp, "no-java", "java-not-found")
    assert any("no-jdk/bin/java: No such file or directory" in e for e in body["evidence"])


OLD_JAVA = r"""#!/bin/sh
# Emulates a Java 8 runtime (this machine has no real old JDK): its -version banner, and the
# error a real Java 8 prints when asked to load Spark 4's launcher (class file version 61).
case "$1" in -version|--version)
  echo 'openjdk version "1.8.0_402"' >&2
  echo 'OpenJDK Runtime Environment (build 1.8.0_402-b06)' >&2
  echo 'OpenJDK 64-Bit Server VM (build 25.402-b06, mixed mode)' >&2; exit 0;;
esac
echo 'Error: A JNI error has occurred, please check your installation and try again' >&2
echo 'Exception in thread "main" java.lang.UnsupportedClassVersionError: org/apache/spark/launcher/Main has been compiled by a more recent version of the Java Runtime (class file version 61.0), this version of the Java Runtime only recognizes class file versions up to 52.0' >&2
exit 1
"""


def fake_old_java(root: Path) -> str:
    (root / "bin").mkdir(parents=True)
    java = root / "bin" / "java"
    java.write_text(OLD_JAVA)
    java.chmod(0o755)
    return str(root)


@jp_test
async def test_java_version_unsupported(jp_fetch, jp_serverapp, jp_data_dir, tmp_path):
    """Emulated: JAVA_HOME points at a script standing in for Java 8 (see OLD_JAVA); Spark's own
    launcher script runs it exactly as it would run a real old java."""
    install_spec(jp_data_dir, "old-java", eager_argv(), env={**LOCAL, "JAVA_HOME": fake_old_java(tmp_path / "jdk8")})
    body = await diagnose(jp_fetch, jp_serverapp, "old-java", "java-version-unsupported")
    assert any("UnsupportedClassVersionError" in e for e in body["evidence"])


@jp_test
async def test_kernel_killed_by_signal_9(jp_fetch, jp_serverapp, jp_data_dir):
    """What the OOM killer does to a kernel: SIGKILL from outside the notebook server."""
    install_spec(jp_data_dir, "pyspark-plain", [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"])
    kid = await start_kernel(jp_fetch, "pyspark-plain")
    km = jp_serverapp.kernel_manager
    pid = km.get_kernel(kid).provisioner.pid
    await asyncio.sleep(1.0)
    os.kill(pid, signal.SIGKILL)
    try:
        body = await poll_diagnostics(jp_fetch, kid, "out-of-memory", timeout=60)
        assert body["category"] == "out-of-memory", body
        assert any(f"(pid {pid}) killed by signal 9 (SIGKILL, not sent by the notebook server" in e
                   for e in body["evidence"])
    finally:
        await jp_fetch("api", "kernels", kid, method="DELETE", raise_error=False)
    assert cli_category(kid)["category"] == "out-of-memory"


@jp_test
async def test_shutdown_is_not_a_failure(jp_fetch, jp_serverapp, jp_data_dir):
    install_spec(jp_data_dir, "pyspark-plain", [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"])
    kid = await start_kernel(jp_fetch, "pyspark-plain")
    await asyncio.sleep(1.0)
    await jp_fetch("api", "kernels", kid, method="DELETE")
    r = await jp_fetch("spark-openstack", "api", "kernels", kid, "diagnostics")
    body = json.loads(r.body)
    assert body["alive"] is False and body["category"] != "out-of-memory"
    assert "launching kernel" in Path(paths.kernel_output_path(kid)).read_text()


@jp_test
async def test_unknown_kernel_is_404_and_bad_id_400(jp_fetch):
    from tornado.httpclient import HTTPClientError

    with pytest.raises(HTTPClientError) as e:
        await jp_fetch("spark-openstack", "api", "kernels", "0000-no-such-kernel", "diagnostics")
    assert e.value.code == 404
    assert "no kernel 0000-no-such-kernel" in json.loads(e.value.response.body)["message"]


@jp_test
async def test_non_pyspark_kernels_are_not_captured(jp_fetch, jp_serverapp, jp_data_dir):
    install_spec(jp_data_dir, "plain", [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                 pyspark=False)
    kid = await start_kernel(jp_fetch, "plain")
    try:
        assert not paths.kernel_output_path(kid).exists()
    finally:
        await jp_fetch("api", "kernels", kid, method="DELETE", raise_error=False)


# ---- a driver JVM ------------------------------------------------------------------------------
@pytest.mark.spark
@jp_test
async def test_master_unreachable(jp_fetch, jp_serverapp, jp_data_dir):
    install_spec(jp_data_dir, "closed-port", eager_argv(), env={
        **LOCAL, "TEST_SPARK_MASTER": f"spark://127.0.0.1:{free_port()}"})
    body = await diagnose(jp_fetch, jp_serverapp, "closed-port", "master-unreachable")
    assert any("Connection refused" in e for e in body["evidence"])


@pytest.mark.spark
@jp_test
async def test_unknown_host(jp_fetch, jp_serverapp, jp_data_dir):
    # .invalid never resolves (RFC 2606): no packet goes anywhere but the resolver
    install_spec(jp_data_dir, "bad-host", eager_argv(), env={
        **LOCAL, "TEST_SPARK_MASTER": "spark://no-such-host.invalid:7077"})
    body = await diagnose(jp_fetch, jp_serverapp, "bad-host", "unknown-host")
    assert any("UnknownHostException: no-such-host.invalid" in e for e in body["evidence"])


@pytest.mark.spark
@jp_test
async def test_driver_bind_failed(jp_fetch, jp_serverapp, jp_data_dir):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        install_spec(jp_data_dir, "bind-fail", eager_argv(), env={**LOCAL, "TEST_SPARK_CONF": json.dumps({
            "spark.driver.bindAddress": "127.0.0.1", "spark.driver.host": "127.0.0.1",
            "spark.driver.port": str(port), "spark.port.maxRetries": "0"})})
        body = await diagnose(jp_fetch, jp_serverapp, "bind-fail", "driver-bind-failed")
    assert any(f"Service 'sparkDriver' failed after 0 retries (starting from {port})" in e
               for e in body["evidence"])


@pytest.mark.spark
@jp_test
async def test_insufficient_resources(jp_fetch, jp_serverapp, jp_data_dir, spark_cluster):
    """The session cluster's workers offer 1g each; the kernel asks 2g executors."""
    install_spec(jp_data_dir, "too-big", eager_argv(), env={
        **LOCAL, "TEST_SPARK_MASTER": spark_cluster["master_url"], "TEST_SPARK_JOB": "1",
        "TEST_SPARK_CONF": json.dumps({"spark.executor.memory": "2g", "spark.starvation.timeout": "2s",
                                       "spark.driver.host": "127.0.0.1", "spark.ui.enabled": "false"})})
    body = await diagnose(jp_fetch, jp_serverapp, "too-big", "insufficient-resources", timeout=120)
    assert any("Initial job has not accepted any resources" in e for e in body["evidence"])


def other_python() -> str | None:
    """An interpreter of another minor version than this one (pyenv's, or python3.X on PATH)."""
    import glob
    import shutil

    mine = f"{sys.version_info[0]}.{sys.version_info[1]}"
    candidates = sorted(glob.glob("/root/.pyenv/versions/3.*/bin/python3.[0-9]*"))
    candidates += [p for v in range(9, 15) if (p := shutil.which(f"python3.{v}"))]
    for c in candidates:
        if c.endswith("-config") or mine in Path(c).name:
            continue
        try:
            out = subprocess.run([c, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                 capture_output=True, text=True, timeout=20)
        except OSError:
            continue
        v = out.stdout.strip()
        if out.returncode == 0 and v != mine and v.startswith("3.") and int(v.split(".")[1]) >= 9:
            return c
    return None


@pytest.mark.spark
@jp_test
async def test_version_mismatch(jp_fetch, jp_serverapp, jp_data_dir):
    """Driver on this Python, Python workers on another minor version (PYSPARK_PYTHON)."""
    other = other_python()
    if not other:
        pytest.skip("no Python of another minor version on this machine")
    install_spec(jp_data_dir, "py-mismatch", eager_argv(), env={
        **LOCAL, **NO_PYTHONPATH, "TEST_SPARK_MASTER": "local[1]", "TEST_SPARK_JOB": "1", "PYSPARK_PYTHON": other,
        "TEST_SPARK_CONF": json.dumps({"spark.task.maxFailures": "1", "spark.ui.enabled": "false"})})
    body = await diagnose(jp_fetch, jp_serverapp, "py-mismatch", "version-mismatch", timeout=120)
    assert any("PYTHON_VERSION_MISMATCH" in e for e in body["evidence"])


@pytest.fixture
def secret_master(tmp_path_factory):
    """A master alone (no worker needed to be refused), started with spark.authenticate secret A."""
    from jupyter_spark_openstack.core.localcluster import LocalCluster

    cluster = LocalCluster(tmp_path_factory.mktemp("auth-master"))
    state = cluster.start_master(secret="secret-A-" + os.urandom(4).hex())
    try:
        yield state
    finally:
        cluster.stop()


@pytest.mark.spark
@jp_test
async def test_auth_failed(secret_master, jp_fetch, jp_serverapp, jp_data_dir):
    install_spec(jp_data_dir, "wrong-secret", eager_argv(), env={
        **LOCAL, "TEST_SPARK_MASTER": secret_master["master_url"],
        "TEST_SPARK_CONF": json.dumps({"spark.authenticate": "true", "spark.authenticate.secret": "secret-B",
                                       "spark.driver.host": "127.0.0.1", "spark.ui.enabled": "false"})})
    body = await diagnose(jp_fetch, jp_serverapp, "wrong-secret", "auth-failed", timeout=120)
    assert any("SaslException" in e or "Authentication failed" in e for e in body["evidence"])
