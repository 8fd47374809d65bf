"""Browser tests: Debian's Chromium driven by Playwright (never `playwright install`) against a
real JupyterLab (tests/_labserver.py) and the session's real Spark cluster."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jupyter_spark_openstack.core.kernelspec import (
    ENV_MASTER_URL,
    ENV_START_TIMEOUT,
    ENV_WEBUI_URL,
    METADATA_KEY,
)
from tests._labserver import LabServer, free_port  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parent.parent.parent / "test-artifacts"
BROKEN_KERNEL = "pyspark-broken"
NO_MASTER_KERNEL = "pyspark-nomaster"
LIVE_KERNEL = "pyspark-live"


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/browser/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def bare_python(tmp_path_factory) -> str:
    """An interpreter that cannot import ipykernel (a venv without pip or site-packages)."""
    d = tmp_path_factory.mktemp("bare-venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(d / "venv")], check=True)
    return str(d / "venv" / "bin" / "python")


def write_kernelspec(share: Path, name: str, argv: list[str], metadata: dict) -> None:
    kdir = share / "kernels" / name
    kdir.mkdir(parents=True, exist_ok=True)
    (kdir / "kernel.json").write_text(json.dumps({
        "argv": argv, "display_name": f"PySpark ({name})", "language": "python",
        "metadata": metadata}))


@pytest.fixture(scope="module")
def lab(tmp_path_factory, spark_cluster, bare_python):
    """JupyterLab on 127.0.0.1 whose Spark master is the session cluster, with a PySpark
    kernelspec whose interpreter has no ipykernel."""
    root = tmp_path_factory.mktemp("lab")
    share = root / "share"
    write_kernelspec(share, BROKEN_KERNEL,
                     [bare_python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                     {METADATA_KEY: {"master_url": spark_cluster["master_url"],
                                                  "webui_url": spark_cluster["webui_url"]}})
    # the project's real PySpark kernel, pointed at a master port where nothing listens
    closed = free_port()
    kdir = share / "kernels" / NO_MASTER_KERNEL
    kdir.mkdir(parents=True)
    (kdir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "jupyter_spark_openstack.kernel", "-f", "{connection_file}"],
        "display_name": "PySpark (no master)", "language": "python",
        "env": {ENV_MASTER_URL: f"spark://127.0.0.1:{closed}",
                ENV_START_TIMEOUT: "20"},
        "metadata": {METADATA_KEY: {"master_url": f"spark://127.0.0.1:{closed}"}}}))
    # the project's real PySpark kernel (classic) on the session cluster
    from jupyter_spark_openstack.core.kernelspec import install_kernelspec
    from jupyter_spark_openstack.core.models import KernelSettings

    install_kernelspec(KernelSettings.parse(master=spark_cluster["master_url"], name=LIVE_KERNEL,
                                            display_name="PySpark (live)", executor_memory="512m",
                                            cores_max=2, webui_url=spark_cluster["webui_url"]),
                       prefix=root / "prefix")
    env = {
        "JUPYTER_PATH": os.pathsep.join([str(share), str(root / "prefix" / "share" / "jupyter")]),
        ENV_MASTER_URL: spark_cluster["master_url"],
        ENV_WEBUI_URL: spark_cluster["webui_url"],
        "SPARK_OPENSTACK_KERNEL_LOG_DIR": str(root / "kernel-logs"),
    }
    server = LabServer(root, env=env,
                       extra_args=["--LabApp.expose_app_in_browser=True",
                                   "--SparkOpenStack.refresh_interval=1"]).start()
    server.no_master_url = f"spark://127.0.0.1:{closed}"
    try:
        yield server
    finally:
        left = server.stop()
        assert left == [], f"processes left behind by jupyter lab: {left}"


@pytest.fixture(scope="module")
def browser():
    """One Chromium per module. Not per session: while Playwright's sync API is open it leaves
    its event loop marked as running in the main thread, which breaks every later test that
    runs asyncio (asyncio.run, pytest-asyncio, pytest-jupyter)."""
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser, request, artifacts):
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    pg = ctx.new_page()
    pg.set_default_timeout(30000)
    yield pg
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        pg.screenshot(path=str(artifacts / f"{request.node.name}-failure.png"))
    ctx.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def open_lab(page, lab, workspace: str | None = None) -> None:
    """Open JupyterLab in a fresh workspace (no notebook of an earlier test reopens)."""
    import secrets

    ws = workspace or "t" + secrets.token_hex(4)
    page.goto(lab.lab_url(f"lab/workspaces/{ws}") + "&reset")
    page.wait_for_selector("#jp-main-dock-panel", state="attached", timeout=60000)
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.started !== undefined")
    page.wait_for_selector("#jupyter-spark-openstack-status", timeout=30000)
