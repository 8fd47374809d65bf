"""Spark Connect: a per-user Connect server on a real local cluster, kernels as thin clients.

One Connect server for the whole module (its own LocalCluster: master + 1 worker + the Connect
server), started through ``LocalCluster.start(connect=True)``; the last test stops it and
checks that its process is gone.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from jupyter_spark_openstack.core.diagnostics.classify import classify, diagnose_kernel
from jupyter_spark_openstack.core.errors import ValidationError
from jupyter_spark_openstack.core.paths import kernel_id_from_connection_file
from jupyter_spark_openstack.core.spark import connect as cc
from jupyter_spark_openstack.core.spark.ports import free_port, port_open
from jupyter_spark_openstack.kernel import connect as kc

CLI = [sys.executable, "-m", "jupyter_spark_openstack.cli"]


# ---- no JVM ------------------------------------------------------------------------------
def test_token_file_is_private_and_checked(tmp_path):
    tok = cc.generate_token()
    path = Path(cc.write_token_file(tmp_path / "t" / "connect.token", tok))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert cc.read_token_file(path) == tok
    os.chmod(path, 0o644)
    with pytest.raises(cc.ConnectAuthError, match="readable by others"):
        cc.read_token_file(path)
    with pytest.raises(cc.ConnectAuthError, match="cannot read"):
        cc.read_token_file(tmp_path / "missing")
    a, b = cc.derive_token("secret-a"), cc.derive_token("secret-b")
    assert a == cc.derive_token("secret-a") and a != b and "secret-a" not in a


@pytest.mark.parametrize("kwargs, field", [
    ({"host": "0.0.0.0"}, "connect host"),
    ({"host": "10.1.2.3"}, "connect host"),
    ({"driver_memory": "lots"}, "connect driver memory"),
    ({"conf": {"spark.connect.authenticate.token": "x"}}, "connect conf"),
    ({"conf": {"spark.connect.grpc.binding.address": "0.0.0.0"}}, "connect conf"),
    ({"conf": {"notspark.key": "1"}}, "connect conf"),
    ({"master_url": "http://x:1"}, "master_url"),
    ({"port": 70000}, "connect port"),
])
def test_bad_server_options_refused_and_nothing_written(tmp_path, kwargs, field):
    args = {"master_url": "spark://127.0.0.1:7077", "token": "t0ken"} | kwargs
    run_dir = tmp_path / "run"
    with pytest.raises(ValidationError) as ei:
        cc.start_connect_server(run_dir, **args)
    assert ei.value.field == field
    assert field in str(ei.value) and "expected" in str(ei.value)
    assert not run_dir.exists()


@pytest.mark.parametrize("kwargs, field", [
    ({"host": "10.0.0.1"}, "host"),
    ({"connect_options": {"bogus": 1}}, "connect option"),
    ({"connect_options": {"driver_memory": "0g"}}, "connect driver memory"),
])
def test_local_cluster_refuses_bad_connect_settings_before_starting(tmp_path, kwargs, field):
    from jupyter_spark_openstack.core.localcluster import LocalCluster

    with pytest.raises(ValidationError) as ei:
        LocalCluster(tmp_path / "run").start(workers=1, connect=True, **kwargs)
    assert ei.value.field == field
    assert not (tmp_path / "run").exists()


def test_a_server_that_cannot_start_leaves_no_token_file(tmp_path):
    """core/connectserver.py, the one start/stop of a Connect server on this host (the CLI's
    LocalCluster and the hub's SparkCluster): the token file goes with a failed start."""
    from jupyter_spark_openstack.core import connectserver

    token_file = tmp_path / "connect.token"
    recorded = []
    with pytest.raises(ValidationError) as ei:
        connectserver.start_server(tmp_path / "run", token_file, master_url="spark://127.0.0.1:7077",
                                   python="/nonexistent/python", record=recorded.append)
    assert ei.value.field == "executors' python"
    assert not token_file.exists() and recorded == []


def test_stop_server_removes_its_properties_and_token_files(tmp_path):
    from jupyter_spark_openstack.core import connectserver
    from jupyter_spark_openstack.core.spark import daemons

    props = tmp_path / "conf" / "connect.properties"
    props.parent.mkdir()
    props.write_text("")
    token_file = cc.write_token_file(tmp_path / "connect.token", cc.generate_token())
    rec = daemons._spawn("connect", ["/bin/sh", "-c", "sleep 600", str(props)],
                         tmp_path / "logs" / "connect.log", dict(os.environ), marker=str(props))
    rec = {**rec, "properties_file": str(props), "token_file": token_file}
    assert cc.is_running(rec)
    connectserver.stop_server(rec)
    assert not cc.is_running(rec)
    assert not props.exists() and not Path(token_file).exists()
    connectserver.stop_server(rec)           # idempotent


def test_kernel_resolves_localhost_and_refuses_remote_hosts(tmp_path):
    tf = cc.write_token_file(tmp_path / "tok", "abc")
    env = {kc.URL_ENV: "sc://127.0.0.1:15002", kc.TOKEN_FILE_ENV: tf}
    # PySpark switches to TLS for any host but the literal "localhost" when a token is set
    assert kc.resolve(env) == ("sc://localhost:15002", "abc", {})
    with pytest.raises(cc.ConnectError, match="needs TLS"):
        kc.resolve({kc.URL_ENV: "sc://spark.example.org:15002", kc.TOKEN_FILE_ENV: tf})
    with pytest.raises(ValidationError, match=kc.URL_ENV):
        kc.resolve({kc.URL_ENV: "sc://localhost:15002/;token=abc"})
    assert kc.resolve({kc.URL_ENV: "sc://localhost:1", kc.TOKEN_ENV: "envtok"})[1] == "envtok"
    # with the cluster's CA: TLS to the head as named; a file that holds no certificate is refused
    from jupyter_spark_openstack.core.kernelspec import ENV_CONNECT_CA_FILE, ENV_CONNECT_TLS_NAME
    from jupyter_spark_openstack.core.tls import make_cluster_tls

    ca = tmp_path / "ca.pem"
    ca.write_text(make_cluster_tls("head.example").ca_pem)
    head = {kc.URL_ENV: "sc://10.87.0.11:15002", kc.TOKEN_FILE_ENV: tf,
            ENV_CONNECT_CA_FILE: str(ca), ENV_CONNECT_TLS_NAME: "head.example"}
    assert kc.resolve(head) == ("sc://10.87.0.11:15002", "abc",
                                {"ca_pem": ca.read_bytes(), "server_name": "head.example"})
    ca.write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    with pytest.raises(ValidationError, match="connect CA file.*PEM file of X.509 certificates"):
        kc.resolve(head)
    with pytest.raises(ValidationError, match="connect CA file.*readable"):
        kc.resolve({**head, ENV_CONNECT_CA_FILE: str(tmp_path / "missing.pem")})


def test_unreachable_server_fails_fast():
    port = free_port()
    t0 = time.monotonic()
    with pytest.raises(cc.ConnectUnreachableError, match="no Spark Connect server listens") as ei:
        kc.create_session({kc.URL_ENV: f"sc://localhost:{port}", kc.TOKEN_ENV: "x"})
    assert classify(str(ei.value)).category == "connect-unreachable"
    assert time.monotonic() - t0 < 60  # PySpark alone retries up to 10 minutes
    assert cc.check_connect(f"sc://localhost:{port}", "x")["category"] == "connect-unreachable"


def test_sc_placeholder_explains():
    sc = kc.SparkContextUnavailable()
    with pytest.raises(kc.SparkConnectUnsupportedError, match="classic, RDD API"):
        sc.parallelize([1])
    assert not hasattr(sc, "textFile")
    assert "Spark Connect kernel" in repr(sc)


def test_cli_connect_options_bad_input_exit_2(tmp_path):
    run_dir = tmp_path / "run"
    for extra, name in [(["--connect", "--connect-driver-memory", "12x"], "--connect-driver-memory"),
                        (["--connect", "--connect-conf", "spark.connect.authenticate.token=x"], "--connect-conf"),
                        (["--connect", "--host", "0.0.0.0"], "--host"),
                        (["--connect-driver-memory", "1g"], "--connect")]:
        res = subprocess.run([*CLI, "cluster", "start", "--run-dir", str(run_dir), *extra],
                             capture_output=True, text=True, timeout=60)
        assert res.returncode == 2, res.stderr
        assert name in res.stderr
        assert not run_dir.exists()


def test_executor_python_check():
    info = cc.check_executor_python(sys.executable)
    assert info["ok"], info["message"]
    assert info["python_version"] == "{}.{}".format(*sys.version_info[:2])
    bad = cc.check_executor_python("/bin/false")
    assert not bad["ok"]


# ---- a real Connect server ---------------------------------------------------------------
@pytest.fixture(scope="module")
def connect_cluster(tmp_path_factory):
    from jupyter_spark_openstack.core.localcluster import LocalCluster

    run_dir = tmp_path_factory.mktemp("connect-cluster")
    cluster = LocalCluster(run_dir)
    # `cluster start --connect` -> LocalCluster.start(connect=True): one run, both layers
    res = subprocess.run([*CLI, "cluster", "start", "--run-dir", str(run_dir), "--workers", "1",
                          "--worker-cores", "2", "--worker-memory", "1g", "--connect",
                          "--connect-driver-memory", "512m",
                          "--connect-conf", "spark.executor.memory=512m"],
                         capture_output=True, text=True, timeout=300)
    try:
        assert res.returncode == 0, res.stderr
        state = cluster.load_state()
        assert res.stdout.splitlines() == [state["master_url"], state["connect"]["url"],
                                           f"token file: {state['connect']['token_file']}"]
        yield cluster, state
    finally:
        cluster.stop()


def _install_spec(prefix: Path, name: str, url: str, token_file: str | None) -> None:
    """A Connect kernelspec written by the installer (``kernel install --connect``)."""
    cmd = [*CLI, "kernel", "install", "--connect", url, "--name", name, "--prefix", str(prefix)]
    if token_file:
        cmd += ["--connect-token-file", token_file]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    spec_file = prefix / "share" / "jupyter" / "kernels" / name / "kernel.json"
    spec = json.loads(spec_file.read_text())
    assert spec["argv"][1:3] == ["-m", "jupyter_spark_openstack.kernel"]
    assert spec["env"][kc.URL_ENV] == url
    if token_file:
        assert spec["env"][kc.TOKEN_FILE_ENV] == token_file
        assert cc.read_token_file(token_file) not in spec_file.read_text()


class Kernel:
    def __init__(self, prefix: Path, name: str):
        from jupyter_client.kernelspec import KernelSpecManager
        from jupyter_client.manager import KernelManager

        ksm = KernelSpecManager(kernel_dirs=[str(prefix / "share" / "jupyter" / "kernels")])
        self.km = KernelManager(kernel_name=name, kernel_spec_manager=ksm)
        env = {k: v for k, v in os.environ.items() if k != cc.TOKEN_ENV}
        self.km.start_kernel(env=env)
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)

    def run(self, code: str, timeout: float = 60) -> dict:
        status, outputs = self.messages(code, timeout)
        result = {"status": status, "text": "", "stdout": "", "error": ""}
        for m in outputs:
            c = m["content"]
            if m["msg_type"] == "execute_result":
                result["text"] += c["data"].get("text/plain", "")
            elif m["msg_type"] == "stream" and c["name"] == "stdout":
                result["stdout"] += c["text"]
            elif m["msg_type"] == "error":
                result["error"] += f"{c['ename']}: {c['evalue']}"
        return result

    def messages(self, code: str, timeout: float = 120) -> tuple[str, list[dict]]:
        """Run ``code``; ``(status, every iopub message of the cell)``."""
        msgs: list[dict] = []
        reply = self.kc.execute_interactive(code, timeout=timeout, store_history=False,
                                            output_hook=msgs.append)
        return reply["content"]["status"], msgs

    @property
    def pid(self) -> int:
        return self.km.provisioner.process.pid

    def stop(self):
        if self.km.has_kernel:
            self.kc.stop_channels()
            self.km.shutdown_kernel(now=True)


@pytest.fixture(scope="module")
def specs(connect_cluster, tmp_path_factory):
    cluster, state = connect_cluster
    prefix = tmp_path_factory.mktemp("kernels")
    url = state["connect"]["url"]
    other = cc.write_token_file(prefix / "user-b.token", cc.derive_token("user-b-secret"))
    _install_spec(prefix, "connect-a", url, state["connect"]["token_file"])
    _install_spec(prefix, "connect-b", url, other)
    _install_spec(prefix, "connect-none", url, None)
    return prefix


@pytest.fixture(scope="module")
def kernel_a(specs):
    k = Kernel(specs, "connect-a")
    try:
        yield k
    finally:
        k.stop()


@pytest.mark.spark
def test_token_never_on_a_command_line_or_in_state(connect_cluster):
    cluster, state = connect_cluster
    status = json.loads(subprocess.run([*CLI, "cluster", "status", "--json", "--run-dir",
                                        str(cluster.run_dir)], capture_output=True, text=True,
                                       timeout=60).stdout)
    assert status["connect"]["running"] and status["connect"]["url"] == state["connect"]["url"]
    assert state["connect"]["url"].startswith("sc://localhost:")
    assert state["connect"]["driver_memory"] == "512m"
    assert state["connect"]["warm_up_s"] is not None  # a real job ran through the server
    token = cc.read_token_file(state["connect"]["token_file"])
    assert cc.is_running(state["connect"])
    for p in psutil.process_iter(["cmdline"]):
        assert token not in " ".join(p.info["cmdline"] or [])
    assert token not in cluster.state_file.read_text()
    assert token not in Path(state["connect"]["log"]).read_text(errors="replace")
    props = Path(state["connect"]["properties_file"])
    assert stat.S_IMODE(props.stat().st_mode) == 0o600
    assert f"spark.connect.authenticate.token={token}" in props.read_text()
    assert "spark.connect.grpc.binding.address=127.0.0.1" in props.read_text()


@pytest.mark.spark
def test_connect_kernel_runs_spark_and_a_python_udf(kernel_a):
    assert kernel_a.run("spark.range(1000).count()")["text"] == "1000"
    r = kernel_a.run("from pyspark.sql.functions import udf\n"
                     "import sys\n"
                     "f = udf(lambda x: x * 2 + 1, 'long')\n"
                     "print(sorted(r[0] for r in spark.range(5).select(f('id')).collect()))")
    assert r["status"] == "ok", r["error"]
    assert r["stdout"].strip() == "[1, 3, 5, 7, 9]"


SLOW_TASKS = """
import time
from pyspark.sql.functions import udf
spark.version   # the session exists before udf() looks for it
slow = udf(lambda x: (time.sleep(0.15), x)[1], "long")
print(sum(r.v for r in spark.range(0, 40, 1, 40).select(slow("id").alias("v")).collect()))
"""


@pytest.mark.spark
def test_connect_kernel_shows_live_progress_under_the_cell(kernel_a):
    """A job of 40 slow tasks: the display appears, moves (the server's progress reports,
    through PySpark's progress handler API) and ends as a one-line summary; the cell's own
    output is unchanged."""
    from tests._progress import assert_live_progress

    status, msgs = kernel_a.messages(SLOW_TASKS)
    assert status == "ok", [m["content"] for m in msgs if m["msg_type"] == "error"]
    assert any(m["msg_type"] == "stream" and m["content"]["text"].strip() == "780" for m in msgs)
    assert_live_progress(msgs, 40, "operation")


@pytest.mark.spark
def test_sc_and_rdd_explain_the_classic_kernel(kernel_a):
    for code in ("sc.parallelize(range(10)).sum()", "spark.range(3).rdd",
                 "spark.sparkContext", "from pyspark import SparkContext\nSparkContext.getOrCreate()"):
        r = kernel_a.run(code)
        assert r["status"] == "error", code
        assert r["error"].startswith("SparkConnectUnsupportedError"), (code, r["error"])
        assert "Spark Connect kernel" in r["error"] and "PySpark (classic, RDD API)" in r["error"]
        assert classify(r["error"]).category == "connect-unsupported-api"


@pytest.mark.spark
def test_two_kernels_share_one_driver(connect_cluster, specs, kernel_a):
    from jupyter_spark_openstack.core.spark.master_client import fetch_master_state

    cluster, state = connect_cluster
    k2 = Kernel(specs, "connect-a")
    try:
        assert k2.run("spark.range(10).count()")["text"] == "10"
        assert kernel_a.run("spark.range(20).count()")["text"] == "20"
        ms = fetch_master_state(state["webui_url"])
        assert len(ms.active_apps) == 1, [a.name for a in ms.active_apps]
        # no JVM in (or under) either kernel
        for pid in (kernel_a.pid, k2.pid):
            procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
            assert not [p for p in procs if "java" in p.name()], procs
    finally:
        k2.stop()


@pytest.mark.spark
@pytest.mark.parametrize("spec, message", [
    ("connect-b", "refused the token"),
    ("connect-none", "no token was given"),
])
def test_other_or_no_token_refused_without_hang(specs, spec, message):
    k = Kernel(specs, spec)
    try:
        t0 = time.monotonic()
        r = k.run("spark.range(1000).count()", timeout=90)
        assert time.monotonic() - t0 < 60  # PySpark alone retries up to 10 minutes
        assert r["status"] == "error"
        assert "UNAUTHENTICATED" in r["error"] and message in r["error"], r["error"]
        assert classify(r["error"]).category == "connect-auth-failed"
        # the kernel wrote the failure to its per-kernel log: the diagnosis finds it there
        diag = diagnose_kernel(kernel_id_from_connection_file(k.km.connection_file))
        assert diag and diag["category"] == "connect-auth-failed", diag
    finally:
        k.stop()


@pytest.mark.spark
def test_doctor_checks_server_token_and_executors_python(specs):
    def env_of(name):
        return json.loads((specs / "share" / "jupyter" / "kernels" / name / "kernel.json").read_text())["env"]

    ok = cc.doctor_checks("connect-a", env_of("connect-a"))
    assert [c["status"] for c in ok] == ["ok", "ok"], ok
    assert "Python UDFs run" in ok[1]["message"] and "pyarrow" in ok[1]["message"]
    bad = cc.doctor_checks("connect-b", env_of("connect-b"))
    assert [c["status"] for c in bad] == ["fail"]
    assert "refused the token" in bad[0]["message"] and bad[0]["fix"]


# ---- TLS in front of it: the head's HAProxy configuration, on loopback -------------------
@pytest.fixture(scope="module")
def tls_front(connect_cluster, tmp_path_factory):
    """The Connect server behind a real HAProxy with the head's configuration (TLS, ALPN h2)
    and a fresh cluster CA, on a loopback port."""
    import shutil

    from jupyter_spark_openstack.core.cluster import HEAD_TLS_NAME
    from jupyter_spark_openstack.core.provisioners.headconfig import haproxy_config
    from jupyter_spark_openstack.core.tls import make_cluster_tls

    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not os.access(haproxy, os.X_OK):
        pytest.fail("haproxy is missing: apt-get install haproxy (the TLS tests run the real one)")
    _, state = connect_cluster
    d = tmp_path_factory.mktemp("tls")
    material = make_cluster_tls(HEAD_TLS_NAME)
    bundle = d / "connect.pem"
    bundle.write_text(material.server_bundle_pem)
    bundle.chmod(0o600)
    (d / "ca.pem").write_text(material.ca_pem)
    port = free_port()
    cfg = d / "haproxy.cfg"
    cfg.write_text(haproxy_config(bundle=str(bundle), bind=f"127.0.0.1:{port}",
                                  backend_port=state["connect"]["port"], user=None))
    proc = subprocess.Popen([haproxy, "-db", "-f", str(cfg)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while not port_open("127.0.0.1", port) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read().decode()
            time.sleep(0.1)
        yield {"url": f"sc://127.0.0.1:{port}", "port": port, "ca": material.ca_pem.encode(),
               "ca_file": str(d / "ca.pem"), "name": material.server_name,
               "token": cc.read_token_file(state["connect"]["token_file"]),
               "token_file": state["connect"]["token_file"]}
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.spark
def test_connect_over_tls_verifies_the_cluster_ca(tls_front):
    from jupyter_spark_openstack.core.tls import make_cluster_tls

    t = tls_front
    assert cc.probe(t["url"], t["token"], ca_pem=t["ca"], server_name=t["name"]).startswith("4.")
    # a CA of another cluster (same name on the certificate): refused, its own category
    other = make_cluster_tls(t["name"]).ca_pem.encode()
    with pytest.raises(cc.ConnectTLSError) as ei:
        cc.probe(t["url"], t["token"], ca_pem=other, server_name=t["name"])
    assert classify(str(ei.value)).category == "connect-tls-failed", str(ei.value)
    assert cc.check_connect(t["url"], t["token"], ca_pem=other,
                            server_name=t["name"])["category"] == "connect-tls-failed"
    # the right CA, but a certificate for another name: refused too
    with pytest.raises(cc.ConnectTLSError):
        cc.probe(t["url"], t["token"], ca_pem=t["ca"], server_name="other.example")
    # the right CA, a wrong token: the token's category
    with pytest.raises(cc.ConnectAuthError) as ei:
        cc.probe(t["url"], "not-the-token", ca_pem=t["ca"], server_name=t["name"])
    assert classify(str(ei.value)).category == "connect-auth-failed"
    # nothing on the head's port: the head's own category
    dead = f"sc://127.0.0.1:{free_port()}"
    with pytest.raises(cc.ConnectUnreachableError) as ei:
        cc.probe(dead, t["token"], ca_pem=t["ca"], server_name=t["name"])
    assert classify(str(ei.value)).category == "connect-head-unreachable", str(ei.value)
    assert cc.check_connect(dead, t["token"], ca_pem=t["ca"],
                            server_name=t["name"])["category"] == "connect-head-unreachable"


@pytest.mark.spark
def test_connect_kernel_over_tls_runs_a_job_with_ca_and_token_from_files(tls_front, tmp_path):
    """The kernel trusts the CA file of its kernelspec only, reads the token from a file; neither
    the token nor the CA's text is in kernel.json."""
    from jupyter_spark_openstack.core.kernelspec import (
        ENV_CONNECT_CA_FILE,
        ENV_CONNECT_TLS_NAME,
        build_kernel_json,
    )
    from jupyter_spark_openstack.core.models import KernelSettings

    t = tls_front
    settings = KernelSettings.parse(name="connect-tls", connect_url=t["url"],
                                    connect_token_file=t["token_file"],
                                    connect_ca_file=t["ca_file"], connect_tls_name=t["name"])
    spec = build_kernel_json(settings)
    assert spec["env"][ENV_CONNECT_CA_FILE] == t["ca_file"]
    assert spec["env"][ENV_CONNECT_TLS_NAME] == t["name"]
    text = json.dumps(spec)
    assert t["token"] not in text and "BEGIN CERTIFICATE" not in text
    kdir = tmp_path / "share" / "jupyter" / "kernels" / "connect-tls"
    kdir.mkdir(parents=True)
    (kdir / "kernel.json").write_text(text)
    k = Kernel(tmp_path, "connect-tls")
    try:
        r = k.run("spark.range(1000).count()", timeout=180)
        assert r["status"] == "ok" and r["text"] == "1000", r
    finally:
        k.stop()
    # doctor checks the same kernelspec over TLS, and Python UDFs through it
    checks = {c["name"]: c for c in cc.doctor_checks("connect-tls", spec["env"])}
    assert checks["kernelspec:connect-tls:connect"]["status"] == "ok", checks
    assert checks["kernelspec:connect-tls:executor-python"]["status"] == "ok", checks
    # the same kernelspec with another cluster's CA file: the cell says why, not a hang
    from jupyter_spark_openstack.core.tls import make_cluster_tls

    bad_ca = tmp_path / "old-ca.pem"
    bad_ca.write_text(make_cluster_tls(t["name"]).ca_pem)
    spec["env"][ENV_CONNECT_CA_FILE] = str(bad_ca)
    (kdir / "kernel.json").write_text(json.dumps(spec))
    [check] = cc.doctor_checks("connect-tls", spec["env"])
    assert check["status"] == "fail" and "restart your server" in check["fix"], check
    k = Kernel(tmp_path, "connect-tls")
    try:
        r = k.run("spark.range(3).count()", timeout=180)
        assert r["status"] == "error", r
        assert classify(r["error"]).category == "connect-tls-failed", r["error"]
    finally:
        k.stop()


@pytest.mark.spark
def test_stop_stops_the_connect_server(connect_cluster, kernel_a):
    cluster, state = connect_cluster
    rec = state["connect"]
    assert cc.check_connect(rec["url"], cc.read_token_file(rec["token_file"]))["ok"]
    pid = cluster.stop_connect()
    assert pid == rec["pid"]
    assert not cc.is_running(rec)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not port_open("127.0.0.1", rec["port"])
    assert not Path(rec["token_file"]).exists()
    assert not Path(rec["properties_file"]).exists()
    assert cluster.status()["connect"] is None
    # a kernel whose server is gone gets an error in bounded time, not a 10-minute hang
    t0 = time.monotonic()
    r = kernel_a.run("spark.range(5).count()", timeout=180)
    assert r["status"] == "error"
    assert time.monotonic() - t0 < 120, r
    assert classify(r["error"]).category == "connect-unreachable", r["error"]
