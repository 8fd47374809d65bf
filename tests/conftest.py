"""Shared fixtures. One real local Spark cluster per test session (``spark_cluster``), started
only when a test asks for it; every test that starts JVMs of its own must stop them."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "test-artifacts"


@pytest.fixture(scope="session", autouse=True)
def _isolated_jupyter_dirs(tmp_path_factory):
    """Keep tests away from the developer's ~/.jupyter, ~/.local/share/jupyter and runtime dir."""
    root = tmp_path_factory.mktemp("jupyter-home")
    saved = {k: os.environ.get(k) for k in
             ("JUPYTER_RUNTIME_DIR", "JUPYTER_DATA_DIR", "JUPYTER_CONFIG_DIR", "IPYTHONDIR")}
    os.environ["JUPYTER_RUNTIME_DIR"] = str(root / "runtime")
    os.environ["JUPYTER_DATA_DIR"] = str(root / "data")
    os.environ["JUPYTER_CONFIG_DIR"] = str(root / "config")
    os.environ["IPYTHONDIR"] = str(root / "ipython")
    yield root
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def spark_cluster(tmp_path_factory):
    """A real local Spark standalone cluster: master + 2 workers (1 core, 1g each).

    Shared by every test of the session that needs *a* cluster; tests that need their own
    (stop/start, auth, leaks) start one themselves.
    """
    from jupyter_spark_openstack.core.localcluster import LocalCluster

    cluster = LocalCluster(tmp_path_factory.mktemp("spark-cluster"))
    state = cluster.start(workers=2, worker_cores=1, worker_memory="1g")
    try:
        yield state
    finally:
        cluster.stop()


@pytest.fixture
def python_exe():
    return sys.executable


def pytest_collection_modifyitems(config, items):
    """Browser tests last: Playwright's sync API marks its event loop as running in the main
    thread while a browser is open; nothing asyncio-based should run after one by accident."""
    items.sort(key=lambda item: "/tests/browser/" in str(item.fspath).replace(os.sep, "/"))
