"""The Spark master UI and application (driver) UIs under ``{base_url}spark-openstack/ui/``.

Not an open proxy: the upstream host is never taken from the request. ``ui/master/...`` goes
to the configured master UI; ``ui/app/{app_id}/...`` goes to the driver UI that the master
itself reports for ``app_id`` (its "Application Detail UI" link).

Spark's UI writes root-relative links (``href="/jobs/"``) and sets its JS API root with
``setUIRoot('')``. Spark can prefix them itself (``spark.ui.proxyBase`` /
``spark.ui.reverseProxy`` + ``spark.ui.reverseProxyUrl``), but only when every driver and the
master are configured for one fixed proxy URL. We cannot rely on that for kernels started by
arbitrary kernelspecs, so the proxy rewrites instead: ``href|src|action="/``, inline module
imports ``from "/...``, and ``setUIRoot('')`` in HTML get the proxy prefix (not
``setAppBasePath``: the JS joins the two), redirects' ``Location``
is mapped back under the prefix, and the master page's links to known app UIs point at
``ui/app/{id}/``. Read-only: only GET/HEAD are proxied (the master's kill buttons are not).

``ui/worker/{worker_id}/...`` goes to the web UI of a worker that the master lists (its
executor log pages): the master page's worker links and the executors' log links in the
application UI's REST answers point there, so logs of workers on other hosts open too.

Under JupyterHub, cookie-authenticated requests that are not page navigations (module
scripts, ``$.getJSON``: ``Sec-Fetch-Mode: cors``) must carry the XSRF token, and the Spark UI's
JavaScript sends none. So the links and JS roots of a proxied page carry it in the path,
``ui/x/{xsrf}/app/{id}/...``: module imports and REST calls made relative to them inherit it.
The token is checked like JupyterHub's ``_xsrf`` argument; it is only ever written into pages
served to her own navigations, which JupyterHub authenticates by cookie anyway, and
``Referrer-Policy: same-origin`` keeps it from leaving the hub in a Referer.
"""

from __future__ import annotations

import hmac
import re
from urllib.parse import quote, urlsplit

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.utils import url_path_join
from tornado import httpclient, web

from ..core.clusterinfo import APP_ID_RE, WORKER_ID_RE, parse_app_ui_links
from ..core.spark import uiguard

_ATTR_RE = re.compile(r'((?:href|src|action)=["\'])/(?!/)')
# only the UI root: Spark's JS joins uiRoot + appBasePath (the latter is a history-server
# path, '' here), so prefixing both doubled every link it builds (SQL, timeline, DAG)
_ROOT_JS_RE = re.compile(r"(setUIRoot)\('([^']*)'\)")
# an inline module script's root-relative import (the Executors page: from "/static/...")
_SCRIPT_RE = re.compile(r"<script\b[^>]*>.*?</script>", re.DOTALL | re.IGNORECASE)
_IMPORT_RE = re.compile(r"""(\bfrom\s*["']|\bimport\s*\(\s*["']|\bimport\s+["'])/(?!/)""")
_PASS_HEADERS = ("Content-Type", "Cache-Control", "Last-Modified", "ETag", "Expires")


def rewrite_html(text: str, prefix: str, app_links: dict[str, str] | None = None,
                 app_prefix: str | None = None, worker_links: dict[str, str] | None = None) -> str:
    """Root-relative links and the Spark JS roots -> under ``prefix`` (no trailing slash);
    links to known app UIs -> ``{app_prefix}{app_id}/``; worker UI URLs -> their proxy path."""
    text = _ATTR_RE.sub(lambda m: f"{m.group(1)}{prefix}/", text)
    text = _SCRIPT_RE.sub(lambda m: _IMPORT_RE.sub(lambda i: f"{i.group(1)}{prefix}/", m.group(0)), text)
    text = _ROOT_JS_RE.sub(lambda m: f"{m.group(1)}('{prefix}{m.group(2)}')", text)
    if app_links and app_prefix:
        for app_id, url in app_links.items():
            for form in (url, url + "/"):
                text = text.replace(f'href="{form}"', f'href="{app_prefix}{app_id}/"')
    return rewrite_worker_urls(text, worker_links)


def rewrite_worker_urls(text: str, worker_links: dict[str, str] | None) -> str:
    """Each worker UI URL (``http://host:port``, as the master lists it) -> the path that
    proxies it, where it is followed by ``/``, a quote or ``<`` (not a longer port)."""
    for url, path in (worker_links or {}).items():
        text = re.sub(re.escape(url.rstrip("/")) + r"(?=[/\"'<])", path, text)
    return text


class SparkUIProxyHandler(JupyterHandler):
    auth_resource = "spark-openstack"

    @property
    def ext(self):
        return self.settings["spark_openstack"]

    def ui_prefix(self) -> str:
        return url_path_join(self.base_url, "spark-openstack", "ui")

    def token_prefix(self) -> str:
        """Where the links of a proxied page point: under JupyterHub, :meth:`ui_prefix` with
        her XSRF token (stable for her login session); elsewhere (a plain jupyter_server,
        whose GETs need no XSRF and whose masked token changes per request) :meth:`ui_prefix`."""
        if getattr(self.identity_provider, "hub_auth", None) is None:
            return self.ui_prefix()
        token = self.xsrf_token
        if isinstance(token, bytes):
            token = token.decode("ascii", "replace")
        return url_path_join(self.ui_prefix(), "x", quote(token, safe=""))

    def check_xsrf_cookie(self) -> None:
        """A token in the path (``ui/x/{xsrf}/``) counts as the ``_xsrf`` argument; without
        one (or with a stale one) the usual check applies, which page navigations pass."""
        token = self.path_kwargs.get("xsrf")
        if token:
            expected = self.xsrf_token
            if isinstance(expected, str):
                expected = expected.encode("ascii", "replace")
            if hmac.compare_digest(token.encode("utf-8", "replace"), expected):
                return
        super().check_xsrf_cookie()

    async def _workers(self) -> dict[str, str]:
        """``{worker_id: its web UI URL}`` of the workers the master lists now."""
        cache = self.ext.cache()
        if cache is None:
            return {}
        state = await cache.get()
        return {w.id: w.webui.rstrip("/") for w in state.alive_workers if w.id and w.webui}

    async def _upstream(self, kind: str, app_id: str | None) -> str:
        if kind == "master":
            target = self.ext.target()
            if not target.webui_url:
                raise web.HTTPError(404, "no Spark master is configured for this server")
            return target.webui_url
        if kind == "worker":
            if not app_id or not WORKER_ID_RE.match(app_id):
                raise web.HTTPError(404, "not a Spark worker id")
            url = (await self._workers()).get(app_id)
            if not url:
                raise web.HTTPError(404, f"the master lists no alive worker {app_id}")
            return url
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
    async def get(self, kind: str, app_id: str | None = None, path: str | None = None,
                  xsrf: str | None = None):
        await self._proxy(kind, app_id, path, "GET")

    @web.authenticated
    @authorized
    async def head(self, kind: str, app_id: str | None = None, path: str | None = None,
                   xsrf: str | None = None):
        await self._proxy(kind, app_id, path, "HEAD")

    @staticmethod
    def _sub(kind: str, app_id: str | None) -> str:
        return "master" if kind == "master" else f"{kind}/{app_id}"

    async def _proxy(self, kind: str, app_id: str | None, path: str | None, method: str):
        upstream = (await self._upstream(kind, app_id)).rstrip("/")
        here = self.ui_prefix()
        if self.path_kwargs.get("xsrf"):
            here = url_path_join(here, "x", quote(self.path_kwargs["xsrf"], safe=""))
        prefix = url_path_join(here, self._sub(kind, app_id))
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
        self.set_header("Referrer-Policy", "same-origin")  # the XSRF token in our paths
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
        html_page = "text/html" in ctype
        if body and (html_page or (kind == "app" and "json" in ctype)):
            text = body.decode("utf-8", "replace")
            links = None
            tokened = self.token_prefix()
            workers = {url: url_path_join(tokened, "worker", wid)
                       for wid, url in (await self._workers()).items()}
            if not html_page:  # the REST answers' executor log links
                body = rewrite_worker_urls(text, workers).encode("utf-8")
            else:
                if kind == "master":
                    links = parse_app_ui_links(text)
                    cache = self.ext.cache()
                    if cache is not None and links:
                        cache.remember_app_links(links)
                body = rewrite_html(text, url_path_join(tokened, self._sub(kind, app_id)), links,
                                    url_path_join(tokened, "app") + "/", workers).encode("utf-8")
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
