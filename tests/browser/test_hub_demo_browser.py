"""The demo path in a real browser: log in to a real JupyterHub, choose the cluster size in the
spawn form, watch the progress page, land in JupyterLab and run a Spark job in the PySpark
(Spark Connect) kernel on the user's own cluster; then every tab of her Spark UIs through her
notebook server's proxy, under JupyterHub's cookie and XSRF rules. Screenshots:
test-artifacts/hub-*.png."""

from __future__ import annotations

import re

import pytest

from jupyter_spark_openstack.demo.client import HubClient
from jupyter_spark_openstack.demo.hubprocess import (
    processes_under,
    start_hub,
    stop_hub_leaving_nothing,
)
from tests._clusters import cluster_state, master_state

from .conftest import CHROMIUM, CHROMIUM_ARGS

pytestmark = [pytest.mark.hub, pytest.mark.spark]


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    h = start_hub(tmp_path_factory.mktemp("hub"))
    h.client = HubClient(h.url, h.token)
    try:
        yield h
    finally:
        stop_hub_leaving_nothing(h)


def test_login_options_progress_and_a_job_in_the_browser(hub, artifacts):
    from playwright.sync_api import expect, sync_playwright

    client = hub.client
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(60_000)
        page.goto(hub.url + "/hub/login")
        page.fill("#username_input", "dora")
        page.fill("#password_input", hub.info["password"])
        page.click("#login_submit")
        # the spawn form: our fields, from the one options schema
        page.wait_for_selector("#spark-workers")
        page.fill("#spark-workers", "1")
        page.select_option("#spark-size", "small")
        page.screenshot(path=str(artifacts / "hub-spawn-form.png"))
        page.click("form button[type=submit]")
        # the progress page shows our events
        expect(page.locator("#progress-log")).to_contain_text("Starting Spark master", timeout=120_000)
        page.locator("#progress-details").evaluate("d => d.open = true")
        page.screenshot(path=str(artifacts / "hub-progress.png"))
        # ... then JupyterLab, whose launcher offers the user's kernels
        page.wait_for_url(re.compile(r".*/user/dora/lab.*"), timeout=300_000)
        _run_in_new_notebook(page, "spark.range(1000).count()", "1000", artifacts=artifacts)
        browser.close()
    cluster = cluster_state(client.api("GET", "/users/dora").json()["servers"][""]["state"]["cluster"])
    apps = master_state(cluster).active_apps
    assert [a.name for a in apps] == ["spark-connect-dora"]
    client.stop("dora")
    assert not processes_under(hub.dir / "clusters" / "dora")


# (tab, path under her app UI, what shows its content once its JavaScript ran)
APP_TABS = [
    ("Jobs", "jobs/", "#completedJob-table tbody tr"),
    ("Stages", "stages/", "#completedStage-table tbody tr"),
    ("Storage", "storage/", "#storage-by-rdd-table tbody tr"),
    ("Environment", "environment/", "#runtime-table tbody tr"),  # environmentpage.js + REST
    ("Executors", "executors/", "#active-executors-table tbody tr"),  # executorspage.js + REST
    ("SQL / DataFrame", "SQL/", "#sql-table tbody tr"),  # allexecutionspage.js + REST
    ("Connect", "connect/", "#sessionstat tbody tr"),
]


def _ui_failures(page, failures: list[str]) -> None:
    """Collect every request of ``page`` that failed: an error status, a detour through the
    hub's OAuth (what a cookie request refused for want of XSRF does), or no answer."""
    def on_response(r):
        if r.status >= 400 or "/oauth2/authorize" in r.url or "/oauth_callback" in r.url:
            failures.append(f"{r.status} {r.request.resource_type} {r.url}")

    def on_failed(r):
        if r.failure != "net::ERR_ABORTED":  # not a request the test's next goto() cut short
            failures.append(f"failed {r.url}: {r.failure}")

    page.on("response", on_response)
    page.on("requestfailed", on_failed)
    page.on("pageerror", lambda e: failures.append(f"page error: {e}"))


def test_every_spark_ui_tab_shows_its_content_through_the_hub(hub, artifacts):
    """Her application UI (every tab, a stage's DAG, a query's plan graph), her master UI, a
    worker's UI and an executor's log, opened in Chromium through her notebook server's proxy
    behind JupyterHub: each page shows its tables, and no request of any page fails."""
    from playwright.sync_api import expect, sync_playwright

    c = hub.client
    r = c.spawn("uma", {"workers": 1})
    assert r.status_code in (201, 202), r.text
    c.wait_ready("uma")
    cluster = cluster_state(c.server("uma")["state"]["cluster"])
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        ctx = browser.new_context(viewport={"width": 1280, "height": 900})
        lab = ctx.new_page()
        lab.set_default_timeout(60_000)
        lab.goto(hub.url + "/hub/login")
        lab.fill("#username_input", "uma")
        lab.fill("#password_input", hub.info["password"])
        lab.click("#login_submit")
        lab.wait_for_url(re.compile(r".*/user/uma/lab.*"), timeout=120_000)
        # a job with a cached table and a shuffle: Storage, several stages and a plan graph
        code = ('df = spark.range(0, 20000, 1, 4).selectExpr("id % 7 AS k", "id AS v").cache()\n'
                'df.groupBy("k").count().orderBy("k").collect()[0]["count"]')
        _run_in_new_notebook(lab, code, "2858")
        app = next(a for a in master_state(cluster).active_apps if a.name == "spark-connect-uma")
        ui = f"{hub.url}/user/uma/spark-openstack/ui/"
        page = ctx.new_page()  # her Spark UI in a tab of its own, as the panel's links open it
        page.set_default_timeout(60_000)
        failures: list[str] = []
        _ui_failures(page, failures)
        seen = {}
        for tab, path, content in APP_TABS:
            page.goto(f"{ui}app/{app.id}/{path}")
            expect(page.locator(content).first).to_be_visible(timeout=30_000)
            seen[tab] = page.locator(content).count()
            page.wait_for_load_state("networkidle")
        # the tab bar's links stay under the proxy (and carry her XSRF token)
        hrefs = page.locator(".navbar-nav a.nav-link").evaluate_all("els => els.map(e => e.href)")
        assert hrefs and all(h.startswith(f"{ui}x/") for h in hrefs), hrefs
        # a stage's page: its tasks (stagepage.js + REST) and its DAG (d3 + dagre)
        page.goto(f"{ui}app/{app.id}/stages/")
        page.locator("#completedStage-table tbody tr a[href*='stage/?id=']").first.click()
        expect(page.locator("#active-tasks-table tbody tr").first).to_be_visible(timeout=30_000)
        page.locator(".expand-dag-viz").first.click()
        expect(page.locator("#dag-viz-graph svg g.node").first).to_be_attached(timeout=30_000)
        page.screenshot(path=str(artifacts / "hub-spark-ui-stage.png"))
        # a query's page: its plan graph
        page.goto(f"{ui}app/{app.id}/SQL/")
        page.locator("#sql-table a[href*='execution/?id=']").first.click()
        expect(page.locator("#plan-viz-graph svg g.node").first).to_be_attached(timeout=30_000)
        # the executors page's log links go through the proxy to the worker, and show the log
        page.goto(f"{ui}app/{app.id}/executors/")
        log_link = page.locator("#active-executors-table a[href*='logType=stderr']").first
        expect(log_link).to_be_visible(timeout=30_000)
        href = log_link.get_attribute("href")
        assert "/spark-openstack/ui/x/" in href and "/worker/worker-" in href, href
        page.goto(hub.url + href if href.startswith("/") else href)
        expect(page.locator("pre").first).to_contain_text("Executor", timeout=30_000)
        # her master UI, and a worker's page through its link there
        page.goto(f"{ui}master/")
        expect(page.locator("table tbody tr").first).to_be_visible(timeout=30_000)
        expect(page.get_by_text("spark-connect-uma").first).to_be_visible(timeout=30_000)
        page.locator("a[href*='/worker/worker-']").first.click()
        expect(page.locator("table tbody tr").first).to_be_visible(timeout=30_000)
        page.screenshot(path=str(artifacts / "hub-spark-ui-worker.png"))
        page.wait_for_load_state("networkidle")
        assert not failures, failures
        assert all(seen.values()), seen
        # the token is what lets a script read her UI: a script's fetch (Sec-Fetch-Mode: cors)
        # with a forged token, or with none, is sent to the hub's login instead of answered
        token = re.search(r"/ui/x/([^/]+)/", page.url).group(1)
        fetch = """async u => { const r = await fetch(u, {redirect: "manual"});
                               return r.type === "opaqueredirect" ? "redirect" : r.status; }"""
        assert page.evaluate(fetch, f"{ui}x/{token}/master/json/") == 200
        assert page.evaluate(fetch, f"{ui}x/{token[:-4]}AAAA/master/json/") == "redirect"
        assert page.evaluate(fetch, f"{ui}master/json/") == "redirect"
        browser.close()
    c.stop("uma")


def _run_in_new_notebook(page, code: str, expect_text: str, artifacts=None):
    """Open a notebook on her PySpark kernel from the launcher, run ``code``, wait for a result
    containing ``expect_text`` (screenshots into ``artifacts`` if given)."""
    from playwright.sync_api import expect

    card = page.locator('.jp-LauncherCard[title^="PySpark (1 worker"]').first
    card.wait_for(timeout=120_000)
    if artifacts:
        page.screenshot(path=str(artifacts / "hub-lab-launcher.png"))
    card.click()
    # Run only once the notebook's kernel is connected and idle: JupyterLab silently
    # clears (does not queue) a cell run while the session has no kernel yet.
    # (the status bar's kernel item reads "<name> | Idle" only once connected)
    expect(page.locator(".jp-StatusBar-Widget").get_by_role(
        "button", name=re.compile(r"PySpark .*\| Idle"))).to_be_visible(timeout=120_000)
    cell = page.locator(".jp-Notebook .jp-Cell").first
    editor = cell.locator(".cm-content")
    editor.click()
    page.keyboard.insert_text(code)  # as typed, without the editor's auto-closed brackets
    expect(editor).to_have_text(code.replace("\n", ""))
    page.keyboard.press("Shift+Enter")
    # the run was accepted: the prompt shows [*] (queued/running) or [1]
    expect(cell.locator(".jp-InputPrompt")).to_have_text(re.compile(r"\[(\*|1)\]"), timeout=30_000)
    out = cell.locator(".jp-OutputArea")
    try:
        expect(out.locator(".jp-OutputArea-executeResult")).to_contain_text(expect_text, timeout=180_000)
    finally:
        if artifacts:
            page.screenshot(path=str(artifacts / "hub-notebook-job.png"))
