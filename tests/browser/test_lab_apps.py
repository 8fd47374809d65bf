"""A running Spark application appears in the panel with a link to its UI through the
notebook server's proxy, and the status bar counts its cores; a master that does not answer
is shown plainly as unreachable."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

from playwright.sync_api import expect

from jupyter_spark_openstack.core.kernelspec import ENV_MASTER_URL, ENV_WEBUI_URL
from jupyter_spark_openstack.core.spark.master_client import fetch_master_state
from tests._labserver import LabServer, free_port

from .conftest import open_lab

APP_NAME = "jso-browser-app"
DRIVER = textwrap.dedent("""
    import sys
    from pyspark.sql import SparkSession
    spark = (SparkSession.builder.master(sys.argv[1]).appName(sys.argv[2])
             .config("spark.driver.host", "127.0.0.1").config("spark.driver.bindAddress", "127.0.0.1")
             .config("spark.ui.port", sys.argv[3])
             .config("spark.executor.memory", "512m").config("spark.cores.max", "1")
             .getOrCreate())
    print(spark.sparkContext.applicationId, flush=True)
    sys.stdin.read()   # run until the test closes stdin
    spark.stop()
""")


def test_running_app_is_listed_with_its_ui_link(page, lab, spark_cluster, artifacts):
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, spark_cluster["master_url"], APP_NAME,
                               str(free_port())],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              text=True)
    try:
        app_id = driver.stdout.readline().strip()
        assert app_id.startswith("app-"), f"driver did not start (exit {driver.poll()})"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            master = fetch_master_state(spark_cluster["webui_url"])
            if any(a.id == app_id for a in master.active_apps) and master.cores_used >= 1:
                break
            time.sleep(0.5)
        open_lab(page, lab)
        page.click('.jp-SideBar .lm-TabBar-tab[data-id="jupyter-spark-openstack-panel"]')
        app = page.locator(f'#jupyter-spark-openstack-panel li.jso-app[data-app-id="{app_id}"]')
        expect(app).to_be_visible()
        link = app.locator("a.jso-app-link")
        expect(link).to_have_text(APP_NAME)
        href = link.get_attribute("href")
        assert href.endswith(f"/spark-openstack/ui/app/{app_id}/"), href
        resp = page.request.get(lab.url + href)
        assert resp.status == 200, resp.status
        assert APP_NAME in resp.text()
        master = fetch_master_state(spark_cluster["webui_url"])
        expected = f"Spark: {len(master.alive_workers)} workers · {master.cores_used}/{master.cores} cores"
        expect(page.locator("#jupyter-spark-openstack-status")).to_have_text(expected)
        page.screenshot(path=str(artifacts / "lab-panel-running-app.png"))
    finally:
        if driver.poll() is None:
            driver.stdin.close()
            try:
                driver.wait(60)
            except subprocess.TimeoutExpired:
                driver.kill()
                driver.wait(10)


def test_unreachable_master_is_shown_plainly(page, tmp_path, artifacts):
    closed = free_port()  # nothing listens there
    server = LabServer(tmp_path / "lab", env={
        ENV_MASTER_URL: f"spark://127.0.0.1:{closed}",
        ENV_WEBUI_URL: f"http://127.0.0.1:{closed}",
    }, extra_args=["--LabApp.expose_app_in_browser=True"]).start()
    try:
        open_lab(page, server)
        expect(page.locator("#jupyter-spark-openstack-status")).to_have_text("Spark: master unreachable")
        page.locator("#jupyter-spark-openstack-status").click()
        panel = page.locator("#jupyter-spark-openstack-panel")
        expect(panel.locator(".jso-master-status")).to_have_text("UNREACHABLE")
        expect(panel.locator(".jso-state-unreachable")).to_be_visible()
        expect(panel.locator("tr.jso-worker")).to_have_count(0)
        page.screenshot(path=str(artifacts / "lab-panel-unreachable.png"))
    finally:
        assert server.stop() == []
