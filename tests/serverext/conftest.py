"""Fixtures for the server-extension tests: pytest-jupyter's (jp_serverapp, jp_fetch, ...),
imported here so that its hooks apply to this directory only, plus kernelspec helpers."""

from __future__ import annotations

import functools
import inspect
import json
import os
import sys
import time
from pathlib import Path

import psutil
import pytest
from pytest_jupyter.jupyter_server import *  # noqa: F403

from jupyter_spark_openstack.core.kernelspec import (
    ENV_CONNECT_URL,
    ENV_MASTER_URL,
    ENV_WEBUI_URL,
    METADATA_KEY,
)

DATA = Path(__file__).resolve().parent.parent / "data" / "diagnostics"
EAGER_KERNEL = str(DATA / "eager_kernel.py")


def jp_test(fn):
    """Run an ``async def`` test on pytest-jupyter's loop (the one the test server runs on).

    pytest-asyncio (asyncio_mode=auto, used elsewhere in the suite) would otherwise run the
    coroutine on its own loop, where the server never answers."""

    @functools.wraps(fn)
    def wrapper(*args, jp_asyncio_loop, **kwargs):
        return jp_asyncio_loop.run_until_complete(fn(*args, **kwargs))

    params = [p for p in inspect.signature(fn).parameters.values()]
    wrapper.__signature__ = inspect.Signature(
        params + [inspect.Parameter("jp_asyncio_loop", inspect.Parameter.KEYWORD_ONLY)])
    return wrapper


@pytest.fixture
def spark_ext_config(request):
    """``c.SparkOpenStack`` for the server under test (parametrize indirectly to change it)."""
    return dict(getattr(request, "param", {}) or {})


@pytest.fixture
def jp_server_config(spark_ext_config):  # noqa: F811 - overrides pytest-jupyter's
    return {"ServerApp": {"jpserver_extensions": {"jupyter_spark_openstack": True}},
            "SparkOpenStack": spark_ext_config}


@pytest.fixture(autouse=True)
def _no_spawner_env(monkeypatch):
    for k in (ENV_MASTER_URL, ENV_WEBUI_URL,
              ENV_CONNECT_URL, "JUPYTER_DEFAULT_PROVISIONER_NAME"):
        monkeypatch.delenv(k, raising=False)


@pytest.fixture(autouse=True)
def _restore_default_provisioner():
    """The extension sets the process-wide provisioner default; put it back for other tests."""
    from jupyter_client.provisioning import KernelProvisionerFactory

    factory = KernelProvisionerFactory.instance()
    old = factory.default_provisioner_name
    yield
    factory.default_provisioner_name = old


def install_spec(data_dir, name: str, argv: list[str], env: dict | None = None,
                 pyspark: bool = True, master_url: str | None = None) -> str:
    """Write ``{data_dir}/kernels/{name}/kernel.json``; PySpark ones carry our metadata."""
    d = Path(data_dir) / "kernels" / name
    d.mkdir(parents=True, exist_ok=True)
    spec = {"argv": argv, "display_name": name, "language": "python", "env": env or {},
            "metadata": {METADATA_KEY: {"master_url": master_url}} if pyspark else {}}
    (d / "kernel.json").write_text(json.dumps(spec))
    return name


def eager_argv(python: str = sys.executable) -> list[str]:
    return [python, EAGER_KERNEL, "-f", "{connection_file}"]


async def start_kernel(jp_fetch, name: str) -> str:
    r = await jp_fetch("api", "kernels", method="POST", body=json.dumps({"name": name}))
    assert r.code == 201, r.body
    return json.loads(r.body)["id"]


async def poll_diagnostics(jp_fetch, kernel_id: str, category: str, timeout: float = 90.0) -> dict:
    """GET the diagnostics until ``category`` shows (or time runs out: return the last answer)."""
    import asyncio

    deadline = time.monotonic() + timeout
    body: dict = {}
    while time.monotonic() < deadline:
        r = await jp_fetch("spark-openstack", "api", "kernels", kernel_id, "diagnostics",
                           raise_error=False)
        if r.code == 200:
            body = json.loads(r.body)
            if body["category"] == category:
                return body
        await asyncio.sleep(0.5)
    return body


def kernel_pgid(serverapp, kernel_id: str) -> int | None:
    km = serverapp.kernel_manager
    if kernel_id not in km:
        return None
    prov = km.get_kernel(kernel_id).provisioner
    return getattr(prov, "pgid", None) or getattr(prov, "pid", None)


def group_alive(pgid: int | None) -> list[int]:
    if not pgid:
        return []
    out = []
    for p in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(p.info["pid"]) == pgid and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p.info["pid"])
        except (OSError, psutil.Error):
            continue
    return out
