"""A small client of a running hub: log in, spawn with options, read progress, run code in a
kernel of the user's server. Used by the hub tests and the benchmarks (real HTTP, loopback)."""

from __future__ import annotations

import json
import re
import time
import uuid

import requests
import websocket


class HubClient:
    def __init__(self, url: str, token: str):
        self.url = url.rstrip("/")
        self.token = token
        self.s = requests.Session()
        self.s.headers["Authorization"] = f"token {token}"

    # ---- browser-like login ----------------------------------------------------------------
    def login(self, username: str, password: str) -> requests.Session:
        """Log in through the login form (cookies + _xsrf), as a browser would."""
        s = requests.Session()
        r = s.get(f"{self.url}/hub/login", timeout=30)
        r.raise_for_status()
        m = re.search(r'name="_xsrf" value="([^"]+)"', r.text)
        data = {"username": username, "password": password}
        if m:
            data["_xsrf"] = m.group(1)
        r = s.post(f"{self.url}/hub/login?next=", data=data, allow_redirects=False, timeout=30)
        if r.status_code not in (302, 303):
            raise RuntimeError(f"login failed: {r.status_code} {r.text[:300]}")
        return s

    # ---- REST ----------------------------------------------------------------------------------
    def api(self, method: str, path: str, **kw) -> requests.Response:
        return self.s.request(method, f"{self.url}/hub/api{path}", timeout=kw.pop("timeout", 60), **kw)

    def ensure_user(self, name: str) -> None:
        r = self.api("GET", f"/users/{name}")
        if r.status_code == 404:
            self.api("POST", f"/users/{name}").raise_for_status()

    def spawn(self, name: str, options: dict | None = None, server_name: str = "") -> requests.Response:
        self.ensure_user(name)
        path = f"/users/{name}/servers/{server_name}" if server_name else f"/users/{name}/server"
        return self.api("POST", path, json=options or {}, timeout=600)

    def progress(self, name: str, server_name: str = "", timeout: float = 600) -> list[dict]:
        """All events of the progress stream (server-sent events) until it ends."""
        path = f"/users/{name}/servers/{server_name}/progress" if server_name else f"/users/{name}/server/progress"
        events = []
        with self.s.get(f"{self.url}/hub/api{path}", stream=True, timeout=timeout) as r:
            r.raise_for_status()
            for line in r.iter_lines(decode_unicode=True):
                if line and line.startswith("data:"):
                    ev = json.loads(line[5:])
                    events.append(ev)
                    if ev.get("ready") or ev.get("failed"):
                        break
        return events

    def server(self, name: str, server_name: str = "") -> dict | None:
        r = self.api("GET", f"/users/{name}")
        r.raise_for_status()
        return r.json().get("servers", {}).get(server_name)

    def wait_ready(self, name: str, server_name: str = "", timeout: float = 600) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            srv = self.server(name, server_name)
            if srv and srv.get("ready"):
                return srv
            if srv is None or (not srv.get("pending") and not srv.get("ready")):
                raise RuntimeError(f"server of {name} is not starting: {srv}")
            time.sleep(0.5)
        raise TimeoutError(f"server of {name} not ready within {timeout}s")

    def stop(self, name: str, server_name: str = "", timeout: float = 300) -> None:
        path = f"/users/{name}/servers/{server_name}" if server_name else f"/users/{name}/server"
        r = self.api("DELETE", path, timeout=timeout)
        if r.status_code not in (202, 204, 400, 404):
            r.raise_for_status()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            srv = self.server(name, server_name)
            if not srv:
                return
            time.sleep(0.5)
        raise TimeoutError(f"server of {name} did not stop within {timeout}s")

    # ---- the user's notebook server ----------------------------------------------------------
    def user_url(self, name: str, server_name: str = "") -> str:
        return f"{self.url}/user/{name}/{server_name + '/' if server_name else ''}"

    def kernelspecs(self, name: str) -> dict:
        r = self.s.get(self.user_url(name) + "api/kernelspecs", timeout=60)
        r.raise_for_status()
        return r.json()

    def start_kernel(self, name: str, kernel_name: str) -> str:
        r = self.s.post(self.user_url(name) + "api/kernels", json={"name": kernel_name}, timeout=120)
        r.raise_for_status()
        return r.json()["id"]

    def delete_kernel(self, name: str, kernel_id: str) -> None:
        self.s.delete(self.user_url(name) + f"api/kernels/{kernel_id}", timeout=60)

    def execute(self, name: str, kernel_id: str, code: str, timeout: float = 300) -> dict:
        """Run ``code``; returns {"status", "text" (stdout + results), "error" (ename: evalue)}."""
        ws_url = self.user_url(name).replace("http://", "ws://") + f"api/kernels/{kernel_id}/channels"
        ws = websocket.create_connection(ws_url, header=[f"Authorization: token {self.token}"],
                                         timeout=timeout)
        try:
            msg_id = uuid.uuid4().hex
            ws.send(json.dumps({
                "header": {"msg_id": msg_id, "username": name, "session": uuid.uuid4().hex,
                           "msg_type": "execute_request", "version": "5.3"},
                "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
                "content": {"code": code, "silent": False, "store_history": False,
                            "user_expressions": {}, "allow_stdin": False, "stop_on_error": True},
            }))
            out, err, status = [], None, None
            deadline = time.monotonic() + timeout
            idle = False
            while time.monotonic() < deadline and not (idle and status):
                msg = json.loads(ws.recv())
                if msg.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                t = msg["msg_type"]
                c = msg["content"]
                if t == "stream":
                    out.append(c["text"])
                elif t in ("execute_result", "display_data"):
                    out.append(c["data"].get("text/plain", "") + "\n")
                elif t == "error":
                    err = f"{c['ename']}: {c['evalue']}"
                elif t == "execute_reply":
                    status = c["status"]
                elif t == "status" and c["execution_state"] == "idle":
                    idle = True
            return {"status": status, "text": "".join(out), "error": err}
        finally:
            ws.close()
