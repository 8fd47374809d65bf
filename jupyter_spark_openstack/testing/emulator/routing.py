"""How the emulator's API routes are declared and served (tornado).

Contract: a service module (:mod:`.identity`, :mod:`.compute`, :mod:`.image`,
:mod:`.network`) declares a :class:`Service`: its path ``prefix``, its routes as data, a list of
:class:`Route` (methods + path pattern -> handler, first match wins; ``{name}`` matches one
path segment and is passed to the handler as a keyword, ``{name:regex}`` matches ``regex``), and
``not_found``, what the service answers for a path under its prefix that no route takes. A
route's ``guard`` (e.g. "needs a token") runs before its handler. A handler is
``handler(req: Request, **params)`` and returns (or, if async, resolves to)
``(status, body, headers)``, or raises :class:`Reply` for an error. :class:`ApiHandler`
serves every service's routes on one tornado application and does what is common to all of
them: ``error`` and ``delay`` faults, the call log (:class:`.model.Call`, recorded before the
answer is sent) and the compute microversion headers.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import tornado.web

from .model import Call, Refused


def request_kind(method: str, path: str) -> str:
    """``("POST", "/compute/v2.1/servers")`` -> ``"servers.create"``; used by faults and calls."""
    p = path.rstrip("/")
    if p.startswith("/identity"):
        return "identity.auth" if p.endswith("/auth/tokens") else "identity.discovery"
    if p.startswith("/compute"):
        rest = p[len("/compute"):]
        rest = re.sub(r"^/v2(\.1)?", "", rest)
        if rest == "":
            return "compute.discovery"
        if rest.startswith("/servers"):
            if rest in ("/servers", "/servers/detail"):
                return "servers.create" if method == "POST" else "servers.list"
            if rest.endswith("/action"):
                return "servers.action"
            if method == "DELETE" and rest.count("/") == 2:
                return "servers.delete"
            return "servers.get"
        if rest.startswith("/flavors"):
            return "flavors"
        if rest.startswith("/limits"):
            return "limits"
        if rest.startswith("/os-keypairs"):
            return "keypairs"
        if rest.startswith("/os-availability-zone"):
            return "availability_zones"
        return "compute.other"
    if p.startswith("/image"):
        return "images" if "/images" in p else "image.discovery"
    if p.startswith("/network"):
        if "/security-group" in p:
            return "security_groups"
        if "/networks" in p:
            return "networks"
        return "network.other" if "/v2.0" in p else "network.discovery"
    return "other"


class Reply(Exception):
    """Raised by handlers to answer an error the way the service would."""

    def __init__(self, status: int, body: dict | str | None = None, headers: dict | None = None):
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or {}


def nova_error(status: int, message: str) -> Reply:
    key = {400: "badRequest", 401: "unauthorized", 403: "forbidden", 404: "itemNotFound",
           406: "notAcceptable", 409: "conflictingRequest", 413: "overLimit",
           503: "serviceUnavailable"}.get(status, "computeFault")
    return Reply(status, {key: {"code": status, "message": message}})


def neutron_error(status: int, typ: str, message: str) -> Reply:
    return Reply(status, {"NeutronError": {"type": typ, "message": message, "detail": ""}})


def filtered(items: list[dict], query: dict, keys: tuple[str, ...] = ("name", "id")) -> list[dict]:
    """``items`` whose ``keys`` equal the query's (the Glance and Neutron list filters)."""
    for k in keys:
        if k in query:
            items = [i for i in items if i[k] == query[k]]
    return items


def _compile(pattern: str) -> re.Pattern:
    out, pos = [], 0
    for m in re.finditer(r"\{(\w+)(?::([^}]+))?\}", pattern):
        out.append(re.escape(pattern[pos:m.start()]))
        out.append(f"(?P<{m.group(1)}>{m.group(2) or '[^/]+'})")
        pos = m.end()
    out.append(re.escape(pattern[pos:]))
    return re.compile("".join(out))


@dataclass
class Route:
    """``methods`` (one or a tuple; ``"*"``: any) and ``pattern`` (the whole path, without its
    trailing slash) -> ``handler``; ``guard(req)`` runs first."""

    methods: str | tuple[str, ...]
    pattern: str
    handler: Callable
    guard: Callable | None = None
    regex: re.Pattern = field(init=False, repr=False)

    def __post_init__(self):
        if isinstance(self.methods, str):
            self.methods = (self.methods,)
        self.regex = _compile(self.pattern)

    def match(self, method: str, path: str) -> dict | None:
        if "*" not in self.methods and method not in self.methods:
            return None
        m = self.regex.fullmatch(path)
        return m.groupdict() if m else None


@dataclass
class Service:
    """One OpenStack service: paths starting with ``prefix`` are its own;
    ``not_found(req, rest)`` answers (raises) for those no route takes (``rest``: the path
    after the prefix); ``refused(e)`` is the service's :class:`Reply` for the model's
    :class:`.model.Refused` (without it, a refusal is a bug: 500)."""

    name: str
    prefix: str
    routes: list[Route]
    not_found: Callable
    refused: Callable[[Refused], Reply] | None = None


class Request:
    """What a handler sees of its request: ``emu`` (the :class:`.app.Emulator`), ``method``,
    ``path``, ``headers``, ``query`` (last value of each parameter), :meth:`json_body` and
    :meth:`authenticate`; ``mv`` is the compute microversion once a compute guard set it."""

    def __init__(self, emu, handler: tornado.web.RequestHandler):
        self.emu = emu
        self.method = handler.request.method
        self.headers = handler.request.headers
        self._handler = handler
        self.query = {k: v[-1] for k, v in parse_qs(urlsplit(handler.request.uri).query).items()}
        self.mv: tuple[int, int] | None = None

    def json_body(self) -> dict:
        body = self._handler.request.body
        if not body:
            return {}
        try:
            body = json.loads(body)
        except ValueError:
            raise Reply(400, {"badRequest": {"code": 400, "message": "Malformed request body"}}) from None
        if not isinstance(body, dict):
            raise Reply(400, {"badRequest": {"code": 400, "message": "Malformed request body"}})
        return body

    def authenticate(self) -> None:
        """Keystone's 401 unless the request carries a token the emulator issued."""
        if not self.emu.model.token_valid(self.headers.get("X-Auth-Token")):
            raise Reply(401, {"error": {"code": 401, "title": "Unauthorized",
                                        "message": "The request you have made requires authentication."}},
                        {"WWW-Authenticate": f'Keystone uri="{self.emu.auth_url}"'})


class Router:
    """The services' routes, in order; :meth:`route` answers one request."""

    def __init__(self, services: list[Service], root: Callable, no_service: Callable):
        self.services = services
        self.root = root
        self.no_service = no_service

    async def route(self, req: Request, path: str):
        p = path.rstrip("/") or "/"
        if p == "/":
            return self.root(req)
        for svc in self.services:
            if not p.startswith(svc.prefix):
                continue
            for r in svc.routes:
                params = r.match(req.method, p)
                if params is not None:
                    return await self._call(svc, r, req, params)
            return svc.not_found(req, p[len(svc.prefix):])
        return self.no_service(req, path)


    @staticmethod
    async def _call(svc: Service, r: Route, req: Request, params: dict):
        if r.guard:
            r.guard(req)
        try:
            out = r.handler(req, **params)
            return await out if inspect.isawaitable(out) else out
        except Refused as e:
            if svc.refused is None:
                raise
            raise svc.refused(e) from None


class JSONHandler(tornado.web.RequestHandler):
    """A tornado handler that answers JSON (or text for a ``str`` body)."""

    SUPPORTED_METHODS = ("GET", "POST", "PUT", "DELETE", "HEAD", "PATCH")

    def initialize(self, emu):
        self.emu = emu

    def check_xsrf_cookie(self):
        pass

    def send(self, status: int, body, headers: dict | None = None) -> None:
        self.set_status(status)
        for k, v in (headers or {}).items():
            self.set_header(k, v)
        if body is None:
            self.finish()
            return
        if isinstance(body, str):
            self.set_header("Content-Type", "text/plain; charset=UTF-8")
            self.finish(body)
            return
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))


class ApiHandler(JSONHandler):
    """Every OpenStack API path: faults, routing (``router``), the call log, headers."""

    def initialize(self, emu, router: Router):
        super().initialize(emu)
        self.router = router

    async def get(self, path):
        await self._dispatch(path)

    post = put = delete = head = patch = get

    async def _dispatch(self, path: str) -> None:
        emu = self.emu
        t0 = time.time()
        method = self.request.method
        kind = request_kind(method, path)
        req = Request(emu, self)
        fault_name = None
        status = 500
        recorded = False

        def record():
            nonlocal recorded
            if not recorded:
                recorded = True
                emu.model.record(Call(method=method, path=path, query=self.request.query, kind=kind,
                                      status=status, time=t0, duration=time.time() - t0,
                                      fault=fault_name))

        try:
            try:
                errs = emu.faults.take(kind, ("error",))
                if errs:
                    f = errs[0]
                    fault_name = f"error:{f.status}"
                    msg = f.message or ("The server has either erred or is incapable of performing "
                                        "the requested operation.")
                    raise nova_error(f.status, msg)
                status, body, headers = await self.router.route(req, path)
            except Reply as r:
                status, body, headers = r.status, r.body, r.headers
            delays = emu.faults.take(kind, ("delay",))
            if delays:
                fault_name = f"delay:{delays[0].seconds}"
                await asyncio.sleep(max(d.seconds for d in delays))
            if self.request.connection.stream.closed():
                status = 499  # the client gave up (timeout); nginx's code for it
                return
            headers = dict(headers or {})
            if path.startswith("/compute") and kind != "compute.discovery":
                mv = req.mv or (2, 1)
                headers.update({"OpenStack-API-Version": f"compute {mv[0]}.{mv[1]}",
                                "X-OpenStack-Nova-API-Version": f"{mv[0]}.{mv[1]}",
                                "Vary": "OpenStack-API-Version, X-OpenStack-Nova-API-Version"})
            headers.setdefault("X-Openstack-Request-Id", f"req-{uuid.uuid4()}")
            record()  # before answering: a client that got its answer finds its call logged
            self.send(status, body, headers)
        finally:
            record()
