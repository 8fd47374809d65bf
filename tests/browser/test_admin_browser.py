"""The admin view against a real JupyterHub (the project's spawner, local provisioner, real
Spark clusters): a hub admin sees every user's cluster in JupyterLab and stops alice's (the lab
calls the admin API with her browser's OAuth token); alice's lab gets 403 from the admin API
and shows no admin button, tab or command."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import pytest
from playwright.sync_api import expect

from jupyter_spark_openstack.demo.client import HubClient
from jupyter_spark_openstack.demo.hubconfig import write_hub_config
from jupyter_spark_openstack.demo.hubprocess import HubProcess, kill_processes, processes_under

pytestmark = [pytest.mark.hub, pytest.mark.spark]


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    d = tmp_path_factory.mktemp("hub-admin")
    info = write_hub_config(d, admin_users=("admin",), spawner_overrides={"cluster_start_timeout": 240.0})
    h = HubProcess(info).start()
    h.client = HubClient(info["url"], info["api_token"])
    try:
        yield h
    finally:
        h.stop()
        left = _processes_under(d)
        kill_processes(left)
        assert not left, f"processes left after the hub stopped: {[p.cmdline()[:3] for p in left]}"


def _processes_under(d):
    for _ in range(5):  # a process may exit while it is being inspected
        try:
            return processes_under(d)
        except psutil.NoSuchProcess:
            time.sleep(0.5)
    return processes_under(d)


def _login(page, hub, user):
    page.goto(hub.url + "/hub/login")
    page.fill("#username_input", user)
    page.fill("#password_input", hub.info["password"])
    page.click("#login_submit")
    page.wait_for_url(lambda url: "/hub/login" not in url)


def _open_lab(page, hub, user):
    page.goto(f"{hub.url}/user/{user}/lab")
    page.wait_for_selector("#jupyter-spark-openstack-status", timeout=90000)
    page.click('.jp-SideBar .lm-TabBar-tab[data-id="jupyter-spark-openstack-panel"]')


ADMIN_COMMAND = "Spark clusters of all users (admin)"


def _open_lab_and_admin_answer(page, hub, user) -> int:
    """Open the lab; the status of the lab's own admin-API request (which decides the view)."""
    path = f"/user/{user}/spark-openstack/api/admin/clusters"  # the lab adds a cache buster
    with page.expect_response(lambda r: urlsplit(r.url).path == path, timeout=120000) as answer:
        _open_lab(page, hub, user)
    return answer.value.status


def _palette_labels(page, query: str) -> list[str]:
    """The command palette's items for ``query`` (once the panel command is listed)."""
    page.keyboard.press("Control+Shift+C")
    palette = page.locator(".jp-ModalCommandPalette")
    palette.locator("input.lm-CommandPalette-input").fill(query)
    items = palette.locator(".lm-CommandPalette-item .lm-CommandPalette-itemLabel")
    expect(items.filter(has_text="Show Spark cluster panel")).to_have_count(1)
    labels = items.all_inner_texts()
    page.keyboard.press("Escape")
    return labels


@pytest.fixture
def hub_log(hub, artifacts):
    yield
    shutil.copyfile(hub.log_path, artifacts / "hub-admin-jupyterhub.log")


def test_admin_tab_lists_and_stops_a_users_cluster(browser, hub, hub_log, artifacts):
    c = hub.client
    for user in ("alice", "admin"):  # one after the other: 2 cores here
        r = c.spawn(user, {"workers": 1, "size": "small"})
        assert r.status_code in (201, 202), f"{r.text}\n{hub.log_tail(60)}"
        c.wait_ready(user)
    alice_procs = _processes_under(Path(hub.info["dir"]) / "clusters" / "alice")
    assert alice_procs, "alice's cluster runs no process?"

    # alice: no admin view, and the API refuses her
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        page = ctx.new_page()
        page.set_default_timeout(30000)
        _login(page, hub, "alice")
        assert _open_lab_and_admin_answer(page, hub, "alice") == 403
        panel = page.locator("#jupyter-spark-openstack-panel")
        expect(panel.locator("tr.jso-worker")).to_have_count(1)
        expect(panel.locator(".jso-open-admin")).to_be_hidden()
        labels = _palette_labels(page, "Spark")
        assert ADMIN_COMMAND not in labels, labels
        expect(page.locator("#jupyter-spark-openstack-admin-tab")).to_have_count(0)
        expect(page.locator(".jso-admin-table")).to_have_count(0)
        resp = page.request.get(f"{hub.url}/user/alice/spark-openstack/api/admin/clusters")
        assert resp.status == 403, resp.text()
        assert resp.json()["message"] == "Only JupyterHub admins can see every user's Spark cluster"
        page.screenshot(path=str(artifacts / "hub-alice-no-admin.png"))
    finally:
        ctx.close()

    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        page = ctx.new_page()
        page.set_default_timeout(30000)
        _login(page, hub, "admin")
        assert _open_lab_and_admin_answer(page, hub, "admin") == 200
        button = page.locator("#jupyter-spark-openstack-panel .jso-open-admin")
        expect(button).to_be_visible()
        labels = _palette_labels(page, "Spark")
        assert ADMIN_COMMAND in labels, labels
        button.click()
        table = page.locator(".jso-admin-table")
        expect(table).to_be_visible()
        rows = table.locator("tr.jso-admin-row")
        expect(rows).to_have_count(2)
        alice = table.locator('tr.jso-admin-row[data-user="alice"]')
        cells = alice.locator("td")
        assert cells.nth(0).inner_text() == "alice"
        assert cells.nth(1).inner_text() == "1"  # workers
        assert cells.nth(2).inner_text() == "1"  # cores
        assert cells.nth(4).inner_text() == "running"
        page.screenshot(path=str(artifacts / "hub-admin-view.png"))

        alice.locator("button.jso-admin-stop").click()
        expect(page.locator(".jso-admin-message")).to_contain_text("Stopping alice")
        # the hub answers the DELETE once the server has stopped or after its slow_stop_timeout
        expect(page.locator(".jso-admin-message")).to_contain_text("Stop requested for alice",
                                                                   timeout=120000)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and c.server("alice") is not None:
            time.sleep(1)
        assert c.server("alice") is None, "alice's server is still there"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(p.is_running() for p in alice_procs):
            time.sleep(0.5)
        assert not [p.pid for p in alice_procs if p.is_running()], "alice's Spark processes survived"
        page.locator(".jso-admin-refresh").click()
        expect(table.locator("tr.jso-admin-row")).to_have_count(1)
        expect(table.locator('tr.jso-admin-row[data-user="admin"]')).to_have_count(1)
        page.screenshot(path=str(artifacts / "hub-admin-after-stop.png"))
    finally:
        ctx.close()
        c.stop("admin")
