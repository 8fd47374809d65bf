"""The cluster endpoint, its cache and the Spark UI proxy against a real jupyter_server and the
session's real Spark cluster (``spark_cluster``), with a real PySpark kernel as the running app."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from tornado.httpclient import HTTPClientError

from jupyter_spark_openstack.core.spark.ports import free_port

from .conftest import eager_argv, group_alive, install_spec, jp_test, kernel_pgid, start_kernel

pytestmark = pytest.mark.spark


async def _fetch_ok(jp_fetch, *parts, timeout: float = 60.0):
    """GET through the proxy until 200: a driver UI on a busy machine sometimes answers 404 (or
    500) for a few seconds after its app registered (seen here, also with curl straight to the
    driver)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await jp_fetch(*parts)
        except HTTPClientError as e:
            # a 500 passed through from the driver's Jetty ("Server Error") is retried too (seen
            # in CI right after the app registered); our own handler's 500 ("Internal Server
            # Error", tornado's) is not
            from_driver = e.code == 500 and e.response is not None and e.response.reason == "Server Error"
            if (e.code not in (404, 502, 504) and not from_driver) or time.monotonic() > deadline:
                raise
        await asyncio.sleep(1.0)


async def _get_json(jp_fetch, *parts):
    r = await jp_fetch(*parts)
    assert r.code == 200
    return json.loads(r.body)


@pytest.fixture
def cluster_config(spark_cluster, request):
    return {"master_url": spark_cluster["master_url"], "master_webui_url": spark_cluster["webui_url"],
            "refresh_interval": getattr(request, "param", 0.5)}


@pytest.fixture
def spark_ext_config(cluster_config):  # noqa: F811 - this module's default: the real cluster
    return cluster_config


@jp_test
async def test_concurrent_gets_share_one_upstream_request(jp_fetch, jp_serverapp, spark_cluster):
    state = jp_serverapp.web_app.settings["spark_openstack"]
    state.config.refresh_interval = 30.0
    rs = await asyncio.gather(*[jp_fetch("spark-openstack", "api", "cluster") for _ in range(50)])
    bodies = [json.loads(r.body) for r in rs]
    assert state.cache().upstream_requests == 1
    assert {b["fetched_at"] for b in bodies} == {bodies[0]["fetched_at"]}
    assert bodies[0]["master"]["reachable"] is True
    assert bodies[0]["totals"]["workers_alive"] == 2


@jp_test
async def test_cluster_endpoint_and_ui_proxy_with_a_running_kernel(jp_fetch, jp_serverapp, jp_data_dir,
                                                                   jp_base_url, spark_cluster):
    """A PySpark kernel (SparkSession at start, spark.cores.max=1, 512m executors) runs on the
    session cluster: the endpoint shows the 2 workers and the app with the right numbers, and
    the master and app UIs work through the proxy."""
    app_name = f"serverext-test-{int(time.time())}"
    install_spec(jp_data_dir, "pyspark-ok", eager_argv(), master_url=spark_cluster["master_url"], env={
        "TEST_SPARK_MASTER": spark_cluster["master_url"], "TEST_SPARK_APP": app_name,
        "SPARK_LOCAL_IP": "127.0.0.1",
        "TEST_SPARK_CONF": json.dumps({"spark.cores.max": "1", "spark.executor.memory": "512m",
                                       "spark.driver.host": "127.0.0.1",
                                       "spark.driver.bindAddress": "127.0.0.1",
                                       # its own UI port: other Spark UIs on this machine take 4040+
                                       "spark.ui.port": str(free_port())})})
    kid = await start_kernel(jp_fetch, "pyspark-ok")
    pgid = kernel_pgid(jp_serverapp, kid)
    try:
        body, app = None, None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            body = await _get_json(jp_fetch, "spark-openstack", "api", "cluster")
            apps = [a for a in body["apps"]["active"] if a["name"] == app_name]
            if apps and body["totals"]["cores_used"] == 1:
                app = apps[0]
                break
            await asyncio.sleep(0.5)
        assert app is not None, body
        assert body["master"]["status"] == "ALIVE" and body["master"]["reachable"] is True
        assert body["master"]["url"] == spark_cluster["master_url"]
        assert len(body["workers"]) == 2
        for w in body["workers"]:
            assert (w["host"], w["state"], w["cores"], w["memory_mb"]) == ("127.0.0.1", "ALIVE", 1, 1024)
            assert w["last_heartbeat"] > 0
        assert sorted(w["cores_used"] for w in body["workers"]) == [0, 1]
        assert sorted(w["memory_used_mb"] for w in body["workers"]) == [0, 512]
        assert app["cores"] == 1 and app["memory_per_executor_mb"] == 512
        assert app["duration_ms"] >= 0 and app["start_time"] > 0
        assert body["totals"] == {"workers_alive": 2, "cores": 2, "cores_used": 1,
                                  "memory_mb": 2048, "memory_used_mb": 512}
        prefix = f"{jp_base_url}spark-openstack/ui/"
        assert body["master"]["ui_proxy_url"] == prefix + "master/"
        assert app["ui_url"] == f"{prefix}app/{app['id']}/"

        # master UI through the proxy: its links point under the prefix, the app link at our app proxy
        with pytest.raises(HTTPClientError) as e:  # no trailing slash: redirect, so relative links work
            await jp_fetch("spark-openstack", "ui", "master", follow_redirects=False)
        assert e.value.code == 302 and e.value.response.headers["Location"] == prefix + "master/"
        r = await jp_fetch("spark-openstack", "ui", "master/")
        html = r.body.decode()
        assert r.code == 200 and app["id"] in html
        assert r.headers["Referrer-Policy"] == "same-origin"
        # (under JupyterHub the links also carry her XSRF token: tests/browser/test_hub_demo_browser.py)
        tokened = prefix
        assert f'href="{prefix}master/static/webui.css"' in html
        assert f'href="{prefix}app/{app["id"]}/"' in html
        css = await jp_fetch("spark-openstack", "ui", "master", "static", "webui.css")
        assert css.code == 200 and "text/css" in css.headers["Content-Type"]
        css = await jp_fetch("spark-openstack", "ui", "x", "any", "master", "static", "webui.css")
        assert css.code == 200 and "text/css" in css.headers["Content-Type"]  # the token form

        # each worker the master lists: its link there and its own UI go through the proxy
        workers = {w["id"] for w in body["workers"]}
        for wid in workers:
            assert f'href="{tokened}worker/{wid}' in html, wid
            r = await _fetch_ok(jp_fetch, "spark-openstack", "ui", "worker", wid + "/")
            assert r.code == 200 and "Spark Worker" in r.body.decode()
        # not an open proxy: a worker id the master does not list, or not a worker id, is 404
        for bad in ("worker-20000101000000-127.0.0.1-1", "127.0.0.1:22", "worker-x"):
            with pytest.raises(HTTPClientError) as e:
                await jp_fetch("spark-openstack", "ui", "worker", bad + "/")
            assert e.value.code == 404, bad

        # the app (driver) UI: its root shows the Jobs page, redirects stay under the prefix
        r = await _fetch_ok(jp_fetch, "spark-openstack", "ui", "app", app["id"] + "/")
        html = r.body.decode()
        assert r.code == 200 and app_name in html
        assert f"setUIRoot('{tokened}app/{app['id']}')" in html
        assert "setAppBasePath('')" in html  # the JS joins uiRoot + appBasePath: prefix one only
        assert f'src="{tokened}app/{app["id"]}/static/webui.js"' in html
        with pytest.raises(HTTPClientError) as e:
            await jp_fetch("spark-openstack", "ui", "app", app["id"], "jobs", follow_redirects=False)
        assert e.value.code in (301, 302)
        assert e.value.response.headers["Location"] == f"{prefix}app/{app['id']}/jobs/"
        r = await _fetch_ok(jp_fetch, "spark-openstack", "ui", "app", app["id"], "executors/")
        page = r.body.decode()
        assert r.code == 200 and f'from "{tokened}app/{app["id"]}/static/executorspage.js"' in page
        # the executors' log links (REST) -> the proxied worker UI that has the log
        deadline = time.monotonic() + 60  # the driver lists its executor once it registered
        while True:
            r = await _fetch_ok(jp_fetch, "spark-openstack", "ui", "app", app["id"], "api", "v1",
                                "applications", app["id"], "allexecutors")
            logs = [url for e in json.loads(r.body) if e["id"] != "driver"
                    for url in e.get("executorLogs", {}).values()]
            if logs or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        assert logs and all(u.startswith(f"{tokened}worker/worker-") and "/logPage/?" in u
                            for u in logs), logs
        r = await _fetch_ok(jp_fetch, "spark-openstack", "ui", "app", app["id"], "api", "v1", "applications")
        assert json.loads(r.body)[0]["name"] == app_name

        # not an open proxy: unknown app ids are 404, and the host never comes from the request
        with pytest.raises(HTTPClientError) as e:
            await jp_fetch("spark-openstack", "ui", "app", "app-20000101000000-9999/")
        assert e.value.code == 404
        with pytest.raises(HTTPClientError) as e:
            await jp_fetch("spark-openstack", "ui", "app", "127.0.0.1:22/")
        assert e.value.code == 404

        # the kernel's diagnostics: alive, nothing wrong, its output captured
        deadline = time.monotonic() + 180  # SparkSession() can take a while on a busy machine
        while True:
            d = await _get_json(jp_fetch, "spark-openstack", "api", "kernels", kid, "diagnostics")
            if "SparkSession started: " + app["id"] in d["log_text"] or time.monotonic() > deadline:
                break
            await asyncio.sleep(1.0)
        assert "SparkSession started: " + app["id"] in d["log_text"]
        assert d["alive"] is True and d["kernel_name"] == "pyspark-ok" and d["category"] == "ok"
    finally:
        await jp_fetch("api", "kernels", kid, method="DELETE", raise_error=False)
    for _ in range(100):
        if not group_alive(pgid):
            break
        await asyncio.sleep(0.1)
    assert group_alive(pgid) == []


@pytest.mark.parametrize("cluster_config", [0.2], indirect=True)
@jp_test
async def test_one_upstream_request_per_interval(jp_fetch, jp_serverapp):
    state = jp_serverapp.web_app.settings["spark_openstack"]
    t0 = time.monotonic()
    n = 0
    while time.monotonic() - t0 < 1.0:
        await jp_fetch("spark-openstack", "api", "cluster")
        n += 1
    sent = state.cache().upstream_requests
    assert n > sent  # many GETs ...
    assert 1 <= sent <= int(1.0 / 0.2) + 2  # ... at most one upstream read per 0.2 s interval
