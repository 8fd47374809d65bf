"""The PySpark kernel started from its installed kernelspec by jupyter_client's KernelManager:
answers at once, runs real Spark jobs on the session cluster, and fails loudly and quickly."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import time
import uuid
from pathlib import Path

import psutil
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

from jupyter_spark_openstack.core.kernelspec import (
    ENV_CONF,
    ENV_MASTER_URL,
    ENV_SECRET_FILE,
    install_kernelspec,
)
from jupyter_spark_openstack.core.models import KernelSettings
from jupyter_spark_openstack.core.spark.master_client import fetch_master_state
from jupyter_spark_openstack.core.spark.ports import free_port
from jupyter_spark_openstack.kernel.classic import session_properties

STATUS = "__import__('jupyter_spark_openstack.kernel').kernel.session_status()"


@contextlib.contextmanager
def running_kernel(tmp_path: Path, settings: KernelSettings, env: dict | None = None):
    """Install ``settings`` into a tmp prefix, start it with KernelManager, yield a handle;
    on exit shut the kernel down and check that it and its children are gone."""
    kdir = install_kernelspec(settings, prefix=tmp_path / "prefix").parent
    kid = str(uuid.uuid4())
    log_dir = tmp_path / "kernel-logs"
    ksm = KernelSpecManager(kernel_dirs=[str(kdir)])
    km = KernelManager(kernel_name=settings.name, kernel_spec_manager=ksm,
                       connection_file=str(tmp_path / f"kernel-{kid}.json"))
    km.start_kernel(env={**os.environ, "SPARK_OPENSTACK_KERNEL_LOG_DIR": str(log_dir), **(env or {})})
    kc = km.client()
    kc.start_channels()
    procs: list[psutil.Process] = []
    try:
        kc.wait_for_ready(timeout=60)
        kernel_proc = psutil.Process(km.provisioner.process.pid)
        handle = {"km": km, "kc": kc, "kid": kid, "log": log_dir / f"kernel-{kid}.log",
                  "proc": kernel_proc}
        yield handle
        with contextlib.suppress(psutil.Error):
            procs = [kernel_proc, *kernel_proc.children(recursive=True)]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)
        km.cleanup_resources()
    gone, alive = psutil.wait_procs(procs, timeout=15)
    assert not alive, f"left running after shutdown: {[p.pid for p in alive]}"


def execute(kc, code: str, timeout: float = 180):
    """Run ``code``; return (reply content, text/plain result or None, stdout text)."""
    outputs: dict = {"result": None, "stdout": ""}

    def hook(msg):
        if msg["msg_type"] == "execute_result":
            outputs["result"] = msg["content"]["data"]["text/plain"]
        elif msg["msg_type"] == "stream" and msg["content"]["name"] == "stdout":
            outputs["stdout"] += msg["content"]["text"]

    reply = kc.execute_interactive(code, timeout=timeout, output_hook=hook)
    return reply["content"], outputs["result"], outputs["stdout"]


@pytest.mark.spark
def test_kernel_answers_at_once_then_runs_spark_on_the_cluster(tmp_path, spark_cluster):
    settings = KernelSettings.parse(master=spark_cluster["master_url"], name="pyspark-test",
                                    executor_memory="512m", cores_max=2,
                                    conf=["spark.sql.shuffle.partitions=2"],
                                    webui_url=spark_cluster["webui_url"])
    with running_kernel(tmp_path, settings) as k:
        kc = k["kc"]
        # 1+1 is answered while the SparkSession is still being created (state read in the
        # same cell, by the kernel itself).
        reply, result, _ = execute(kc, f"(1 + 1, {STATUS}['state'])")
        assert reply["status"] == "ok"
        assert result == "(2, 'starting')"

        # Touching `sc` waits for the session, then runs a real job on the cluster.
        reply, result, stdout = execute(kc, "sc.parallelize(range(1000)).sum()")
        assert reply["status"] == "ok", reply
        assert result == "499500"
        assert "waiting for SparkSession" in stdout

        reply, result, _ = execute(kc, f"({STATUS}['app_name'], spark.range(1000).count(), "
                                        "type(spark).__name__, type(sc).__name__, "
                                        "sc.getConf().get('spark.driver.host'))")
        assert reply["status"] == "ok", reply
        app_name, count, tspark, tsc, driver_host = eval(result)  # a tuple literal
        assert count == 1000
        assert (tspark, tsc) == ("SparkSession", "SparkContext")  # proxies swapped for the real objects
        assert driver_host == "127.0.0.1"
        assert app_name.endswith("-" + k["kid"][:8])

        # The app is on the master with the kernelspec's cores and executor memory.
        deadline = time.monotonic() + 60
        app = None
        while time.monotonic() < deadline:
            state = fetch_master_state(spark_cluster["webui_url"])
            app = next((a for a in state.active_apps if a.name == app_name), None)
            if app and app.cores == 2:
                break
            time.sleep(0.5)
        assert app is not None, f"{app_name} not among {[a.name for a in state.active_apps]}"
        assert app.cores == 2
        assert app.memory_per_executor_mb == 512

        log_text = k["log"].read_text()
        assert "SparkSession ready after" in log_text
        jvm_pid = int(re.search(r"driver JVM pid (\d+)", log_text).group(1))
        assert jvm_pid in [c.pid for c in k["proc"].children(recursive=True)]
    # after shutdown: the app is gone from the master, the JVM stopped cleanly, no scratch dir
    assert not psutil.pid_exists(jvm_pid) or psutil.Process(jvm_pid).status() == psutil.STATUS_ZOMBIE
    state = fetch_master_state(spark_cluster["webui_url"])
    assert app_name not in [a.name for a in state.active_apps]
    assert f"driver JVM (pid {jvm_pid}) exited" in k["log"].read_text()
    assert glob.glob(f"/tmp/spark-openstack-{app_name}-*") == []


@pytest.mark.spark
def test_classic_kernel_shows_live_progress_under_the_cell(tmp_path, spark_cluster):
    """A job of 40 slow tasks: the status tracker, read by the kernel's own thread, feeds a
    display that appears, moves and ends as a one-line summary."""
    from tests._progress import assert_live_progress

    settings = KernelSettings.parse(master=spark_cluster["master_url"], name="pyspark-progress",
                                    executor_memory="512m", cores_max=2)
    with running_kernel(tmp_path, settings) as k:
        reply, _, _ = execute(k["kc"], "sc.parallelize(range(4), 2).count()")   # session up
        assert reply["status"] == "ok", reply
        msgs: list[dict] = []
        reply = k["kc"].execute_interactive(
            "print(sc.parallelize(range(40), 40).map(lambda x: (__import__('time').sleep(0.15), x)[1]).sum())",
            timeout=180, output_hook=msgs.append)
        assert reply["content"]["status"] == "ok", reply
        assert any(m["msg_type"] == "stream" and m["content"]["text"].strip() == "780" for m in msgs)
        assert_live_progress(msgs, 40, "job")


def test_unreachable_master_is_a_clear_error_in_the_cell_and_the_log(tmp_path):
    port = free_port()
    master = f"spark://127.0.0.1:{port}"
    settings = KernelSettings.parse(master=master, name="pyspark-broken")
    with running_kernel(tmp_path, settings) as k:
        # bounded: execute_interactive raises TimeoutError if the kernel hangs
        reply, _, _ = execute(k["kc"], "spark.range(10).count()", timeout=90)
        assert reply["status"] == "error"
        assert reply["ename"] == "SparkStartError"
        assert reply["evalue"].startswith("SparkSession could not start: ")
        assert master in reply["evalue"] and "not reachable" in reply["evalue"]
        assert str(k["log"]) in reply["evalue"]
        # the kernel is not dead: it keeps answering, and the error stays the same
        reply, result, _ = execute(k["kc"], f"(1 + 1, {STATUS}['state'])")
        assert result == "(2, 'failed')"
        reply, _, _ = execute(k["kc"], "sc.defaultParallelism")
        assert reply["status"] == "error" and master in reply["evalue"]
        # no JVM was started for a master that is not there
        assert [p for p in k["proc"].children(recursive=True) if "java" in p.name()] == []
        log_text = k["log"].read_text()
    assert re.search(r"^\S+ ERROR SparkSession could not start: Spark master "
                     + re.escape(master) + " is not reachable", log_text, re.M)
    assert "Traceback" in log_text


def test_no_java_is_a_clear_error(tmp_path):
    settings = KernelSettings.parse(master="local[1]", name="pyspark-nojava")
    with running_kernel(tmp_path, settings, env={"PATH": "/nonexistent", "JAVA_HOME": ""}) as k:
        reply, _, _ = execute(k["kc"], "spark.version", timeout=60)
        assert reply["status"] == "error"
        assert "SparkSession could not start: Java not found" in reply["evalue"]
        assert "Java not found" in k["log"].read_text()


def test_session_properties_secret_and_loopback_binding(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("abc123\n")
    env = {ENV_MASTER_URL: "spark://localhost:7077",
           ENV_CONF: json.dumps({"spark.executor.memory": "1g"}),
           ENV_SECRET_FILE: str(secret)}
    props = session_properties(env, "pyspark-u-12345678")
    assert props["spark.authenticate"] == "true"
    assert props["spark.authenticate.secret"] == "abc123"
    assert props["spark.driver.host"] == props["spark.driver.bindAddress"] == "127.0.0.1"
    assert props["spark.master"] == "spark://localhost:7077"
    assert props["spark.app.name"] == "pyspark-u-12345678"
    assert props["spark.executor.memory"] == "1g"
    # a remote master: no loopback binding is forced; SPARK_LOCAL_IP wins when set
    remote = session_properties({ENV_MASTER_URL: "spark://10.0.0.5:7077"}, "a")
    assert "spark.driver.host" not in remote
    pinned = session_properties({ENV_MASTER_URL: "spark://10.0.0.5:7077",
                                 "SPARK_LOCAL_IP": "10.0.0.9"}, "a")
    assert pinned["spark.driver.bindAddress"] == "10.0.0.9"
    secret.write_text("")
    with pytest.raises(RuntimeError, match="secret file .* is empty"):
        session_properties(env, "a")


@pytest.mark.spark
def test_kernel_authenticates_with_the_secret_file_without_exposing_it(tmp_path):
    """A cluster with spark.authenticate: the kernel reads the secret from its file; the secret
    is on no command line and its properties file is gone once the session is up."""
    from jupyter_spark_openstack.core.localcluster import LocalCluster

    secret = "s3cr3t-" + uuid.uuid4().hex
    secret_file = tmp_path / "spark-secret"
    secret_file.write_text(secret + "\n")
    secret_file.chmod(0o600)
    cluster = LocalCluster(tmp_path / "auth-cluster")
    state = cluster.start(workers=1, worker_cores=1, worker_memory="1g", secret=secret)
    try:
        settings = KernelSettings.parse(master=state["master_url"], name="pyspark-auth",
                                        executor_memory="512m", cores_max=1,
                                        secret_file=str(secret_file))
        spec_text = (install_kernelspec(settings, prefix=tmp_path / "spec") / "kernel.json").read_text()
        assert secret not in spec_text
        with running_kernel(tmp_path, settings) as k:
            reply, result, _ = execute(k["kc"], "sc.parallelize(range(100), 2).sum()")
            assert reply["status"] == "ok", reply
            assert result == "4950"
            reply, result, _ = execute(k["kc"], "sc.getConf().get('spark.authenticate')")
            assert result == "'true'"
            log_text = k["log"].read_text()
            jvm_pid = int(re.search(r"driver JVM pid (\d+)", log_text).group(1))
            cmdline = " ".join(psutil.Process(jvm_pid).cmdline())
            assert "spark.authenticate.secret" not in cmdline and secret not in cmdline
            scratch = re.search(r"-Djava\.io\.tmpdir=(\S+?)\"", log_text).group(1)
            assert os.path.isdir(scratch)
            assert not os.path.exists(os.path.join(scratch, "driver.properties"))
            assert secret not in log_text
        assert not os.path.exists(scratch)
    finally:
        cluster.stop()


# ---- the lazy proxies and the starter, in this process, with a stand-in factory --------------
class _FakeSession:
    def __init__(self):
        self.sparkContext = _FakeContext()

    def range(self, n):
        return list(range(n))


class _FakeContext:
    def parallelize(self, data):
        return list(data)


_GATE = {}


def _slow_factory(env, app_name, log):
    _GATE["event"].wait(30)
    if env.get("FAIL"):
        raise RuntimeError("py4j said: Connection refused\nat line two")
    s = _FakeSession()
    return s, s.sparkContext


def test_lazy_proxies_wait_forward_and_report_errors(tmp_path, capsys):
    import threading

    from jupyter_spark_openstack.kernel.session import LazySession, SessionStarter, SparkStartError

    for fail in (False, True):
        _GATE["event"] = threading.Event()
        env = {"SPARK_OPENSTACK_SESSION_FACTORY": f"{__name__}:_slow_factory"}
        if fail:
            env["FAIL"] = "1"
        starter = SessionStarter("abcdef12-3456", env=env, log_path=tmp_path / "k.log").start()
        spark, sc = LazySession(starter, "spark"), LazySession(starter, "sc")
        assert starter.status()["state"] == "starting"
        assert "is starting" in repr(spark)  # repr does not wait
        threading.Timer(0.3, _GATE["event"].set).start()
        if not fail:
            assert spark.range(3) == [0, 1, 2]  # waits, then forwards
            assert sc.parallelize(range(4)) == [0, 1, 2, 3]
            out = capsys.readouterr().out
            assert out.count("waiting for SparkSession") == 1 and "SparkSession ready" in out
            assert starter.status()["state"] == "ready"
            assert starter.app_name.endswith("-abcdef12")
        else:
            with pytest.raises(SparkStartError) as e:
                spark.range(3)
            assert str(e.value).startswith("SparkSession could not start: py4j said: Connection refused | at line two")
            assert str(tmp_path / "k.log") in str(e.value)
            with pytest.raises(SparkStartError):
                sc.parallelize([1])
            assert starter.status()["state"] == "failed"


def test_stale_scratch_dirs_of_dead_kernels_are_swept():
    import subprocess
    import sys
    import tempfile

    from jupyter_spark_openstack.kernel.classic import _write_owner, sweep_stale_scratch

    dead = subprocess.run([sys.executable, "-c", "import os, psutil; p = psutil.Process(); "
                           "print(p.pid, p.create_time())"], capture_output=True, text=True,
                          check=True).stdout
    stale = tempfile.mkdtemp(prefix="spark-openstack-pyspark-sweeptest-")
    live = tempfile.mkdtemp(prefix="spark-openstack-pyspark-sweeptest-")
    try:
        Path(stale, "owner.pid").write_text(dead)
        Path(stale, "blockmgr-x").mkdir()
        _write_owner(live)  # this test process: alive
        removed = sweep_stale_scratch()
        assert stale in removed and not os.path.exists(stale)
        assert live not in removed and os.path.isdir(live)
    finally:
        import shutil

        shutil.rmtree(stale, ignore_errors=True)
        shutil.rmtree(live, ignore_errors=True)
