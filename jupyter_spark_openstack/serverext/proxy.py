"""The Spark master UI and application (driver) UIs under ``{base_url}spark-openstack/ui/``.

Not an open proxy: the upstream host is never taken from the request. ``ui/master/...`` goes
to the configured master UI; ``ui/app/{app_id}/...`` goes to the driver UI that the master
itself reports for ``app_id`` (its "Application Detail UI" link).

Spark's UI writes root-relative links (``href="/jobs/"``) and sets its JS API root with
``setUIRoot('')``. Spark can prefix them itself (``spark.ui.proxyBase`` /
``spark.ui.reverseProxy`` + ``spark.ui.reverseProxyUrl``), but only when every driver and the
master are configured for one fixed proxy URL. We cannot rely on that for kernels started by
arbitrary kernelspecs, so the proxy rewrites instead: ``href|src|action="/`` and
``setUIRoot('')``/``setAppBasePath('')`` in HTML get the proxy prefix, redirects' ``Location``
is mapped back under the prefix, and the master page's links to known app UIs point at
``ui/app/{id}/``. Read-only: only GET/HEAD are proxied (the master's kill buttons are not).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.utils import url_path_join
from tornado import httpclient, web

from ..core.clusterinfo import APP_ID_RE, parse_app_ui_links
from ..core.spark import uiguard

_ATTR_RE = re.compile(r'((?:href|src|action)=["\'])/(?!/)')
_ROOT_JS_RE = re.compile(r"(setUIRoot|setAppBasePath)\('([^']*)'\)")
_PASS_HEADERS = ("Content-Type", "Cache-Control", "Last-Modified", "ETag", "Expires")


def rewrite_html(text: str, prefix: str, app_links: dict[str, str] | None = None,
                 app_prefix: str | None = None) -> str:
    """Root-relative links and the Spark JS roots -> under ``prefix`` (no trailing slash)."""
    text = _ATTR_RE.sub(lambda m: f"{m.group(1)}{prefix}/", text)
    text = _ROOT_JS_RE.sub(lambda m: f"{m.group(1)}('{prefix}{m.group(2)}')", text)
    if app_links and app_prefix:
        for app_id, url in app_links.items():
            for form in (url, url + "/"):
                text = text.replace(f'href="{form}"', f'href="{app_prefix}{app_id}/"')
    return text


class SparkUIProxyHandler(JupyterHandler):
    auth_resource = "spark-openstack"

    @property
    def ext(self):
        return self.settings["spark_openstack"]

    def ui_prefix(self) -> str:
        return url_path_join(self.base_url, "spark-openstack", "ui")

    async def _upstream(self, kind: str, app_id: str | None) -> str:
        if kind == "master":
            target = self.ext.target()
            if not target.webui_url:
                raise web.HTTPError(404, "no Spark master is configured for this server")
            return target.webui_url
        if not app_id or not APP_ID_RE.match(app_id):
            raise web.HTTPError(404, "not a Spark application id")
        cache = self.ext.cache()
        if cache is None:
            raise web.HTTPError(404, "no Spark master is configured for this server")
        url = await cache.app_ui_url(app_id)
        if not url:
            raise web.HTTPError(404, f"the master reports no UI for {app_id} (finished, or unknown)")
        return url

    @web.authenticated
    @authorized
    async def get(self, kind: str, app_id: str | None = None, path: str | None = None):
        await self._proxy(kind, app_id, path, "GET")

    @web.authenticated
    @authorized
    async def head(self, kind: str, app_id: str | None = None, path: str | None = None):
        await self._proxy(kind, app_id, path, "HEAD")

    async def _proxy(self, kind: str, app_id: str | None, path: str | None, method: str):
        upstream = (await self._upstream(kind, app_id)).rstrip("/")
        prefix = url_path_join(self.ui_prefix(), "master" if kind == "master" else f"app/{app_id}")
        if not path:
            # /ui/master -> /ui/master/ so that relative links resolve under the prefix
            if not self.request.path.endswith("/"):
                self.redirect(prefix + "/" + (f"?{self.request.query}" if self.request.query else ""))
                return
            path = "/"
        if kind == "app" and path == "/":
            # the driver UI's own "/" redirect is not always there (seen 404 here): go to Jobs
            path = "/jobs/"
        url = upstream + path + (f"?{self.request.query}" if self.request.query else "")
        client = self.ext.http_client()
        try:
            resp = await client.fetch(url, method=method, follow_redirects=False, raise_error=False,
                                      request_timeout=self.ext.config.ui_request_timeout,
                                      connect_timeout=self.ext.config.request_timeout,
                                      headers={"Accept": self.request.headers.get("Accept", "*/*"),
                                               # her cluster's UI guard token (uiguard)
                                               **uiguard.headers()})
        except (OSError, httpclient.HTTPError) as e:
            code = 504 if "Timeout" in type(e).__name__ or "timed out" in str(e).lower() else 502
            raise web.HTTPError(code, f"Spark UI at {upstream} did not answer: {e}") from None
        if resp.code == 599:
            code = 504 if "Timeout" in type(resp.error).__name__ else 502
            raise web.HTTPError(code, f"Spark UI at {upstream} did not answer: {resp.error}")
        self.log.debug("spark-openstack proxy: %s -> %s in %.3fs", url, resp.code, resp.request_time)
        self.set_status(resp.code, resp.reason)
        for h in _PASS_HEADERS:
            if h in resp.headers:
                self.set_header(h, resp.headers[h])
        csp = resp.headers.get("Content-Security-Policy")
        if csp:
            self.add_header("Content-Security-Policy", csp)
        loc = resp.headers.get("Location")
        if loc:
            self.set_header("Location", self._map_location(loc, upstream, prefix))
        body = resp.body or b""
        ctype = resp.headers.get("Content-Type", "")
        if body and "text/html" in ctype:
            text = body.decode("utf-8", "replace")
            links = None
            if kind == "master":
                links = parse_app_ui_links(text)
                cache = self.ext.cache()
                if cache is not None and links:
                    cache.remember_app_links(links)
            body = rewrite_html(text, prefix, links, url_path_join(self.ui_prefix(), "app") + "/").encode("utf-8")
        if method == "HEAD":
            self.finish()
        else:
            self.finish(body)

    @staticmethod
    def _map_location(loc: str, upstream: str, prefix: str) -> str:
        up = urlsplit(upstream)
        parts = urlsplit(loc)
        if parts.scheme and parts.netloc:
            if parts.netloc != up.netloc:
                return loc  # somewhere else entirely: leave it, we do not proxy it
            rest = parts.path + (f"?{parts.query}" if parts.query else "")
            return prefix + (rest if rest.startswith("/") else "/" + rest)
        if loc.startswith("/"):
            return prefix + loc
        return loc
