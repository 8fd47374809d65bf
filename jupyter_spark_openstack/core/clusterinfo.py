"""Which Spark master belongs to this notebook server, and a cached, coalesced view of it.

The server extension's ``GET spark-openstack/api/cluster`` is polled by every open JupyterLab
tab; the master must not see one request per poll. :class:`MasterStateCache` keeps the last
``/json/`` answer for ``refresh_interval`` seconds and, when it is stale, lets exactly one
upstream request run while every concurrent caller awaits that same future. Failures (an
unreachable master) are cached the same way: they are a state, not an exception.

Asyncio only; no jupyter_server import (the handler is a thin adapter around this).
"""

from __future__ import annotations

import asyncio
import html
import os
import re
import time
import urllib.error
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from .errors import ValidationError
from .kernelspec import (
    ENV_CONNECT_URL,
    ENV_MASTER_URL,
    ENV_WEBUI_URL,
    METADATA_KEY,
    list_kernelspecs,
)
from .models import parse_master_url, parse_webui_url
from .spark.master_client import MasterState, error_text, fetch_master_state, http_get
from .spark.ports import MASTER_WEBUI_PORT, webui_url

APP_ID_RE = re.compile(r"^app-[0-9]{14}-[0-9]{4,}$")
#: a standalone worker's id: ``worker-<yyyyMMddHHmmss>-<host>-<port>``
WORKER_ID_RE = re.compile(r"^worker-[0-9]{14}-[A-Za-z0-9.:\-]{1,253}-[0-9]{1,5}$")


# ---- which master ---------------------------------------------------------------------
@dataclass(frozen=True)
class MasterTarget:
    """The master this server talks to, and where that answer came from."""

    master_url: str | None
    webui_url: str | None
    connect_url: str | None = None
    source: str = "none"          # "config", "env", "kernelspec:<name>" or "none"

    @property
    def configured(self) -> bool:
        return bool(self.webui_url)


def webui_from_master(master_url: str) -> str | None:
    """``spark://h:7077`` -> ``http://h:8080`` (the master UI's default port; first host of HA lists)."""
    if not master_url or not master_url.startswith("spark://"):
        return None
    first = master_url[len("spark://"):].split(",")[0]
    host = first.rpartition(":")[0]
    return webui_url(host, MASTER_WEBUI_PORT) if host else None


def pyspark_kernelspecs() -> dict[str, dict]:
    """``{name: kernel.json dict + "resource_dir"}`` of every kernelspec whose metadata names
    this package (:func:`.kernelspec.list_kernelspecs`)."""
    try:
        found = list_kernelspecs(with_spec=True)
    except Exception:  # noqa: BLE001 - a broken kernel dir elsewhere must not hide ours
        return {}
    return {s["name"]: {**s["spec"], "resource_dir": s["resource_dir"]} for s in found}


def resolve_master(*, master_url: str | None = None, master_webui_url: str | None = None,
                   connect_url: str | None = None, env: Mapping[str, str] | None = None,
                   kernelspecs: Mapping[str, dict] | None = None) -> MasterTarget:
    """Config traits first, then the spawner's env vars, then the PySpark kernelspecs' metadata.

    Bad values raise :class:`ValidationError` naming the trait / variable.
    """
    env = os.environ if env is None else env
    if master_url or master_webui_url:
        m = parse_master_url("SparkOpenStack.master_url", master_url) if master_url else None
        w = (parse_webui_url("SparkOpenStack.master_webui_url", master_webui_url)
             if master_webui_url else webui_from_master(m or ""))
        return MasterTarget(m, w, connect_url or env.get(ENV_CONNECT_URL) or None, "config")
    if env.get(ENV_MASTER_URL) or env.get(ENV_WEBUI_URL):
        m = parse_master_url(ENV_MASTER_URL, env[ENV_MASTER_URL]) if env.get(ENV_MASTER_URL) else None
        w = (parse_webui_url(ENV_WEBUI_URL, env[ENV_WEBUI_URL]) if env.get(ENV_WEBUI_URL)
             else webui_from_master(m or ""))
        return MasterTarget(m, w, connect_url or env.get(ENV_CONNECT_URL) or None, "env")
    specs = pyspark_kernelspecs() if kernelspecs is None else kernelspecs
    for name, spec in specs.items():
        meta = (spec.get("metadata") or {}).get(METADATA_KEY) or {}
        kenv = spec.get("env") or {}
        m = meta.get("master_url") or kenv.get(ENV_MASTER_URL) or None
        w = meta.get("webui_url") or kenv.get(ENV_WEBUI_URL) or None
        if m and not str(m).startswith("spark://"):
            m_ok = None  # local[*] kernels have no master to show
        else:
            m_ok = m
        if m_ok or w:
            try:
                m_ok = parse_master_url(f"kernelspec {name}: master_url", m_ok) if m_ok else None
                w = parse_webui_url(f"kernelspec {name}: webui_url", w) if w else webui_from_master(m_ok or "")
            except ValidationError:
                continue
            return MasterTarget(m_ok, w, connect_url or meta.get("connect_url") or None,
                                f"kernelspec:{name}")
    return MasterTarget(None, None, connect_url or env.get(ENV_CONNECT_URL) or None, "none")


# ---- upstream reads (master_client.fetch_master_state reads /json/) ---------------------
_ROW_RE = re.compile(r"<tr>(.*?)</tr>", re.S)
_APPID_IN_ROW_RE = re.compile(r'appId=(app-[0-9]{14}-[0-9]{4,})"')
_ABS_HREF_RE = re.compile(r'href="(https?://[^"]+)"')
_DETAIL_UI_RE = re.compile(r'<a href="(https?://[^"]+)">Application Detail UI</a>')


def parse_app_ui_links(master_index_html: str) -> dict[str, str]:
    """``{app_id: driver UI URL}`` from the master UI's front page (active apps link their UI)."""
    out = {}
    for row in _ROW_RE.findall(master_index_html):
        m = _APPID_IN_ROW_RE.search(row)
        link = _ABS_HREF_RE.search(row)
        if m and link and m.group(1) not in out:
            out[m.group(1)] = html.unescape(link.group(1)).rstrip("/")
    return out


def parse_app_detail_ui(app_page_html: str) -> str | None:
    m = _DETAIL_UI_RE.search(app_page_html)
    return html.unescape(m.group(1)).rstrip("/") if m else None


# ---- the cache ----------------------------------------------------------------------------
class MasterStateCache:
    """At most one upstream ``/json/`` read per ``refresh_interval``, shared by every caller.

    ``upstream_requests`` counts the reads actually sent (tests and the benchmark assert on it).
    ``reader`` is the blocking read (run in a thread), replaceable for other backends.
    """

    def __init__(self, webui: str, *, refresh_interval: float = 5.0, timeout: float = 3.0,
                 reader: Callable[[str, float], MasterState] = fetch_master_state,
                 clock: Callable[[], float] = time.monotonic):
        self.webui_url = webui.rstrip("/")
        self.refresh_interval = float(refresh_interval)
        self.timeout = float(timeout)
        self.upstream_requests = 0
        self._reader = reader
        self._clock = clock
        self._state: MasterState | None = None
        self._fetched = float("-inf")
        self._inflight: asyncio.Future | None = None
        self._app_ui: dict[str, tuple[float, str | None]] = {}

    @property
    def cached(self) -> MasterState | None:
        return self._state

    def _fresh(self) -> bool:
        return self._state is not None and self._clock() - self._fetched < self.refresh_interval

    async def get(self, *, max_age: float | None = None) -> MasterState:
        """The master's state, at most ``refresh_interval`` (or ``max_age``) seconds old."""
        limit = self.refresh_interval if max_age is None else max_age
        if self._state is not None and self._clock() - self._fetched < limit:
            return self._state
        if self._inflight is None or self._inflight.done():
            self._inflight = asyncio.ensure_future(self._refresh())
        # shield: one caller's cancellation (a closed browser tab) must not cancel the others'
        return await asyncio.shield(self._inflight)

    async def _refresh(self) -> MasterState:
        self.upstream_requests += 1
        try:
            state = await asyncio.to_thread(self._reader, self.webui_url, self.timeout)
        except Exception as e:  # noqa: BLE001 - a reader bug is still "unreachable", not a 500
            state = MasterState(webui_url=self.webui_url, reachable=False, error=error_text(e))
        self._state = state
        self._fetched = self._clock()
        return state

    async def app_ui_url(self, app_id: str, *, ttl: float = 30.0) -> str | None:
        """The driver UI of ``app_id`` as the master reports it (None if unknown to the master)."""
        if not APP_ID_RE.match(app_id or ""):
            raise ValidationError("app_id", app_id, "a Spark application id like app-20260101120000-0000")
        hit = self._app_ui.get(app_id)
        now = self._clock()
        if hit and now - hit[0] < ttl and hit[1]:
            return hit[1]

        def read() -> str | None:
            try:
                page = http_get(f"{self.webui_url}/app/?appId={app_id}", self.timeout)
            except (urllib.error.URLError, OSError, ValueError):
                return None
            return parse_app_detail_ui(page)

        url = await asyncio.to_thread(read)
        self._app_ui[app_id] = (now, url)
        return url

    def remember_app_links(self, links: Mapping[str, str]) -> None:
        now = self._clock()
        for app_id, url in links.items():
            self._app_ui[app_id] = (now, url)

    def known_app_urls(self) -> dict[str, str]:
        return {a: u for a, (_, u) in self._app_ui.items() if u}


# ---- the REST answer (api-contract.md) ------------------------------------------------------
def _app_dict(a, now_ms: int, proxy_prefix: str | None) -> dict:
    duration = a.duration_ms
    if a.state == "RUNNING" and a.start_time:
        duration = max(int(duration or 0), now_ms - int(a.start_time))
    return {"id": a.id, "name": a.name, "user": a.user, "state": a.state, "cores": a.cores,
            "memory_per_executor_mb": a.memory_per_executor_mb, "start_time": a.start_time,
            "duration_ms": duration,
            "ui_url": f"{proxy_prefix}app/{a.id}/" if proxy_prefix is not None else None}


def cluster_answer(target: MasterTarget, state: MasterState | None, *, refresh_interval: float,
                   proxy_prefix: str | None = None, connect: dict | None = None) -> dict:
    """The body of ``GET spark-openstack/api/cluster`` (see api-contract.md).

    ``proxy_prefix`` is the URL path of the UI proxy (``/user/alice/spark-openstack/ui/``).
    """
    now_ms = int(time.time() * 1000)
    reachable = bool(state and state.reachable)
    master = {
        "url": target.master_url or (state.url if state and state.reachable else None),
        "webui_url": target.webui_url,
        "ui_proxy_url": f"{proxy_prefix}master/" if proxy_prefix is not None and target.webui_url else None,
        "status": state.status if reachable else None,
        "reachable": reachable,
        "error": None if reachable else (state.error if state else ("no Spark master configured" if not target.configured else None)),
    }
    workers = [
        {"id": w.id, "host": w.host, "state": w.state, "cores": w.cores, "cores_used": w.cores_used,
         "memory_mb": w.memory_mb, "memory_used_mb": w.memory_used_mb, "last_heartbeat": w.last_heartbeat}
        for w in (state.workers if reachable else [])
    ]
    return {
        "configured": target.configured,
        "source": target.source,
        "master": master,
        "connect": connect,
        "workers": workers,
        "apps": {
            "active": [_app_dict(a, now_ms, proxy_prefix) for a in (state.active_apps if reachable else [])],
            "completed": [_app_dict(a, now_ms, None) | {"ui_url": None}
                          for a in (state.completed_apps if reachable else [])],
        },
        "totals": {
            "workers_alive": len(state.alive_workers) if reachable else 0,
            "cores": state.cores if reachable else 0,
            "cores_used": state.cores_used if reachable else 0,
            "memory_mb": state.memory_mb if reachable else 0,
            "memory_used_mb": state.memory_used_mb if reachable else 0,
        },
        "refresh_interval": refresh_interval,
        "fetched_at": state.fetched_at if state else None,
    }


def app_ids(state: MasterState | None, *, active_only: bool = False) -> Iterable[str]:
    if not state or not state.reachable:
        return []
    apps = state.active_apps if active_only else [*state.active_apps, *state.completed_apps]
    return [a.id for a in apps]
