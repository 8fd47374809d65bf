"""The "Spark cluster" panel and the status bar item in a real JupyterLab in Chromium,
compared with what the real Spark master reports on its /json/."""

from __future__ import annotations

import re
import time

from playwright.sync_api import expect

from jupyter_spark_openstack.core.spark.master_client import fetch_master_state

from .conftest import open_lab


def _expected_status(webui_url: str) -> str:
    st = fetch_master_state(webui_url)
    n = len(st.alive_workers)
    return f"Spark: {n} worker{'' if n == 1 else 's'} · {st.cores_used}/{st.cores} cores"


def test_panel_lists_the_workers_the_master_reports(page, lab, spark_cluster, artifacts):
    master = fetch_master_state(spark_cluster["webui_url"])
    assert master.reachable and len(master.workers) >= 2
    open_lab(page, lab)
    page.click('.jp-SideBar .lm-TabBar-tab[data-id="jupyter-spark-openstack-panel"]')
    panel = page.locator("#jupyter-spark-openstack-panel")
    expect(panel).to_be_visible()
    rows = panel.locator("tr.jso-worker")
    expect(rows).to_have_count(len(master.workers))
    shown = {rows.nth(i).get_attribute("data-worker-id"): rows.nth(i) for i in range(rows.count())}
    assert set(shown) == {w.id for w in master.workers}
    for w in master.workers:
        row = shown[w.id]
        assert row.locator(".jso-worker-host").inner_text() == w.host
        assert row.locator(".jso-worker-state").inner_text() == w.state
        assert row.locator(".jso-bar").first.inner_text() == f"{w.cores_used}/{w.cores} cores"
    expect(panel.locator(".jso-master-status")).to_have_text("ALIVE")
    assert panel.locator(".jso-master-url").inner_text() == spark_cluster["master_url"]
    href = panel.locator(".jso-master-link").get_attribute("href")
    assert href.endswith("/spark-openstack/ui/master/")
    # the master UI link works through the server's proxy, with the lab's auth (cookie)
    resp = page.request.get(lab.url + href)
    assert resp.status == 200 and "Spark Master" in resp.text()
    page.screenshot(path=str(artifacts / "lab-panel.png"))


def test_status_bar_matches_the_master_and_opens_the_panel(page, lab, spark_cluster, artifacts):
    open_lab(page, lab)
    item = page.locator("#jupyter-spark-openstack-status")
    # the panel polls every second here (refresh_interval=1); the master may change meanwhile
    deadline = time.monotonic() + 20
    text = expected = ""
    while time.monotonic() < deadline:
        expected = _expected_status(spark_cluster["webui_url"])
        text = item.inner_text()
        if text == expected:
            break
        time.sleep(0.5)
    assert text == expected
    assert re.fullmatch(r"Spark: \d+ workers? · \d+/\d+ cores", text)
    expect(page.locator("#jupyter-spark-openstack-panel")).to_be_hidden()
    item.click()
    expect(page.locator("#jupyter-spark-openstack-panel")).to_be_visible()
    page.screenshot(path=str(artifacts / "lab-statusbar.png"))
