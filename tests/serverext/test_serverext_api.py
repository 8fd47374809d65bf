"""The server extension's REST API and Spark UI proxy against a real jupyter_server and a real
Spark master (the session's ``spark_cluster``)."""

from __future__ import annotations

import json

import pytest
from tornado.httpclient import HTTPClientError

from jupyter_spark_openstack.core.kernelspec import ENV_CONNECT_URL, ENV_MASTER_URL, ENV_WEBUI_URL
from jupyter_spark_openstack.core.spark.ports import free_port

from .conftest import eager_argv, install_spec, jp_test


async def _get_json(jp_fetch, *parts):
    r = await jp_fetch(*parts)
    assert r.code == 200
    return json.loads(r.body)


# ---- auth -------------------------------------------------------------------------------
@pytest.mark.parametrize("path", [
    ("spark-openstack", "api", "cluster"),
    ("spark-openstack", "api", "doctor"),
    ("spark-openstack", "api", "kernels", "abc", "diagnostics"),
    ("spark-openstack", "ui", "master/"),
])
@jp_test
async def test_requests_without_token_are_refused(jp_fetch, path):
    with pytest.raises(HTTPClientError) as e:
        await jp_fetch(*path, headers={"Authorization": ""}, follow_redirects=False)
    # API: 403. The UI is a browser page: 403 or a redirect to the login page, never content.
    assert e.value.code in (403, 302)
    if e.value.code == 302:
        assert "login" in e.value.response.headers["Location"]
    body = e.value.response.body.decode()
    assert "workers" not in body and "Spark" not in body


@jp_test
async def test_writes_are_not_routes(jp_fetch):
    # the cluster API is read-only: a POST (with token and so past XSRF) is 405, not a change
    with pytest.raises(HTTPClientError) as e:
        await jp_fetch("spark-openstack", "api", "cluster", method="POST", body="{}")
    assert e.value.code == 405


# ---- cluster state: unreachable / not configured ----------------------------------------------
@pytest.mark.parametrize("spark_ext_config", [
    {"master_url": "spark://127.0.0.1:7", "master_webui_url": "http://127.0.0.1:9",
     "refresh_interval": 60.0}], indirect=True)
@jp_test
async def test_unreachable_master_is_a_state(jp_fetch, jp_serverapp):
    body = await _get_json(jp_fetch, "spark-openstack", "api", "cluster")
    assert body["configured"] is True
    assert body["master"]["url"] == "spark://127.0.0.1:7"
    assert body["master"]["reachable"] is False
    assert "refused" in body["master"]["error"].lower()
    assert body["workers"] == [] and body["apps"] == {"active": [], "completed": []}
    assert body["totals"]["workers_alive"] == 0
    # the failure is cached like a success: a second GET sends no second upstream request
    await _get_json(jp_fetch, "spark-openstack", "api", "cluster")
    assert jp_serverapp.web_app.settings["spark_openstack"].cache().upstream_requests == 1


@jp_test
async def test_not_configured(jp_fetch):
    body = await _get_json(jp_fetch, "spark-openstack", "api", "cluster")
    assert body["configured"] is False
    assert body["master"]["reachable"] is False
    assert body["master"]["ui_proxy_url"] is None


@pytest.fixture(params=[False, True], ids=["master", "master+ui"])
def spawner_env(request, monkeypatch):
    """What the spawner puts in the notebook server's environment (set before the server starts):
    the master, and (spawner/mixin.py get_env) its UI."""
    port = free_port()
    monkeypatch.setenv(ENV_MASTER_URL, f"spark://127.0.0.1:{port}")
    ui = f"http://127.0.0.1:{free_port()}" if request.param else None
    if ui:
        monkeypatch.setenv(ENV_WEBUI_URL, ui)
    return port, ui


@jp_test
async def test_master_from_spawner_env(spawner_env, jp_fetch):
    port, ui = spawner_env
    body = await _get_json(jp_fetch, "spark-openstack", "api", "cluster")
    assert body["source"] == "env"
    assert body["master"]["url"] == f"spark://127.0.0.1:{port}"
    # without a UI URL: the master UI's default port on the master's host
    assert body["master"]["webui_url"] == (ui or "http://127.0.0.1:8080")


@pytest.fixture
def pyspark_spec_with_ui(jp_environ, jp_data_dir):
    """A kernelspec whose master UI is in its env only (no spawner env): the kernelspec case."""
    return install_spec(jp_data_dir, "pyspark-ui", eager_argv(), master_url="spark://127.0.0.1:7124",
                        env={ENV_WEBUI_URL: "http://127.0.0.1:7125"})


@jp_test
async def test_master_ui_from_kernelspec_env(pyspark_spec_with_ui, jp_fetch):
    body = await _get_json(jp_fetch, "spark-openstack", "api", "cluster")
    assert body["source"] == "kernelspec:pyspark-ui"
    assert body["master"]["webui_url"] == "http://127.0.0.1:7125"


@pytest.fixture
def pyspark_spec(jp_environ, jp_data_dir):
    return install_spec(jp_data_dir, "pyspark-x", eager_argv(), master_url="spark://127.0.0.1:7123")


@jp_test
async def test_master_from_kernelspec_metadata(pyspark_spec, jp_fetch):
    body = await _get_json(jp_fetch, "spark-openstack", "api", "cluster")
    assert body["source"] == "kernelspec:pyspark-x"
    assert body["master"]["url"] == "spark://127.0.0.1:7123"


def test_bad_config_names_the_trait():
    from jupyter_spark_openstack.core.errors import ValidationError
    from jupyter_spark_openstack.serverext.config import SparkOpenStack

    with pytest.raises(ValidationError, match=r"SparkOpenStack.master_url: 'http://x:1'"):
        SparkOpenStack(master_url="http://x:1")
    with pytest.raises(ValidationError, match="SparkOpenStack.refresh_interval"):
        SparkOpenStack(refresh_interval=0)


@pytest.fixture
def broken_java_spec(jp_environ, jp_data_dir, tmp_path):
    return install_spec(jp_data_dir, "pyspark-nojava", eager_argv(),
                        env={"JAVA_HOME": str(tmp_path / "no-jdk")})


@jp_test
async def test_doctor_endpoint(broken_java_spec, jp_fetch):
    body = await _get_json(jp_fetch, "spark-openstack", "api", "doctor")
    checks = {c["name"]: c for c in body["checks"]}
    assert body["ok"] is False
    assert checks["kernelspec:pyspark-nojava:java"]["status"] == "fail"
    assert "no-jdk" in checks["kernelspec:pyspark-nojava:java"]["message"]
    assert checks["kernelspec:pyspark-nojava:ipykernel"]["status"] == "ok"
    assert checks["java"]["status"] == "ok" and checks["spark_home"]["status"] == "ok"
    assert set(checks["java"]) == {"name", "status", "message", "fix"}


@pytest.fixture
def connect_listener(monkeypatch):
    """Something listening where SPARK_OPENSTACK_CONNECT_URL points (set before the server starts)."""
    import socket

    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        monkeypatch.setenv(ENV_CONNECT_URL, f"sc://127.0.0.1:{port}")
        yield port


@pytest.mark.parametrize("spark_ext_config", [
    {"master_url": "spark://127.0.0.1:7", "master_webui_url": "http://127.0.0.1:9"}], indirect=True)
@jp_test
async def test_connect_server_state(connect_listener, jp_fetch):
    body = await _get_json(jp_fetch, "spark-openstack", "api", "cluster")
    assert body["connect"] == {"url": f"sc://127.0.0.1:{connect_listener}", "reachable": True}
