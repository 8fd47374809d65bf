"""Admin handlers: every user's Spark cluster, and stopping one (api-contract.md, "Admin").

- ``GET    spark-openstack/api/admin/clusters``
- ``DELETE spark-openstack/api/admin/clusters/{user}[/{server_name}]``

Both go through the hub REST API (``$JUPYTERHUB_API_URL``) with the *browser user's own* OAuth
token, the one the hub issued to her browser when she logged in to this server (JupyterLab
sends it in the ``Authorization`` header; the server's HubOAuth cookie holds it too), never
with this server's ``$JUPYTERHUB_API_TOKEN``: that token, which every kernel can read, keeps
JupyterHub's default scopes and cannot list users or stop servers. The spawner asks the hub to
put the scopes the admin view needs into the OAuth tokens of an admin's server
(``Spawner.oauth_client_allowed_scopes``: ``list:users``, ``read:users``, ``read:servers``,
``admin:server_state`` to list, ``servers`` to stop); the hub grants a user only the scopes she
holds herself, so a non-admin's token has none of them. Who may use them: the browser user must
be a hub admin (the hub's identity model says ``admin: true``) *and* her token must carry the
scopes (the hub checks again); otherwise 403 and the lab extension hides the admin view.
Without JupyterHub there is no admin view (403).

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
from tornado.httpclient import HTTPClientError, HTTPRequest

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
            # the hub keeps a summary of her cluster's state (older hubs: the whole state)
            if isinstance(cluster.get("summary"), dict):
                cluster = cluster["summary"]
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


LIST_SCOPES = ("list:users", "read:users", "read:servers", "admin:server_state")
STOP_SCOPES = ("servers",)


class HubAdminHandler(BaseSparkHandler):
    """Checks that the browser user is a hub admin and talks to the hub API with her token."""

    def hub_auth(self):
        """The HubOAuth of this single-user server (JupyterHub's identity provider, or the
        legacy ``hub_auth`` setting); 403 outside JupyterHub."""
        auth = getattr(self.identity_provider, "hub_auth", None) or self.settings.get("hub_auth")
        if auth is None:
            raise web.HTTPError(403, "The admin view needs JupyterHub "
                                     "(this server does not run under a hub)")
        return auth

    def check_hub_admin(self, scopes: tuple[str, ...]) -> str:
        """The browser user's hub token, if she is a hub admin and it carries ``scopes``."""
        auth = self.hub_auth()
        hub_user = getattr(self.current_user, "hub_user", None)
        if not isinstance(hub_user, dict) or hub_user.get("admin") is not True:
            raise web.HTTPError(403, "Only JupyterHub admins can see every user's Spark cluster")
        missing = sorted(set(scopes) - set(auth.check_scopes(set(scopes), hub_user)))
        if missing:
            raise web.HTTPError(403, f"Your login to this server lacks the scopes {', '.join(missing)} "
                                     "(granted to a hub admin's server at its start; log out and in again)")
        token = auth.get_token(self)
        if not token:
            raise web.HTTPError(403, "No JupyterHub token in this request")
        return token

    async def hub_request(self, token: str, method: str, path: str, headers: dict | None = None,
                          timeout: float = HUB_TIMEOUT):
        auth = self.hub_auth()
        url = (auth.api_url or os.environ.get("JUPYTERHUB_API_URL", "")).rstrip("/")
        if not url:
            raise web.HTTPError(403, "The admin view needs JupyterHub (JUPYTERHUB_API_URL is not set)")
        tls = {k: v for k, v in (("client_cert", auth.certfile), ("client_key", auth.keyfile),
                                 ("ca_certs", auth.client_ca)) if v}
        req = HTTPRequest(url + path, method=method, request_timeout=timeout, **tls,
                          headers={"Authorization": f"token {token}", **(headers or {})})
        try:
            return await self.ext.http_client().fetch(req)
        except HTTPClientError as e:
            if e.code in (401, 403):
                raise web.HTTPError(403, f"The hub refused your token (HTTP {e.code}): "
                                         "it lacks the admin scopes") from None
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
        token = self.check_hub_admin(LIST_SCOPES)
        users: list[dict] = []
        offset = 0
        while True:
            resp = await self.hub_request(
                token, "GET", f"/users?state=active&offset={offset}&limit={PAGE_LIMIT}",
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
        token = self.check_hub_admin(STOP_SCOPES)
        for field, value in (("user", user), ("server_name", server_name)):
            if value is not None and not _NAME_RE.match(value):
                raise web.HTTPError(400, f"{field}={value!r}: expected a name without '/' or spaces")
        path = f"/users/{quote(user, safe='')}/server"
        if server_name:
            path = f"/users/{quote(user, safe='')}/servers/{quote(server_name, safe='')}"
        resp = await self.hub_request(token, "DELETE", path, timeout=HUB_STOP_TIMEOUT)
        self.set_status(resp.code if resp.code in (202, 204) else 204)
        self.finish()


def get_handlers() -> list[tuple[str, type]]:
    """Routes below ``{base_url}spark-openstack/``."""
    return [
        ("api/admin/clusters", AdminClustersHandler),
        (r"api/admin/clusters/(?P<user>[^/]+)(?:/(?P<server_name>[^/]+))?", AdminClusterHandler),
    ]
