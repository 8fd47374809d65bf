"""The emulator's own control API, under ``/_emulator/`` (not OpenStack; never logged as a call
and never subject to faults).

Contract: :data:`ROUTES` maps ``(method, endpoint)`` to a handler ``handler(emu, handler)``
returning ``(status, body)``; it uses only the :class:`.app.Emulator`'s public Python API:

* ``GET calls`` (``?since=N``: from the N-th call on), ``DELETE calls``;
* ``GET servers``: every server with its user-data, console and worker;
* ``GET faults``, ``POST faults`` (one fault as JSON, see :mod:`.faults`), ``DELETE faults``;
* ``GET quota`` (with usage), ``POST quota`` (``{"cores": 8, ...}``);
* ``GET health``.

A POST body that is not a JSON object, or a fault or quota the emulator refuses, answers 400;
an unknown endpoint 404; a method the control API does not have, tornado's 405.
"""

from __future__ import annotations

import json

from .routing import JSONHandler


def _calls(emu, h):
    since = int(h.get_argument("since", "0"))
    return 200, {"calls": [c.to_dict() for c in emu.calls()[since:]]}


def _clear_calls(emu, h):
    emu.clear_calls()
    return 204, None


def _clear_faults(emu, h):
    emu.clear_faults()
    return 204, None


def _add_fault(emu, body):
    return 201, {"fault": emu.add_fault(**body).to_dict()}


def _set_quota(emu, body):
    emu.set_quota(**body)
    return 200, {"quota": dict(emu.quota)}


ROUTES = {
    ("GET", "calls"): _calls,
    ("GET", "servers"): lambda emu, h: (200, {"servers": emu.servers()}),
    ("GET", "faults"): lambda emu, h: (200, {"faults": emu.faults.list()}),
    ("GET", "quota"): lambda emu, h: (200, {"quota": dict(emu.quota), "usage": emu.usage()}),
    ("GET", "health"): lambda emu, h: (200, {"ok": True, "spark_mode": emu.spark_mode,
                                             "boot_delay": emu.boot_delay}),
    ("DELETE", "faults"): _clear_faults,
    ("DELETE", "calls"): _clear_calls,
}
#: POST handlers take the parsed JSON object instead of the tornado handler
POST_ROUTES = {"faults": _add_fault, "quota": _set_quota}


class ControlHandler(JSONHandler):
    """``/_emulator/(.*)``: serves :data:`ROUTES` and :data:`POST_ROUTES`."""

    def _unknown(self, what):
        self.send(404, {"error": f"no such emulator endpoint: {what}"})

    async def get(self, what):
        self._answer("GET", what)

    async def delete(self, what):
        self._answer("DELETE", what)

    def _answer(self, method, what):
        route = ROUTES.get((method, what))
        if route is None:
            self._unknown(what)
            return
        self.send(*route(self.emu, self))

    async def post(self, what):
        try:
            body = json.loads(self.request.body or b"{}")
            if not isinstance(body, dict):
                raise ValueError("body: expected a JSON object")
            route = POST_ROUTES.get(what)
            if route is None:
                self._unknown(what)
                return
            self.send(*route(self.emu, body))
        except (TypeError, ValueError) as e:
            self.send(400, {"error": str(e)})
