"""A real JupyterLab server process for tests (127.0.0.1, a token, this venv).

Used by tests/test_admin*.py and tests/browser/. It runs ``python -m jupyterlab`` from the
same interpreter as the tests, so the server extension (enabled by the package's
jupyter-config) and the lab extension (linked or installed under share/jupyter) are the ones
of this checkout. ``stop()`` ends the server and every process it started (kernels).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LabServer:
    def __init__(self, root: Path, *, env: dict | None = None, extra_args: list[str] | None = None):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.root / "jupyterlab.log"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTERHUB_")}
        self.env.update(env or {})
        self.extra_args = extra_args or []
        self.proc: subprocess.Popen | None = None
        self._children: set[int] = set()

    def start(self, timeout: float = 90.0) -> LabServer:
        nb_dir = self.root / "notebooks"
        nb_dir.mkdir(exist_ok=True)
        cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1",
               f"--port={self.port}", f"--IdentityProvider.token={self.token}",
               f"--ServerApp.root_dir={nb_dir}", "--ServerApp.open_browser=False", "--allow-root",
               "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
               *self.extra_args]
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if self.get("api/status")[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"jupyter lab did not answer within {timeout}s:\n{self.log_tail()}")

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def request(self, method: str, path: str, body: dict | None = None, token: str | None = "default",
                timeout: float = 30.0) -> tuple[int, object]:
        headers = {}
        if token == "default":
            token = self.token
        if token:
            headers["Authorization"] = f"token {token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(f"{self.url}/{path.lstrip('/')}", data=data, method=method,
                                     headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                raw, status = r.read(), r.status
        except urllib.error.HTTPError as e:
            raw, status = e.read(), e.code
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw.decode(errors="replace")

    def get(self, path: str, **kw):
        return self.request("GET", path, **kw)

    def lab_url(self, path: str = "lab") -> str:
        return f"{self.url}/{path}?token={self.token}"

    def descendants(self) -> list[psutil.Process]:
        if self.proc is None:
            return []
        try:
            kids = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            kids = []
        self._children.update(p.pid for p in kids)
        return kids

    def stop(self, timeout: float = 45.0) -> list[int]:
        """Stop the server (SIGTERM: it shuts its kernels down, killing those that do not
        exit within its shutdown_wait_time); returns the pids of its processes that were
        still alive afterwards and had to be killed here (a clean stop returns [])."""
        if self.proc is None:
            return []
        self.descendants()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        left = []
        for pid in self._children:
            try:
                p = psutil.Process(pid)
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    p.kill()
                    left.append(pid)
            except psutil.NoSuchProcess:
                pass
        self._log.close()
        self.proc = None
        return left
