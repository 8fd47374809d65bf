"""Keystone v3 (password auth, token issue/validate/revoke, the service catalog) and the
version document the root URL answers.

Contract: :data:`SERVICE` declares the routes under ``/identity``; tokens are issued and checked
through :class:`.model.CloudModel` (``issue_token``, ``token_valid``); the catalog points at the
emulator's own URL (``req.emu.url``).
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

from .model import DOMAIN_ID, PASSWORD, PROJECT, PROJECT_ID, USER_ID, USERNAME
from .routing import Reply, Request, Route, Service


def version(req: Request) -> dict:
    return {"id": "v3.14", "status": "stable", "updated": "2020-04-07T00:00:00Z",
            "links": [{"rel": "self", "href": f"{req.emu.url}/identity/v3/"}],
            "media-types": [{"base": "application/json",
                             "type": "application/vnd.openstack.identity-v3+json"}]}


def versions(req: Request):
    """``/`` and ``/identity``: the version list (300 Multiple Choices)."""
    return 300, {"versions": {"values": [version(req)]}}, None


def _token_body(req: Request) -> dict:
    u = req.emu.url
    endpoints = {"identity": ("keystone", f"{u}/identity"),
                 "compute": ("nova", f"{u}/compute/v2.1"),
                 "image": ("glance", f"{u}/image"),
                 "network": ("neutron", f"{u}/network")}
    catalog = []
    for i, (typ, (name, url)) in enumerate(endpoints.items()):
        catalog.append({"type": typ, "name": name, "id": f"{i:032x}",
                        "endpoints": [{"id": f"{i:031x}{j}", "interface": iface,
                                       "region": "RegionOne", "region_id": "RegionOne",
                                       "url": url}
                                      for j, iface in enumerate(("public", "internal", "admin"))]})
    now = time.time()
    return {
        "methods": ["password"],
        "user": {"id": USER_ID, "name": USERNAME, "domain": {"id": DOMAIN_ID, "name": "Default"},
                 "password_expires_at": None},
        "project": {"id": PROJECT_ID, "name": PROJECT, "domain": {"id": DOMAIN_ID, "name": "Default"}},
        "roles": [{"id": "00000000000000000000000000000aaa", "name": "member"},
                  {"id": "00000000000000000000000000000bbb", "name": "reader"}],
        "is_domain": False,
        "catalog": catalog,
        "issued_at": datetime.fromtimestamp(now, tz=UTC).isoformat().replace("+00:00", "000Z"),
        "expires_at": (datetime.fromtimestamp(now, tz=UTC) + timedelta(hours=12)).isoformat().replace("+00:00", "000Z"),
        "audit_ids": [uuid.uuid4().hex[:22]],
    }


def v3(req: Request):
    return 200, {"version": version(req)}, None


def issue_token(req: Request):
    body = req.json_body()
    try:
        ident = body["auth"]["identity"]
        user = ident["password"]["user"]
        name, password = user.get("name") or user.get("id"), user["password"]
    except (KeyError, TypeError):
        raise Reply(400, {"error": {"code": 400, "title": "Bad Request",
                                    "message": "Expecting to find identity password user in auth."}}) from None
    if name not in (USERNAME, USER_ID) or password != PASSWORD:
        raise Reply(401, {"error": {"code": 401, "title": "Unauthorized",
                                    "message": "The request you have made requires authentication."}})
    token = req.emu.model.issue_token()
    return 201, {"token": _token_body(req)}, {"X-Subject-Token": token}


def validate_token(req: Request):
    req.authenticate()
    return 200, {"token": _token_body(req)}, {"X-Subject-Token": req.headers.get("X-Subject-Token", "")}


def revoke_token(req: Request):
    return 204, None, None


def not_found(req: Request, rest: str):
    raise Reply(404, {"error": {"code": 404, "title": "Not Found",
                                "message": f"The resource could not be found: {rest}"}})


SERVICE = Service("identity", "/identity", [
    Route("GET", "/identity", versions),
    Route("GET", "/identity/v3", v3),
    Route("POST", "/identity/v3/auth/tokens", issue_token),
    Route(("GET", "HEAD"), "/identity/v3/auth/tokens", validate_token),
    Route("DELETE", "/identity/v3/auth/tokens", revoke_token),
], not_found)
