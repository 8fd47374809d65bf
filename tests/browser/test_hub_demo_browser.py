"""The demo path in a real browser: log in to a real JupyterHub, choose the cluster size in the
spawn form, watch the progress page, land in JupyterLab and run a Spark job in the PySpark
(Spark Connect) kernel on the user's own cluster. Screenshots: test-artifacts/hub-*.png."""

from __future__ import annotations

import re

import pytest

from jupyter_spark_openstack.demo.client import HubClient
from jupyter_spark_openstack.demo.hubprocess import kill_processes, processes_under, start_hub
from tests._clusters import cluster_state, master_state

from .conftest import CHROMIUM, CHROMIUM_ARGS

pytestmark = [pytest.mark.hub, pytest.mark.spark]


def test_login_options_progress_and_a_job_in_the_browser(tmp_path, artifacts):
    from playwright.sync_api import expect, sync_playwright

    hub = start_hub(tmp_path / "hub")
    client = HubClient(hub.url, hub.token)
    try:
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
            card = page.locator('.jp-LauncherCard[title^="PySpark (1 worker"]').first
            card.wait_for(timeout=120_000)
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
            page.keyboard.type("spark.range(1000).count()")
            expect(editor).to_have_text("spark.range(1000).count()")
            page.keyboard.press("Shift+Enter")
            # the run was accepted: the prompt shows [*] (queued/running) or [1]
            expect(cell.locator(".jp-InputPrompt")).to_have_text(re.compile(r"\[(\*|1)\]"),
                                                                 timeout=30_000)
            out = cell.locator(".jp-OutputArea")
            try:
                expect(out.locator(".jp-OutputArea-executeResult")).to_contain_text("1000", timeout=180_000)
            finally:
                page.screenshot(path=str(artifacts / "hub-notebook-job.png"))
            browser.close()
        cluster = cluster_state(client.api("GET", "/users/dora").json()["servers"][""]["state"]["cluster"])
        apps = master_state(cluster).active_apps
        assert [a.name for a in apps] == ["spark-connect-dora"]
        client.stop("dora")
        assert not processes_under(tmp_path / "hub" / "clusters" / "dora")
    finally:
        hub.stop()
        left = processes_under(tmp_path / "hub")
        kill_processes(left)
    assert not left
