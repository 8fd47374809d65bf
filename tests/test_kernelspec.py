"""core/kernelspec.py: kernel.json built from KernelSettings and written through jupyter_client."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from jupyter_client.kernelspec import KernelSpecManager

from jupyter_spark_openstack import __version__
from jupyter_spark_openstack.core import kernelspec as ks
from jupyter_spark_openstack.core.errors import ValidationError
from jupyter_spark_openstack.core.models import KernelSettings


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


@pytest.fixture
def fake_distribution(tmp_path) -> Path:
    """A directory shaped like an unpacked Spark distribution (what SPARK_HOME may point to)."""
    home = tmp_path / "spark-4.0.0-bin-hadoop3"
    (home / "bin").mkdir(parents=True)
    (home / "bin" / "spark-class").write_text("#!/bin/sh\n")
    (home / "jars").mkdir()
    (home / "python" / "lib").mkdir(parents=True)
    (home / "python" / "lib" / "py4j-0.10.9.9-src.zip").write_bytes(b"PK\x05\x06" + b"\0" * 18)
    return home


def test_the_contract_names_are_the_published_ones():
    """The tests use the constants; this pins their values, which hand-written kernelspecs,
    the spawner's notebook servers and the README rely on (a rename breaks them)."""
    assert ks.METADATA_KEY == "jupyter_spark_openstack"
    published = {
        "ENV_MASTER_URL": "SPARK_OPENSTACK_MASTER_URL", "ENV_CONF": "SPARK_OPENSTACK_CONF",
        "ENV_SECRET_FILE": "SPARK_OPENSTACK_SECRET_FILE",
        "ENV_CONNECT_URL": "SPARK_OPENSTACK_CONNECT_URL",
        "ENV_CONNECT_TOKEN_FILE": "SPARK_OPENSTACK_CONNECT_TOKEN_FILE",
        "ENV_WEBUI_URL": "SPARK_OPENSTACK_MASTER_WEBUI_URL",
        "ENV_CLUSTER_NAME": "SPARK_OPENSTACK_CLUSTER_NAME",
        "ENV_START_TIMEOUT": "SPARK_OPENSTACK_START_TIMEOUT", "ENV_EAGER": "SPARK_OPENSTACK_EAGER"}
    assert {n: getattr(ks, n, None) for n in published} == published


def test_build_kernel_json_classic_puts_each_setting_in_its_place(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("s3cr3t-value\n")
    s = KernelSettings.parse(master="spark://127.0.0.1:7077,127.0.0.1:7078", name="spark-a",
                             display_name="Spark A", executor_memory="2G", executor_cores="2",
                             cores_max=4, driver_memory="1g",
                             conf=["spark.sql.shuffle.partitions=8", "spark.ui.enabled=false"],
                             secret_file=str(secret), webui_url="http://127.0.0.1:8080/")
    spec = ks.build_kernel_json(s, python="/opt/py/bin/python3")
    assert spec["argv"] == ["/opt/py/bin/python3", "-m", "jupyter_spark_openstack.kernel",
                            "-f", "{connection_file}"]
    assert spec["display_name"] == "Spark A"
    assert spec["language"] == "python"
    env = spec["env"]
    assert env[ks.ENV_MASTER_URL] == "spark://127.0.0.1:7077,127.0.0.1:7078"
    assert json.loads(env[ks.ENV_CONF]) == {
        "spark.executor.memory": "2g", "spark.executor.cores": "2", "spark.cores.max": "4",
        "spark.driver.memory": "1g", "spark.sql.shuffle.partitions": "8",
        "spark.ui.enabled": "false"}
    assert env[ks.ENV_SECRET_FILE] == str(secret)
    assert env[ks.ENV_WEBUI_URL] == "http://127.0.0.1:8080"
    assert env["PYSPARK_PYTHON"] == "/opt/py/bin/python3"
    assert env[ks.ENV_CONNECT_URL] == ""  # classic: empty, overriding an inherited value
    # the pyspark wheel: SPARK_HOME is the package, which is importable as is -> no PYTHONPATH
    import pyspark
    assert env["SPARK_HOME"] == str(Path(pyspark.__file__).parent)
    assert "PYTHONPATH" not in env
    assert "s3cr3t-value" not in json.dumps(spec)
    assert spec["metadata"] == {"debugger": False, ks.METADATA_KEY: {
        "version": __version__, "mode": "classic",
        "master_url": "spark://127.0.0.1:7077,127.0.0.1:7078",
        "webui_url": "http://127.0.0.1:8080", "connect_url": None, "cluster_name": None}}


def test_build_kernel_json_distribution_adds_python_and_py4j_to_pythonpath(fake_distribution):
    s = KernelSettings.parse(master="local[2]")
    env = ks.build_kernel_json(s, spark_home=str(fake_distribution))["env"]
    assert env["SPARK_HOME"] == str(fake_distribution)
    assert env["PYTHONPATH"].split(os.pathsep) == [
        str(fake_distribution / "python"),
        str(fake_distribution / "python" / "lib" / "py4j-0.10.9.9-src.zip")]


def test_build_kernel_json_connect_kernel(tmp_path):
    token = tmp_path / "token"
    token.write_text("tok-123")
    s = KernelSettings.parse(connect_url="sc://localhost:15002", connect_token_file=str(token),
                             master="spark://127.0.0.1:7077")
    spec = ks.build_kernel_json(s)
    assert spec["env"][ks.ENV_CONNECT_URL] == "sc://localhost:15002"
    assert spec["env"][ks.ENV_CONNECT_TOKEN_FILE] == str(token)
    assert spec["display_name"] == "PySpark"
    assert spec["metadata"][ks.METADATA_KEY]["mode"] == "connect"
    assert spec["metadata"][ks.METADATA_KEY]["connect_url"] == "sc://localhost:15002"
    assert "tok-123" not in json.dumps(spec)


def test_install_into_data_dir_is_found_by_jupyter_client(tmp_path):
    data = tmp_path / "user-data"
    s = KernelSettings.parse(master="spark://127.0.0.1:7077", name="PySpark-Alice",
                             executor_memory="512m")
    path = ks.install_kernelspec(s, data_dir=data)
    assert path == data / "kernels" / "pyspark-alice"
    assert sorted(p.name for p in path.iterdir()) == [
        "kernel.json", "logo-32x32.png", "logo-64x64.png", "logo-svg.svg"]
    assert (path / "logo-64x64.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ksm = KernelSpecManager(kernel_dirs=[str(data / "kernels")])
    spec = ksm.get_kernel_spec("pyspark-alice")
    assert spec.argv[:3] == [sys.executable, "-m", "jupyter_spark_openstack.kernel"]
    assert json.loads(spec.env[ks.ENV_CONF]) == {"spark.executor.memory": "512m"}
    # the same dict the builder makes, nothing else
    assert json.loads((path / "kernel.json").read_text()) == ks.build_kernel_json(s)


def test_install_refuses_existing_name_unless_replace(tmp_path):
    prefix = tmp_path / "prefix"
    first = KernelSettings.parse(master="spark://127.0.0.1:7077")
    path = ks.install_kernelspec(first, prefix=prefix)
    assert path == prefix / "share" / "jupyter" / "kernels" / "pyspark"
    before = (path / "kernel.json").read_text()
    second = KernelSettings.parse(master="spark://127.0.0.1:9999")
    with pytest.raises(ValidationError) as e:
        ks.install_kernelspec(second, prefix=prefix)
    assert e.value.field == "name" and "replace" in e.value.allowed
    assert (path / "kernel.json").read_text() == before
    ks.install_kernelspec(second, prefix=prefix, replace=True)
    assert json.loads((path / "kernel.json").read_text())["env"][
        ks.ENV_MASTER_URL] == "spark://127.0.0.1:9999"


def test_list_and_remove_leave_foreign_kernelspecs_alone(tmp_path):
    kdir = tmp_path / "share" / "jupyter" / "kernels"
    ks.install_kernelspec(KernelSettings.parse(master="local[*]", name="ours"), prefix=tmp_path)
    (kdir / "foreign").mkdir()
    (kdir / "foreign" / "kernel.json").write_text(json.dumps(
        {"argv": ["python", "-m", "ipykernel", "-f", "{connection_file}"],
         "display_name": "Foreign", "language": "python"}))
    assert [s["name"] for s in ks.list_kernelspecs(kernel_dirs=[kdir])] == ["ours"]
    both = ks.list_kernelspecs(kernel_dirs=[kdir], ours_only=False)
    assert {(s["name"], s["ours"]) for s in both} == {("ours", True), ("foreign", False)}
    assert all("spec" not in s for s in both)
    [full] = ks.list_kernelspecs(kernel_dirs=[kdir], with_spec=True)
    on_disk = json.loads((kdir / "ours" / "kernel.json").read_text())
    assert {k: full["spec"][k] for k in on_disk} == on_disk  # (jupyter_client adds defaults)
    with pytest.raises(ValidationError) as e:
        ks.remove_kernelspec("foreign", kernel_dirs=[kdir])
    assert "force" in e.value.allowed
    assert (kdir / "foreign" / "kernel.json").is_file()
    assert ks.remove_kernelspec("ours", kernel_dirs=[kdir]) == kdir / "ours"
    assert _tree(kdir) == ["foreign", "foreign/kernel.json"]
    with pytest.raises(ValidationError):
        ks.remove_kernelspec("ours", kernel_dirs=[kdir])
    ks.remove_kernelspec("foreign", kernel_dirs=[kdir], force=True)
    assert _tree(kdir) == []


def test_two_locations_at_once_are_refused(tmp_path):
    s = KernelSettings.parse(master="local")
    with pytest.raises(ValidationError):
        ks.install_kernelspec(s, prefix=tmp_path, user=True)
    assert _tree(tmp_path) == []


def test_location_options_map_to_kernel_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "data"))
    assert ks.kernels_dir() == tmp_path / "data" / "kernels"
    assert ks.kernels_dir(user=True) == tmp_path / "data" / "kernels"
    assert ks.kernels_dir(sys_prefix=True) == Path(os.path.abspath(sys.prefix)) / "share" / "jupyter" / "kernels"
    assert ks.kernels_dir(prefix=tmp_path / "p") == tmp_path / "p" / "share" / "jupyter" / "kernels"
    assert ks.kernels_dir(data_dir=tmp_path / "u") == tmp_path / "u" / "kernels"
