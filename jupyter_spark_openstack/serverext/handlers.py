"""REST handlers (api-contract.md). Thin: every decision is in core/."""

from __future__ import annotations

import asyncio
import json
import re

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import ensure_async, url_path_join
from tornado import web

from ..core.diagnostics import diagnose_kernel
from ..core.doctor import run_doctor
from ..core.errors import ValidationError

AUTH_RESOURCE = "spark-openstack"
_LAUNCH_NAME_RE = re.compile(r"\[spark-openstack\] launching kernel \S+ \(([^)]+)\)")


class BaseSparkHandler(APIHandler):
    auth_resource = AUTH_RESOURCE

    @property
    def ext(self):
        return self.settings["spark_openstack"]

    def proxy_prefix(self) -> str:
        return url_path_join(self.base_url, "spark-openstack", "ui") + "/"


class ClusterHandler(BaseSparkHandler):
    @web.authenticated
    @authorized
    async def get(self):
        self.set_header("Cache-Control", "no-store")
        self.set_header("Content-Type", "application/json")
        self.finish(await self.ext.cluster_answer_json(self.proxy_prefix()))


class KernelDiagnosticsHandler(BaseSparkHandler):
    @web.authenticated
    @authorized
    async def get(self, kernel_id: str):
        km = self.kernel_manager
        alive = False
        kernel_name = None
        if kernel_id in km:
            kernel = km.get_kernel(kernel_id)
            kernel_name = kernel.kernel_name
            try:
                alive = bool(await ensure_async(kernel.is_alive()))
            except Exception:  # noqa: BLE001
                alive = False
        try:
            diag = await asyncio.to_thread(diagnose_kernel, kernel_id)
        except ValidationError as e:
            raise web.HTTPError(400, str(e)) from None
        if diag is None:
            if kernel_name is None:
                raise web.HTTPError(404, f"no kernel {kernel_id} and no logs for it")
            diag = {"category": "unknown", "title": "No logs yet",
                    "explanation": "This kernel has written no log yet (it is not a PySpark kernel, "
                                   "or it has just started).",
                    "fix": "", "evidence": [], "rule": None, "log_paths": [], "log_text": ""}
        if kernel_name is None:
            names = _LAUNCH_NAME_RE.findall(diag.get("log_text", ""))
            kernel_name = names[-1] if names else None
        if alive and diag.get("rule") is None:
            # a running kernel whose logs match no failure pattern: nothing to explain
            diag.update(category="ok", title="No problem found",
                        explanation="The kernel is running and its logs show no known failure.",
                        fix="")
        self.finish(json.dumps({"kernel_id": kernel_id, "kernel_name": kernel_name, "alive": alive, **diag}))


class DoctorHandler(BaseSparkHandler):
    @web.authenticated
    @authorized
    async def get(self):
        target = self.ext.target()
        result = await asyncio.to_thread(run_doctor, target=target, timeout=self.ext.config.request_timeout)
        self.finish(json.dumps(result))
