"""The worker cloud-config: rendered from validated values with PyYAML, read back as cloud-init
would (the emulator's reader), and refusing what could inject anything."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from jupyter_spark_openstack.core.errors import ValidationError
from jupyter_spark_openstack.core.provisioners import cloudconfig as cc

SHA = "ab" * 64
SECRET = "s3cr3t_Token-xyz"


def _files(doc):
    return {f["path"]: f for f in doc["write_files"]}


def render(**kw):
    args = dict(hostname="hub-alice-w1", master_url="spark://10.0.0.5:7077", cores=4,
                memory="8g", secret=SECRET, install=cc.InstallConfig.parse(
                    {"mode": "preinstalled", "spark_home": "/opt/spark",
                     "java_home": "/usr/lib/jvm/java-17"}))
    args.update(kw)
    return cc.render_user_data(**args)


def test_preinstalled_user_data_has_env_unit_hosts_fix_and_no_credentials():
    text = render()
    assert text.startswith("#cloud-config\n")
    doc = yaml.safe_load(text)
    files = _files(doc)
    env = cc.parse_env_file(files[cc.ENV_FILE]["content"])
    assert env["SPARK_MASTER_URL"] == "spark://10.0.0.5:7077"
    assert env["SPARK_WORKER_CORES"] == "4" and env["SPARK_WORKER_MEMORY"] == "8g"
    assert env["_SPARK_AUTH_SECRET"] == SECRET and env["JAVA_HOME"] == "/usr/lib/jvm/java-17"
    assert files[cc.ENV_FILE]["permissions"] == "0600"
    assert "spark.authenticate=true" in files[cc.PROPERTIES_FILE]["content"]
    unit = files[cc.UNIT_FILE]["content"]
    assert "ExecStart=/opt/spark/bin/spark-class org.apache.spark.deploy.worker.Worker" in unit
    assert f"EnvironmentFile={cc.ENV_FILE}" in unit and "WantedBy=multi-user.target" in unit
    assert ["systemctl", "enable", "--now", cc.UNIT_NAME] in doc["runcmd"]
    assert doc["runcmd"][0] == [cc.HOSTS_SCRIPT] and cc.HOSTS_SCRIPT in files
    assert doc["hostname"] == "hub-alice-w1" and doc["manage_etc_hosts"] is False
    assert "/etc/hosts" in files[cc.HOSTS_SCRIPT]["content"]
    # the secret appears exactly once (env file); no cloud or hub credential anywhere
    assert text.count(SECRET) == 1
    low = text.lower()
    for word in ("password", "os_auth", "auth_url", "jupyterhub_api_token", "x-auth-token",
                 "application_credential", "api_token"):
        assert word not in low


def test_download_mode_checks_sha512_before_unpacking():
    text = render(install=cc.InstallConfig.parse(
        {"mode": "download", "spark_url": "https://archive.apache.org/dist/spark/spark-4.0.0-bin-hadoop3.tgz",
         "spark_sha512": SHA.upper()}))
    doc = yaml.safe_load(text)
    files = _files(doc)
    inst = cc.parse_env_file(files[cc.INSTALL_ENV_FILE]["content"])
    assert inst == {"SPARK_URL": "https://archive.apache.org/dist/spark/spark-4.0.0-bin-hadoop3.tgz",
                    "SPARK_SHA512": SHA}
    script = files[cc.INSTALL_SCRIPT]["content"]
    assert script.index("sha512sum -c") < script.index("tar -xzf") < script.index("systemctl enable")
    assert "set -eu" in script and "http://" not in script
    assert doc["packages"] == ["openjdk-17-jre-headless", "curl"]
    assert doc["runcmd"] == [[cc.HOSTS_SCRIPT], [cc.INSTALL_SCRIPT]]
    boot = cc.read_worker_boot(text)
    assert boot.install_mode == "download" and boot.spark_sha512 == SHA


@pytest.mark.parametrize("install, field", [
    ({"mode": "download", "spark_url": "https://x.org/spark.tgz"}, "install.spark_sha512"),
    ({"mode": "download", "spark_sha512": SHA}, "install.spark_url"),
    ({"mode": "download", "spark_url": "https://x.org/a.tgz;reboot", "spark_sha512": SHA}, "install.spark_url"),
    ({"mode": "download", "spark_url": "ftp://x.org/a.tgz", "spark_sha512": SHA}, "install.spark_url"),
    ({"mode": "download", "spark_url": "https://x.org/a.tgz", "spark_sha512": "abc"}, "install.spark_sha512"),
    ({"mode": "preinstalled", "spark_url": "https://x.org/a.tgz"}, "install.spark_url"),
    ({"mode": "preinstalled", "spark_home": "opt/spark"}, "install.spark_home"),
    ({"mode": "preinstalled", "spark_home": "/opt/$(reboot)"}, "install.spark_home"),
    ({"mode": "magic"}, "install.mode"),
    ({"mode": "preinstalled", "spark_hom": "/opt"}, "install.spark_hom"),
])
def test_install_config_errors_name_the_field(install, field):
    with pytest.raises(ValidationError) as ei:
        cc.InstallConfig.parse(install)
    assert ei.value.field == field
    assert "expected" in str(ei.value)


@pytest.mark.parametrize("kw, field", [
    ({"hostname": "bad name\nruncmd: [reboot]"}, "hostname"),
    ({"hostname": "x_y"}, "hostname"),
    ({"master_url": "spark://h:7077\n- reboot"}, "master_url"),
    ({"cores": 0}, "cores"),
    ({"memory": "8 g"}, "memory"),
    ({"secret": "a'b"}, "secret"),
])
def test_values_that_could_inject_are_refused(kw, field):
    with pytest.raises(ValidationError) as ei:
        render(**kw)
    assert ei.value.field == field
    if field == "secret":
        assert "a'b" not in str(ei.value)  # secrets are never echoed


def test_read_worker_boot_round_trip():
    boot = cc.read_worker_boot(render())
    assert (boot.hostname, boot.master_url, boot.cores, boot.memory, boot.secret) == \
        ("hub-alice-w1", "spark://10.0.0.5:7077", 4, "8g", SECRET)
    assert SECRET not in repr(boot)


@pytest.mark.parametrize("text, needle", [
    ("#!/bin/sh\nrm -rf /\n", "Unhandled non-multipart"),
    ("#cloud-config\nwrite_files: [unclosed\n", "Failed loading yaml blob"),
    ("#cloud-config\nhostname: a\n", "write_files"),
    ("#cloud-config\nwrite_files: []\n", "no /etc/spark-openstack/worker.env"),
])
def test_read_worker_boot_errors_read_like_cloud_init(text, needle):
    with pytest.raises(cc.CloudConfigError) as ei:
        cc.read_worker_boot(text)
    assert needle in str(ei.value)


def test_read_worker_boot_requires_the_unit_started_and_valid_env():
    doc = yaml.safe_load(render())
    doc["runcmd"] = [[cc.HOSTS_SCRIPT]]
    with pytest.raises(cc.CloudConfigError, match="does not enable"):
        cc.read_worker_boot("#cloud-config\n" + yaml.safe_dump(doc))
    doc = yaml.safe_load(render())
    for f in doc["write_files"]:
        if f["path"] == cc.ENV_FILE:
            f["content"] = f["content"].replace("SPARK_WORKER_CORES=4", "SPARK_WORKER_CORES=many")
    with pytest.raises(cc.CloudConfigError, match="SPARK_WORKER_CORES"):
        cc.read_worker_boot("#cloud-config\n" + yaml.safe_dump(doc))


# ---- spark_conf: the worker's properties file -----------------------------------------------------
HARDENING = {"spark.network.crypto.enabled": "true", "spark.ui.killEnabled": "false",
             "spark.master.ui.decommission.allow.mode": "DENY"}
# values a properties file must escape: backslashes, a leading space, non-ASCII (BMP and not)
TRICKY = {"spark.executorEnv.WIN_PATH": "C:\\tmp\\new", "spark.executorEnv.PAD": "  two spaces",
          "spark.executorEnv.TEXT": "café ☕ 😀 a=b:c #!d"}


def _props(text):
    return _files(yaml.safe_load(text))[cc.PROPERTIES_FILE]["content"]


def test_properties_file_has_our_defaults_then_spark_conf():
    props = _props(render(spark_conf=HARDENING))
    lines = props.splitlines()
    assert lines[:2] == ["spark.authenticate=true", "spark.blockManager.port=7079"]
    for k, v in HARDENING.items():
        assert f"{k}={v}" in lines
    assert len(lines) == len(set(lines))
    # without spark_conf the worker's web UI still cannot kill anything
    assert "spark.ui.killEnabled=false" in _props(render()).splitlines()
    # spark_conf wins over ours
    over = cc.read_worker_boot(render(spark_conf={"spark.ui.killEnabled": "true"})).properties
    assert over["spark.ui.killEnabled"] == "true"
    assert cc.read_worker_boot(render(spark_conf=HARDENING)).properties == {
        "spark.authenticate": "true", "spark.blockManager.port": "7079", **HARDENING}


def test_property_values_are_escaped_and_read_back():
    props = _props(render(spark_conf=TRICKY))
    assert props.isascii() and not any(ord(c) < 0x20 and c != "\n" for c in props)
    lines = props.splitlines()
    assert "spark.executorEnv.WIN_PATH=C:\\\\tmp\\\\new" in lines
    assert "spark.executorEnv.PAD=\\  two spaces" in lines
    assert "spark.executorEnv.TEXT=caf\\u00e9 \\u2615 \\ud83d\\ude00 a=b:c #!d" in lines
    assert {k: cc.read_worker_boot(render(spark_conf=TRICKY)).properties[k] for k in TRICKY} == TRICKY


JAVA_READER = """
import java.io.*;
import java.nio.charset.StandardCharsets;
import java.util.*;

public class ReadProps {
    public static void main(String[] args) throws Exception {
        Properties p = new Properties();   // as Spark's Utils.getPropertiesFromFile reads it
        try (Reader r = new InputStreamReader(new FileInputStream(args[0]), StandardCharsets.UTF_8)) {
            p.load(r);
        }
        for (String k : new TreeSet<>(p.stringPropertyNames())) {
            StringBuilder b = new StringBuilder(k).append('\\t');
            p.getProperty(k).codePoints().forEach(c -> b.append(Integer.toHexString(c)).append(','));
            System.out.println(b);
        }
    }
}
"""


@pytest.mark.skipif(shutil.which("java") is None, reason="java not installed")
def test_java_reads_the_properties_file_as_meant(tmp_path):
    (tmp_path / "ReadProps.java").write_text(JAVA_READER)
    (tmp_path / "worker.properties").write_text(_props(render(spark_conf={**HARDENING, **TRICKY})))
    out = subprocess.run(["java", str(tmp_path / "ReadProps.java"), str(tmp_path / "worker.properties")],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    got = {}
    for line in out.splitlines():
        k, _, cps = line.partition("\t")
        got[k] = "".join(chr(int(c, 16)) for c in cps.split(",") if c)
    assert got == {"spark.authenticate": "true", "spark.blockManager.port": "7079", **HARDENING, **TRICKY}


@pytest.mark.parametrize("conf, field", [
    ({"hadoop.fs.defaultFS": "x"}, "spark_conf"),
    ({"spark.": "x"}, "spark_conf"),
    ({"spark..a": "x"}, "spark_conf"),
    ({"spark.a b": "x"}, "spark_conf"),
    ({"spark.a=b": "x"}, "spark_conf"),
    ({"spark.a\nspark.b": "x"}, "spark_conf"),
    ({7: "x"}, "spark_conf"),
    ({"spark.authenticate.secret": "x"}, "spark_conf"),
    ({"spark.a": "x\nspark.ui.killEnabled=true"}, "spark_conf.spark.a"),
    ({"spark.a": "x\ry"}, "spark_conf.spark.a"),
    ({"spark.a": "x\ty"}, "spark_conf.spark.a"),
    ({"spark.a": "x\x00"}, "spark_conf.spark.a"),
    ({"spark.a": "x\x7f"}, "spark_conf.spark.a"),
    ({"spark.a": "x\x85y"}, "spark_conf.spark.a"),
    ({"spark.a": "x\u2028y"}, "spark_conf.spark.a"),
    ({"spark.a": "x" * 5000}, "spark_conf.spark.a"),
    ({"spark.a": None}, "spark_conf.spark.a"),
    ({"spark.a": ["x"]}, "spark_conf.spark.a"),
    (["spark.a=x"], "spark_conf"),
])
def test_bad_spark_conf_is_refused_naming_the_field(conf, field):
    with pytest.raises(ValidationError) as ei:
        render(spark_conf=conf)
    assert ei.value.field == field
    assert "expected" in str(ei.value)


def test_secret_like_values_are_not_echoed_in_errors():
    with pytest.raises(ValidationError) as ei:
        render(spark_conf={"spark.ssl.keyPassword": "hunter2\n"})
    assert ei.value.field == "spark_conf.spark.ssl.keyPassword" and "hunter2" not in str(ei.value)


def test_spark_conf_booleans_and_numbers_become_spark_text():
    props = cc.read_worker_boot(render(spark_conf={"spark.a": True, "spark.b": 3})).properties
    assert (props["spark.a"], props["spark.b"]) == ("true", "3")


def test_head_user_data_runs_master_connect_and_tls_with_secrets_in_private_files():
    import yaml

    from jupyter_spark_openstack.core.provisioners import headconfig as hc
    from jupyter_spark_openstack.core.tls import make_cluster_tls

    tls = make_cluster_tls("connect.head.spark-openstack.internal")
    doc = yaml.safe_load(hc.render_head_user_data(
        hostname="hub1-alice-head", secret="s3cret_x", token="tok_y", tls=tls,
        install=cc.InstallConfig(), connect_conf={"spark.executor.memory": "2g"}))
    files = {f["path"]: f for f in doc["write_files"]}
    assert doc["runcmd"][-1] == ["systemctl", "enable", "--now", *hc.HEAD_UNITS]
    props = files[hc.CONNECT_PROPERTIES_FILE]
    assert (props["permissions"], props["owner"], props.get("defer")) == ("0600", "spark:spark", True)
    assert "spark.connect.authenticate.token=tok_y" in props["content"]
    assert "spark.connect.grpc.binding.address=127.0.0.1" in props["content"]
    assert "spark.executor.memory=2g" in props["content"]
    assert files[hc.TLS_BUNDLE_FILE]["permissions"] == "0600"
    assert "PRIVATE KEY" in files[hc.TLS_BUNDLE_FILE]["content"]
    # no secret, token or key in a file others can read, nor in a unit's command line
    for f in doc["write_files"]:
        if f["permissions"] != "0600":
            for secret in ("s3cret_x", "tok_y", "PRIVATE KEY"):
                assert secret not in f["content"], f["path"]
    assert "alpn h2" in files[hc.HAPROXY_CONFIG_FILE]["content"]
    # her master only: no Connect, no TLS, no token or key on the machine
    doc = yaml.safe_load(hc.render_head_user_data(
        hostname="hub1-alice-head", secret="s3cret_x", token="tok_y", tls=tls,
        install=cc.InstallConfig(), connect=False))
    text = yaml.safe_dump(doc)
    assert doc["runcmd"][-1] == ["systemctl", "enable", "--now", hc.MASTER_UNIT]
    assert "tok_y" not in text and "PRIVATE KEY" not in text


def test_head_user_data_refuses_bad_values():
    from jupyter_spark_openstack.core.provisioners import headconfig as hc
    from jupyter_spark_openstack.core.tls import make_cluster_tls

    tls = make_cluster_tls("connect.head.spark-openstack.internal")
    base = dict(hostname="hub1-alice-head", secret="s", token="t", tls=tls, install=cc.InstallConfig())
    for change, field in [({"hostname": "a b"}, "hostname"), ({"token": "a\nb"}, "connect token"),
                          ({"install": cc.InstallConfig(mode="download", spark_url="https://x/s.tgz",
                                                        spark_sha512="0" * 128)},
                           "openstack.install.mode"),
                          ({"connect_conf": {"spark.x": "a\nb"}}, "connect_conf.spark.x")]:
        with pytest.raises(ValidationError) as ei:
            hc.build_head_cloud_config(**{**base, **change})
        assert ei.value.field == field, (change, ei.value.field)
