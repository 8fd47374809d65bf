"""core/clusterinfo.py: which master (and master UI) a notebook server shows, from the spawner's
environment or from the kernelspecs, and the cache's reads through master_client."""

from __future__ import annotations

import asyncio
import json

import pytest

from jupyter_spark_openstack.core import clusterinfo
from jupyter_spark_openstack.core.errors import ValidationError
from jupyter_spark_openstack.core.kernelspec import (
    ENV_MASTER_URL,
    ENV_WEBUI_URL,
    METADATA_KEY,
    build_kernel_json,
)
from jupyter_spark_openstack.core.models import KernelSettings
from jupyter_spark_openstack.core.spark.master_client import fetch_master_state
from jupyter_spark_openstack.core.spark.ports import free_port


def test_hub_spawned_server_reads_the_ui_from_the_spawners_env():
    # the names spawner/mixin.py get_env() writes
    env = {ENV_MASTER_URL: "spark://10.0.0.5:7077", ENV_WEBUI_URL: "http://10.0.0.5:8081/"}
    t = clusterinfo.resolve_master(env=env, kernelspecs={})
    assert (t.master_url, t.webui_url, t.source) == ("spark://10.0.0.5:7077", "http://10.0.0.5:8081", "env")


def test_a_bad_ui_in_the_env_names_the_variable():
    with pytest.raises(ValidationError) as e:
        clusterinfo.resolve_master(env={ENV_WEBUI_URL: "ftp://10.0.0.5"}, kernelspecs={})
    assert e.value.field == ENV_WEBUI_URL


def test_kernelspec_written_by_this_package_gives_its_ui():
    s = KernelSettings.parse(master="spark://10.0.0.5:7077", webui_url="http://10.0.0.5:8081",
                             name="pyspark")
    spec = build_kernel_json(s)
    assert spec["env"][ENV_WEBUI_URL] == "http://10.0.0.5:8081"  # one name, env and server alike
    t = clusterinfo.resolve_master(env={}, kernelspecs={"pyspark": spec})
    assert (t.webui_url, t.source) == ("http://10.0.0.5:8081", "kernelspec:pyspark")


def test_hand_written_kernelspec_with_the_ui_in_its_env_only():
    spec = {"env": {ENV_MASTER_URL: "spark://10.0.0.6:7077", ENV_WEBUI_URL: "http://10.0.0.6:8090"},
            "metadata": {METADATA_KEY: {}}}
    t = clusterinfo.resolve_master(env={}, kernelspecs={"mine": spec})
    assert (t.master_url, t.webui_url) == ("spark://10.0.0.6:7077", "http://10.0.0.6:8090")


def test_pyspark_kernelspecs_lists_ours_through_list_kernelspecs(tmp_path, monkeypatch):
    data = tmp_path / "data"
    for name, meta in (("ours-x", {METADATA_KEY: {"master_url": "spark://10.0.0.7:7077"}}),
                       ("foreign-x", {})):
        (data / "kernels" / name).mkdir(parents=True)
        (data / "kernels" / name / "kernel.json").write_text(json.dumps(
            {"argv": ["python", "-f", "{connection_file}"], "display_name": name,
             "language": "python", "metadata": meta}))
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(data))
    specs = clusterinfo.pyspark_kernelspecs()
    assert "ours-x" in specs and "foreign-x" not in specs
    assert specs["ours-x"]["metadata"][METADATA_KEY]["master_url"] == "spark://10.0.0.7:7077"
    assert specs["ours-x"]["resource_dir"] == str(data / "kernels" / "ours-x")


def test_cache_reads_through_fetch_master_state():
    cache = clusterinfo.MasterStateCache(f"http://127.0.0.1:{free_port()}", timeout=2)
    assert cache._reader is fetch_master_state
    state = asyncio.run(cache.get())
    assert state.reachable is False and state.error == "Connection refused"
    assert cache.upstream_requests == 1
