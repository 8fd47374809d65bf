"""Run a real JupyterHub as a subprocess (demo, tests, benchmarks) and clean up after it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil


def processes_under(directory: str | os.PathLike) -> list[psutil.Process]:
    """Processes whose command line or working directory lies under ``directory``."""
    d = str(Path(directory).resolve())
    me = os.getpid()
    found = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        if p.info["pid"] == me:
            continue
        try:
            cmd = " ".join(p.info["cmdline"] or [])
            cwd = p.cwd()
        except (psutil.Error, OSError):
            continue
        if d in cmd or cwd == d or cwd.startswith(d + os.sep):
            found.append(p)
    return found


def kill_processes(procs: list[psutil.Process], timeout: float = 10.0) -> None:
    for p in procs:
        try:
            p.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=5)


class HubProcess:
    """``jupyterhub -f config`` in its own session, logging to ``<dir>/jupyterhub.log``."""

    def __init__(self, info: dict):
        self.info = info
        self.dir = Path(info["dir"])
        self.url = info["url"]
        self.token = info["api_token"]
        self.proc: subprocess.Popen | None = None
        self.log_path = self.dir / "jupyterhub.log"

    def start(self, timeout: float = 60.0, *, cleanup_servers: bool = True) -> HubProcess:
        argv = [str(Path(sys.executable).parent / "jupyterhub"), "-f", self.info["config"]]
        if not cleanup_servers:
            argv.append("--no-JupyterHub.cleanup_servers")  # keep user servers across a restart
        env = dict(os.environ)
        env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
        log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the child's lifetime
        self.proc = subprocess.Popen(argv, cwd=self.dir, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyterhub exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if self.api("GET", "/", timeout=5)[0] == 200:  # routed through the proxy
                    return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.3)
        raise RuntimeError(f"jupyterhub did not answer within {timeout}s:\n{self.log_tail()}")

    def log_tail(self, n: int = 40) -> str:
        try:
            return "".join(self.log_path.read_text(errors="replace").splitlines(True)[-n:])
        except OSError:
            return ""

    def api(self, method: str, path: str, body=None, timeout: float = 30.0):
        """Call ``/hub/api{path}`` with the admin service token; returns (status, json|text)."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + "/hub/api" + path, data=data, method=method,
                                     headers={"Authorization": f"token {self.token}",
                                              "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                raw = r.read().decode()
                status = r.status
        except urllib.error.HTTPError as e:
            raw = e.read().decode()
            status = e.code
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw

    def stop(self, timeout: float = 120.0, *, kill: bool = False) -> None:
        """SIGTERM (the hub stops its users' servers and clusters) or SIGKILL (a crash)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL if kill else signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        if kill:
            return
        # the proxy lives in its own process group
        pidfile = self.dir / "proxy.pid"
        if pidfile.exists():
            try:
                pid = int(pidfile.read_text().strip())
                cmd = " ".join(psutil.Process(pid).cmdline()) if psutil.pid_exists(pid) else ""
                if "configurable-http-proxy" in cmd or "jupyter_spark_openstack.demo.proxy" in cmd:
                    kill_processes([psutil.Process(pid)])
            except (ValueError, psutil.Error, OSError):
                pass


def stop_hub_leaving_nothing(hub: HubProcess) -> None:
    """Stop ``hub`` (SIGTERM: it stops every server and cluster), then kill whatever still
    runs under its directory and fail naming it: for tests and benchmarks."""
    hub.stop()
    left = processes_under(hub.dir)
    named = [_describe(p) for p in left]  # before they are killed: a dead one has no cmdline
    kill_processes(left)
    assert not left, f"processes left after the hub stopped: {named}"


def _describe(p: psutil.Process) -> str:
    try:
        return f"{p.pid} {' '.join(p.cmdline()[:3])}"
    except psutil.Error:
        return f"{p.pid} (exited)"


def start_hub(directory, *, attempts: int = 3, **config) -> HubProcess:
    """Write a hub config (``write_hub_config`` keywords) and start it; on a port taken
    between choosing and binding it (busy machines), choose new ports and try again."""
    from .hubconfig import write_hub_config  # noqa: PLC0415

    last = None
    for _ in range(attempts):
        info = write_hub_config(directory, **config)
        hub = HubProcess(info)
        try:
            return hub.start()
        except RuntimeError as e:
            last = e
            hub.stop()
            if "Address already in use" not in str(e) and "address already in use" not in hub.log_tail(200):
                raise
    raise last
