"""``jupyter-spark-openstack kernel install|list|remove``: every option lands where it belongs,
every bad value exits 2 naming the option and the value, and then nothing is written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jupyter_spark_openstack.cli import main
from jupyter_spark_openstack.core.kernelspec import (
    ENV_CONF,
    ENV_CONNECT_TOKEN_FILE,
    ENV_CONNECT_URL,
    ENV_MASTER_URL,
    ENV_SECRET_FILE,
    ENV_WEBUI_URL,
    METADATA_KEY,
)


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


@pytest.fixture
def where(tmp_path, monkeypatch):
    """A prefix and a private user data dir, both watched for writes."""
    data = tmp_path / "data"
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(data))
    prefix = tmp_path / "prefix"
    return {"root": tmp_path, "prefix": prefix, "data": data,
            "kdir": prefix / "share" / "jupyter" / "kernels"}


def run(args, capsys):
    try:
        rc = main(args)
    except SystemExit as e:
        rc = e.code
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_install_writes_every_option(where, capsys, tmp_path):
    secret = tmp_path / "spark-secret"
    secret.write_text("do-not-copy-me")
    rc, out, err = run(["kernel", "install", "--master", "spark://127.0.0.1:7077",
                        "--name", "team-spark", "--display-name", "Team Spark",
                        "--executor-memory", "2g", "--executor-cores", "2", "--cores-max", "6",
                        "--driver-memory", "768m", "--conf", "spark.sql.shuffle.partitions=16",
                        "--conf", "spark.eventLog.enabled=true", "--secret-file", str(secret),
                        "--webui-url", "http://127.0.0.1:8080",
                        "--prefix", str(where["prefix"])], capsys)
    assert rc == 0, err
    path = where["kdir"] / "team-spark"
    assert str(path) in out
    spec = json.loads((path / "kernel.json").read_text())
    assert spec["display_name"] == "Team Spark"
    assert spec["language"] == "python"
    assert spec["argv"] == [sys.executable, "-m", "jupyter_spark_openstack.kernel", "-f",
                            "{connection_file}"]
    env = spec["env"]
    assert env[ENV_MASTER_URL] == "spark://127.0.0.1:7077"
    assert json.loads(env[ENV_CONF]) == {
        "spark.executor.memory": "2g", "spark.executor.cores": "2", "spark.cores.max": "6",
        "spark.driver.memory": "768m", "spark.sql.shuffle.partitions": "16",
        "spark.eventLog.enabled": "true"}
    assert env[ENV_SECRET_FILE] == str(secret)
    assert env[ENV_WEBUI_URL] == "http://127.0.0.1:8080"
    assert os.path.isfile(os.path.join(env["SPARK_HOME"], "bin", "spark-class"))
    meta = spec["metadata"][METADATA_KEY]
    assert meta["master_url"] == "spark://127.0.0.1:7077" and meta["mode"] == "classic"
    assert "do-not-copy-me" not in (path / "kernel.json").read_text()
    assert _tree(where["data"]) == []  # nothing in the user dir


def test_install_with_distribution_spark_home_sets_pythonpath(where, capsys, tmp_path, monkeypatch):
    home = tmp_path / "spark-dist"
    (home / "bin").mkdir(parents=True)
    (home / "bin" / "spark-class").write_text("#!/bin/sh\n")
    (home / "jars").mkdir()
    (home / "python" / "lib").mkdir(parents=True)
    (home / "python" / "lib" / "py4j-0.10.9.9-src.zip").write_bytes(b"PK\x05\x06" + b"\0" * 18)
    monkeypatch.setenv("SPARK_HOME", str(home))
    rc, _, err = run(["kernel", "install", "--master", "local[*]", "--prefix", str(where["prefix"])],
                     capsys)
    assert rc == 0, err
    env = json.loads((where["kdir"] / "pyspark" / "kernel.json").read_text())["env"]
    assert env["SPARK_HOME"] == str(home.resolve())
    assert env["PYTHONPATH"] == f"{home.resolve()}/python:{home.resolve()}/python/lib/py4j-0.10.9.9-src.zip"


def test_install_default_location_is_the_user_data_dir(where, capsys):
    rc, _, err = run(["kernel", "install", "--master", "local[2]", "--name", "mine"], capsys)
    assert rc == 0, err
    assert (where["data"] / "kernels" / "mine" / "kernel.json").is_file()
    rc, out, _ = run(["kernel", "list", "--user", "--json"], capsys)
    assert rc == 0
    assert [s["name"] for s in json.loads(out)] == ["mine"]


def test_connect_kernel_install(where, capsys, tmp_path):
    token = tmp_path / "token"
    token.write_text("secret-token")
    rc, _, err = run(["kernel", "install", "--connect", "sc://localhost:15002",
                      "--connect-token-file", str(token), "--name", "pyspark-connect",
                      "--prefix", str(where["prefix"])], capsys)
    assert rc == 0, err
    spec = json.loads((where["kdir"] / "pyspark-connect" / "kernel.json").read_text())
    assert spec["env"][ENV_CONNECT_URL] == "sc://localhost:15002"
    assert spec["env"][ENV_CONNECT_TOKEN_FILE] == str(token)
    assert ENV_MASTER_URL not in spec["env"]
    assert spec["metadata"][METADATA_KEY]["mode"] == "connect"
    assert "secret-token" not in json.dumps(spec)


BAD = [
    (["--master", "spark://127.0.0.1"], "--master", "spark://127.0.0.1"),
    (["--master", "yarn"], "--master", "yarn"),
    (["--master", "local[0]"], "--master", "local[0]"),
    ([], "--master", None),
    (["--executor-memory", "2gb"], None, None),  # 2gb is Spark's accepted spelling -> valid
    (["--executor-memory", "lots"], "--executor-memory", "lots"),
    (["--executor-memory=-1g"], "--executor-memory", "-1g"),
    (["--driver-memory", "1.5g"], "--driver-memory", "1.5g"),
    (["--executor-cores", "0"], "--executor-cores", "0"),
    (["--executor-cores", "-1"], "--executor-cores", "-1"),
    (["--executor-cores", "abc"], "--executor-cores", "abc"),
    (["--cores-max", "0"], "--cores-max", "0"),
    (["--cores-max", "2.5"], "--cores-max", "2.5"),
    (["--executor-cores", "4", "--cores-max", "2"], "--cores-max", "2"),
    (["--conf", "executor.memory=2g"], "--conf", "executor.memory"),
    (["--conf", "spark.executor.memory"], "--conf", "spark.executor.memory"),
    (["--conf", "spark.a=1", "--conf", "=x"], "--conf", ""),
    (["--name", "bad name!"], "--name", "bad name!"),
    (["--name", "../escape"], "--name", "../escape"),
    (["--display-name", ""], "--display-name", ""),
    (["--webui-url", "127.0.0.1:8080"], "--webui-url", "127.0.0.1:8080"),
    (["--secret-file", "/nonexistent/secret"], "--secret-file", "/nonexistent/secret"),
    (["--connect", "http://localhost:15002"], "--connect", "http://localhost:15002"),
    (["--connect", "sc://localhost:15002/;token=abc"], "--connect", "sc://localhost:15002/;token=abc"),
]


@pytest.mark.parametrize("extra,option,value", BAD, ids=[" ".join(b[0]) or "no-master" for b in BAD])
def test_bad_input_exits_2_names_option_and_writes_nothing(where, capsys, extra, option, value):
    args = ["kernel", "install", "--prefix", str(where["prefix"])]
    if not any(a in ("--master", "--connect") for a in extra) and extra:
        args += ["--master", "spark://127.0.0.1:7077"]
    before = _tree(where["root"])
    rc, out, err = run(args + extra, capsys)
    if option is None:  # the control case: accepted
        assert rc == 0, err
        return
    assert rc == 2, (out, err)
    assert f"{option}: {value!r}" in err, err
    assert "expected" in err
    assert _tree(where["root"]) == before


def test_argparse_level_errors_exit_2(where, capsys):
    for extra in (["--user", "--sys-prefix"], ["--bogus"], ["--prefix"]):
        rc, _, err = run(["kernel", "install", "--master", "local"] + extra, capsys)
        assert rc == 2, (extra, err)
    assert _tree(where["root"]) == []


def test_existing_name_needs_replace(where, capsys):
    base = ["kernel", "install", "--prefix", str(where["prefix"])]
    assert run(base + ["--master", "spark://127.0.0.1:7077"], capsys)[0] == 0
    kjson = where["kdir"] / "pyspark" / "kernel.json"
    before = kjson.read_text()
    rc, _, err = run(base + ["--master", "spark://127.0.0.1:7177"], capsys)
    assert rc == 2 and "--name: 'pyspark'" in err and "--replace" in err
    assert kjson.read_text() == before
    rc, _, err = run(base + ["--master", "spark://127.0.0.1:7177", "--replace"], capsys)
    assert rc == 0, err
    assert json.loads(kjson.read_text())["env"][ENV_MASTER_URL] == "spark://127.0.0.1:7177"


def test_dry_run_prints_json_and_writes_nothing(where, capsys):
    rc, out, err = run(["kernel", "install", "--master", "spark://127.0.0.1:7077",
                        "--cores-max", "3", "--dry-run", "--prefix", str(where["prefix"])], capsys)
    assert rc == 0, err
    spec = json.loads(out)
    assert spec["env"][ENV_MASTER_URL] == "spark://127.0.0.1:7077"
    assert json.loads(spec["env"][ENV_CONF]) == {"spark.cores.max": "3"}
    assert str(where["kdir"] / "pyspark") in err
    assert _tree(where["root"]) == []


def test_list_and_remove(where, capsys):
    p = ["--prefix", str(where["prefix"])]
    for name, master in (("alpha", "spark://127.0.0.1:7077"), ("beta", "local[2]")):
        assert run(["kernel", "install", "--master", master, "--name", name] + p, capsys)[0] == 0
    rc, out, _ = run(["kernel", "list"] + p, capsys)
    assert rc == 0
    lines = out.strip().splitlines()
    assert [ln.split()[0] for ln in lines] == ["alpha", "beta"]
    assert "spark://127.0.0.1:7077" in lines[0] and "local[2]" in lines[1]
    rc, out, err = run(["kernel", "remove", "alpha"] + p, capsys)
    assert rc == 0, err
    assert not (where["kdir"] / "alpha").exists() and (where["kdir"] / "beta").is_dir()
    rc, out, _ = run(["kernel", "list", "--json"] + p, capsys)
    assert [s["name"] for s in json.loads(out)] == ["beta"]
    before = _tree(where["root"])
    rc, _, err = run(["kernel", "remove", "alpha"] + p, capsys)
    assert rc == 2 and "NAME: 'alpha'" in err and "beta" in err
    assert _tree(where["root"]) == before


def test_jupyter_subcommand_help():
    """`jupyter spark-openstack kernel install --help` works through the console script."""
    jupyter = Path(sys.executable).parent / "jupyter"
    out = subprocess.run([str(jupyter), "spark-openstack", "kernel", "install", "--help"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    for opt in ("--master", "--executor-memory", "--cores-max", "--conf", "--dry-run",
                "--replace", "--prefix", "--sys-prefix", "--user", "--connect-token-file"):
        assert opt in out.stdout
