"""Admin handlers: every user's Spark cluster, and stopping one (api-contract.md, "Admin").

- ``GET    spark-openstack/api/admin/clusters``
- ``DELETE spark-openstack/api/admin/clusters/{user}[/{server_name}]``

Both go through the hub REST API (``$JUPYTERHUB_API_URL``) with this server's own
``$JUPYTERHUB_API_TOKEN``; the spawner grants an admin user's server the scopes that needs
(``list:users``, ``read:users``, ``admin:server_state``, ``servers``), so the browser needs
no extra token. Who may use them: the browser user must be a hub admin (the hub's identity
model says ``admin: true``) *and* the hub must accept this server's token; otherwise 403 and
the lab extension hides the admin view. Without JupyterHub there is no admin view (403).

Picked up by ``serverext.extra_handlers()`` through :func:`get_handlers`.
"""

from __future__ import annotations

import json
import os
import re
import time
from datetime import datetime
from urllib.parse import quote

from jupyter_server.auth.decorator import authorized
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from .handlers import BaseSparkHandler

PAGINATION = "application/jupyterhub-pagination+json"
HUB_TIMEOUT = 10.0
# the hub answers a DELETE when the server has stopped, or 202 after its slow_stop_timeout (10 s)
HUB_STOP_TIMEOUT = 60.0
PAGE_LIMIT = 200


def _age_seconds(cluster: dict, server: dict, now: float) -> float | None:
    started_at = cluster.get("started_at")
    if isinstance(started_at, int | float) and started_at > 0:
        return max(0.0, round(now - float(started_at), 1))
    started = server.get("started")
    if isinstance(started, str) and started:
        try:
            ts = datetime.fromisoformat(started.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
        return max(0.0, round(now - ts, 1))
    return None


def cluster_rows(users: list[dict], now: float | None = None) -> list[dict]:
    """The contract's cluster list from the hub's user models (with ``servers`` and their
    ``state``, as returned with the ``admin:server_state`` scope): one row per active server."""
    now = time.time() if now is None else now
    rows = []
    for user in users:
        for name, server in sorted((user.get("servers") or {}).items()):
            state = server.get("state") or {}
            cluster = state.get("cluster") if isinstance(state, dict) else None
            cluster = cluster if isinstance(cluster, dict) else {}
            master = cluster.get("master") if isinstance(cluster.get("master"), dict) else {}
            if server.get("pending"):
                phase = "pending"
            elif server.get("ready"):
                phase = "running"
            else:
                phase = "stopped"
            started = server.get("started")
            if not started and isinstance(cluster.get("started_at"), int | float):
                started = datetime.fromtimestamp(cluster["started_at"]).astimezone().isoformat()
            rows.append({
                "user": user.get("name", ""),
                "server_name": name or "",
                "state": phase,
                "workers": cluster.get("workers"),
                "cores": cluster.get("cores"),
                "memory_mb": cluster.get("memory_mb"),
                "started": started,
                "age_seconds": _age_seconds(cluster, server, now),
                "master_url": cluster.get("master_url") or master.get("master_url"),
            })
    return rows


class HubAdminHandler(BaseSparkHandler):
    """Checks that the browser user is a hub admin and talks to the hub API."""

    def hub_api(self) -> tuple[str, str]:
        url = os.environ.get("JUPYTERHUB_API_URL", "").rstrip("/")
        token = os.environ.get("JUPYTERHUB_API_TOKEN", "")
        if not url or not token:
            raise web.HTTPError(403, "The admin view needs JupyterHub "
                                     "(JUPYTERHUB_API_URL / JUPYTERHUB_API_TOKEN are not set)")
        return url, token

    def check_hub_admin(self) -> None:
        hub_user = getattr(self.current_user, "hub_user", None)
        if not isinstance(hub_user, dict) or hub_user.get("admin") is not True:
            raise web.HTTPError(403, "Only JupyterHub admins can see every user's Spark cluster")

    async def hub_request(self, method: str, path: str, headers: dict | None = None,
                          timeout: float = HUB_TIMEOUT):
        url, token = self.hub_api()
        req = HTTPRequest(url + path, method=method, request_timeout=timeout,
                          headers={"Authorization": f"token {token}", **(headers or {})})
        try:
            return await AsyncHTTPClient().fetch(req)
        except HTTPClientError as e:
            if e.code in (401, 403):
                raise web.HTTPError(403, "The hub refused this server's token the admin scopes "
                                         f"(HTTP {e.code}); is the server's owner a hub admin?") from None
            msg = ""
            if e.response is not None and e.response.body:
                try:
                    msg = json.loads(e.response.body).get("message", "")
                except ValueError:
                    msg = e.response.body[:200].decode(errors="replace")
            if e.code == 599:
                raise web.HTTPError(502, f"The hub API is unreachable: {e}") from None
            raise web.HTTPError(e.code, msg or str(e)) from None
        except OSError as e:
            raise web.HTTPError(502, f"The hub API is unreachable: {e}") from None


class AdminClustersHandler(HubAdminHandler):
    @web.authenticated
    @authorized
    async def get(self):
        self.check_hub_admin()
        users: list[dict] = []
        offset = 0
        while True:
            resp = await self.hub_request(
                "GET", f"/users?state=active&offset={offset}&limit={PAGE_LIMIT}",
                headers={"Accept": PAGINATION})
            page = json.loads(resp.body)
            items = page["items"] if isinstance(page, dict) else page
            users.extend(items)
            nxt = page.get("_pagination", {}).get("next") if isinstance(page, dict) else None
            if not nxt or not items:
                break
            offset = nxt["offset"]
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps({"clusters": cluster_rows(users)}))


_NAME_RE = re.compile(r"^[^/\s]{1,255}$")


class AdminClusterHandler(HubAdminHandler):
    @web.authenticated
    @authorized
    async def delete(self, user: str, server_name: str | None = None):
        self.check_hub_admin()
        for field, value in (("user", user), ("server_name", server_name)):
            if value is not None and not _NAME_RE.match(value):
                raise web.HTTPError(400, f"{field}={value!r}: expected a name without '/' or spaces")
        path = f"/users/{quote(user, safe='')}/server"
        if server_name:
            path = f"/users/{quote(user, safe='')}/servers/{quote(server_name, safe='')}"
        resp = await self.hub_request("DELETE", path, timeout=HUB_STOP_TIMEOUT)
        self.set_status(resp.code if resp.code in (202, 204) else 204)
        self.finish()


def get_handlers() -> list[tuple[str, type]]:
    """Routes below ``{base_url}spark-openstack/``."""
    return [
        ("api/admin/clusters", AdminClustersHandler),
        (r"api/admin/clusters/(?P<user>[^/]+)(?:/(?P<server_name>[^/]+))?", AdminClusterHandler),
    ]
