"""jupyter_server extension: the user's Spark cluster, Spark UIs, kernel diagnostics, doctor.

Enabled by ``jupyter-config/jupyter_server_config.d/jupyter_spark_openstack.json`` (installed
into ``etc/jupyter`` by pip). Routes, all under the server's base URL (see api-contract.md):

- ``GET spark-openstack/api/cluster``                      cluster state (cached, coalesced)
- ``GET spark-openstack/api/kernels/{kernel_id}/diagnostics``  why a kernel died
- ``GET spark-openstack/api/doctor``                       setup checks
- ``GET spark-openstack/ui/master/...``, ``ui/app/{app_id}/...``, ``ui/worker/{worker_id}/...``
  Spark UIs through this server (also under ``ui/x/{xsrf}/``: see proxy.py)

Other modules add routes through :func:`extra_handlers`: a module ``serverext/admin.py`` that
defines ``get_handlers() -> [(path_below_spark_openstack, HandlerClass), ...]`` is picked up
(paths like ``"api/admin/clusters"``; they are joined to ``{base_url}spark-openstack/``).
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import time

from jupyter_server.utils import url_path_join

from ..core.clusterinfo import MasterStateCache, MasterTarget, cluster_answer, resolve_master
from ..core.spark.ports import port_open
from .config import SparkOpenStack

EXTRA_HANDLER_MODULES = ["admin"]
TARGET_TTL = 30.0  # seconds a resolved master (config/env/kernelspecs) is reused


class SparkServerState:
    """What the handlers share: settings, the resolved master and its state cache."""

    def __init__(self, config: SparkOpenStack, log=None):
        self.config = config
        self.log = log
        self._target: MasterTarget | None = None
        self._target_at = float("-inf")
        self._cache: MasterStateCache | None = None
        self._connect: tuple[float, dict | None] = (float("-inf"), None)
        self._http = None
        self._answer: tuple[tuple, str] | None = None

    def target(self) -> MasterTarget:
        now = time.monotonic()
        if self._target is None or now - self._target_at > TARGET_TTL:
            c = self.config
            try:
                t = resolve_master(master_url=c.master_url or None, master_webui_url=c.master_webui_url or None,
                                   connect_url=c.connect_url or None)
            except ValueError as e:
                if self.log:
                    self.log.error("spark-openstack: %s", e)
                t = MasterTarget(None, None, None, "none")
            if self._target is None or t.webui_url != self._target.webui_url:
                self._cache = None
            self._target, self._target_at = t, now
        return self._target

    def cache(self) -> MasterStateCache | None:
        t = self.target()
        if not t.webui_url:
            return None
        if self._cache is None:
            self._cache = MasterStateCache(t.webui_url, refresh_interval=self.config.refresh_interval,
                                           timeout=self.config.request_timeout)
        return self._cache

    def http_client(self):
        """Our own tornado client (``AsyncHTTPClient()`` is a per-loop singleton that other
        code, e.g. test clients, may have replaced with one bound to another server)."""
        if self._http is None:
            from tornado.httpclient import AsyncHTTPClient  # noqa: PLC0415

            self._http = AsyncHTTPClient(force_instance=True, max_clients=20)
        return self._http

    async def connect_info(self, url: str | None) -> dict | None:
        """``{"url", "reachable"}`` of the Spark Connect server (a TCP check per refresh interval)."""
        if not url:
            return None
        at, cached = self._connect
        if cached and cached.get("url") == url and time.monotonic() - at < self.config.refresh_interval:
            return cached
        hostport = url[len("sc://"):].split("/")[0].split(";")[0]
        host, _, port = hostport.rpartition(":")
        ok = bool(host and port.isdigit()) and await asyncio.to_thread(
            port_open, host.strip("[]"), int(port), timeout=min(1.0, self.config.request_timeout))
        info = {"url": url, "reachable": ok}
        self._connect = (time.monotonic(), info)
        return info

    async def cluster_answer_json(self, proxy_prefix: str) -> str:
        """The answer serialized once per upstream read (every poller gets the same bytes)."""
        t = self.target()
        cache = self.cache()
        state = await cache.get() if cache else None
        key = (id(state), state.fetched_at if state else None, t, proxy_prefix)
        if self._answer is not None and self._answer[0] == key:
            return self._answer[1]
        body = json.dumps(cluster_answer(t, state, refresh_interval=self.config.refresh_interval,
                                         proxy_prefix=proxy_prefix if self.config.proxy_ui else None,
                                         connect=await self.connect_info(t.connect_url)))
        self._answer = (key, body)
        return body


def extra_handlers(log=None) -> list[tuple[str, type]]:
    """Routes other modules of this package contribute (``serverext/admin.py``'s ``get_handlers()``)."""
    out: list[tuple[str, type]] = []
    for name in EXTRA_HANDLER_MODULES:
        try:
            mod = importlib.import_module(f"{__name__}.{name}")
            getter = getattr(mod, "get_handlers", None)
            extra = list(getter()) if getter is not None else None
        except Exception as e:  # noqa: BLE001 - one broken add-on must not take the cluster API down
            if isinstance(e, ModuleNotFoundError) and e.name == f"{__name__}.{name}":
                continue  # an optional add-on that is not there
            if log:
                log.error("spark-openstack: %s.%s not loaded: %s", __name__, name, e)
            continue
        if extra is not None:
            out.extend(extra)
        elif log:
            log.warning("spark-openstack: %s.%s has no get_handlers()", __name__, name)
    return out


def _use_capture_provisioner(serverapp) -> None:
    """Make our capturing provisioner the default, unless someone chose another default."""
    from jupyter_client.provisioning import KernelProvisionerFactory  # noqa: PLC0415

    from .capture import PROVISIONER_NAME  # noqa: PLC0415

    factory = KernelProvisionerFactory.instance()
    if os.environ.get(factory.default_provisioner_name_env):
        return
    if factory.default_provisioner_name in ("local-provisioner", PROVISIONER_NAME):
        if factory._check_availability(PROVISIONER_NAME):
            factory.default_provisioner_name = PROVISIONER_NAME
        else:
            serverapp.log.warning("spark-openstack: kernel provisioner %r is not installed "
                                  "(pip install the package); kernel output is not captured",
                                  PROVISIONER_NAME)


def _load_jupyter_server_extension(serverapp) -> None:
    from . import remote  # noqa: PLC0415
    from .handlers import ClusterHandler, DoctorHandler, KernelDiagnosticsHandler  # noqa: PLC0415
    from .proxy import SparkUIProxyHandler  # noqa: PLC0415

    remote.install(serverapp)   # kernelspecs a spawner passed in the environment, if any
    config = SparkOpenStack(parent=serverapp)
    state = SparkServerState(config, serverapp.log)
    web_app = serverapp.web_app
    web_app.settings["spark_openstack"] = state
    base = url_path_join(web_app.settings["base_url"], "spark-openstack")
    kid = r"(?P<kernel_id>[A-Za-z0-9][A-Za-z0-9_.\-]{0,127})"
    handlers: list[tuple[str, type]] = [
        (url_path_join(base, "api", "cluster"), ClusterHandler),
        (url_path_join(base, "api", "kernels", kid, "diagnostics"), KernelDiagnosticsHandler),
        (url_path_join(base, "api", "doctor"), DoctorHandler),
    ]
    if config.proxy_ui:
        ui = url_path_join(base, "ui") + r"(?:/x/(?P<xsrf>[^/]+))?"  # see proxy.py on the token
        handlers += [
            (ui + r"/(?P<kind>master)(?P<path>/.*)?", SparkUIProxyHandler),
            (ui + r"/(?P<kind>app|worker)/(?P<app_id>[^/]+)(?P<path>/.*)?", SparkUIProxyHandler),
        ]
    handlers += [(url_path_join(base, path), cls) for path, cls in extra_handlers(serverapp.log)]
    web_app.add_handlers(".*$", handlers)
    if config.capture_kernel_output:
        _use_capture_provisioner(serverapp)
    t = state.target()
    serverapp.log.info("jupyter_spark_openstack: extension loaded; master %s (from %s)",
                       t.master_url or t.webui_url or "none", t.source)


# jupyter_server also accepts this older name
load_jupyter_server_extension = _load_jupyter_server_extension
