"""A kernel killed for memory, for real: a notebook server in a memory cgroup with a low limit,
a kernel that allocates past it, the kernel OOM killer's SIGKILL. Its diagnostics must name
the out-of-memory kill with the cgroup's evidence (limit, peak, the OOM kill count) and the
kernel's peak RSS, and the kernel the server restarts must be running."""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
import uuid
from pathlib import Path

import pytest

from jupyter_spark_openstack.core.diagnostics.memory import MemoryCgroup, cgroup_of
from jupyter_spark_openstack.core.kernelspec import METADATA_KEY
from tests._labserver import LabServer

LIMIT = 400 << 20   # the notebook server and its kernel together
ALLOC_MIB = 700     # what the kernel asks for


def _child_cgroup(name: str) -> MemoryCgroup:
    """A memory cgroup of our own below this process's, limited to LIMIT."""
    mine = cgroup_of(os.getpid())
    if mine is None:
        pytest.fail("no memory cgroup is readable here (/proc/self/cgroup, /sys/fs/cgroup): this "
                    "test needs the memory controller, v1 or v2, writable by root")
    path = mine.path / name
    try:
        path.mkdir()
        limit_file = "memory.limit_in_bytes" if mine.version == 1 else "memory.max"
        (path / limit_file).write_text(str(LIMIT))
        if mine.version == 1:  # no swap to escape into
            swap = path / "memory.memsw.limit_in_bytes"
            if swap.exists():
                swap.write_text(str(LIMIT))
        else:
            (path / "memory.swap.max").write_text("0")
    except OSError as e:
        pytest.fail(f"cannot make a memory cgroup at {path}: {e}")
    return MemoryCgroup(path, mine.version)


def _execute(server: LabServer, kernel_id: str, code: str) -> None:
    import websocket

    ws = websocket.create_connection(
        server.url.replace("http://", "ws://") + f"/api/kernels/{kernel_id}/channels",
        header=[f"Authorization: token {server.token}"], timeout=60)
    try:
        ws.send(json.dumps({
            "header": {"msg_id": uuid.uuid4().hex, "username": "t", "session": uuid.uuid4().hex,
                       "msg_type": "execute_request", "version": "5.3"},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": code, "silent": False, "store_history": False,
                        "user_expressions": {}, "allow_stdin": False, "stop_on_error": True}}))
        time.sleep(1)
    finally:
        ws.close()


def test_a_kernel_killed_for_memory_is_explained_with_its_cgroups_evidence(tmp_path):
    cg = _child_cgroup(f"jso-oom-{secrets.token_hex(4)}")
    share = tmp_path / "share"
    kdir = share / "kernels" / "pyspark-oom"
    kdir.mkdir(parents=True)
    # a kernelspec of ours (the capture provisioner applies), with a plain ipykernel
    (kdir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "PySpark (oom)", "language": "python",
        "metadata": {METADATA_KEY: {"master_url": "spark://127.0.0.1:7077"}}}))
    server = LabServer(tmp_path / "lab", env={
        "JUPYTER_PATH": str(share), "SPARK_OPENSTACK_KERNEL_LOG_DIR": str(tmp_path / "logs")})
    server.start()
    try:
        # the server (and so every kernel it starts from now on) runs in the limited cgroup
        (cg.path / "cgroup.procs").write_text(str(server.proc.pid))
        status, kernel = server.request("POST", "api/kernels", {"name": "pyspark-oom"})
        assert status == 201, kernel
        kid = kernel["id"]
        assert cg.oom_kills() == 0
        _execute(server, kid, "import time; time.sleep(4)\n"
                              f"hog = b'x' * ({ALLOC_MIB} << 20)")
        deadline = time.monotonic() + 120
        diag = None
        while time.monotonic() < deadline:
            status, diag = server.get(f"spark-openstack/api/kernels/{kid}/diagnostics")
            if status == 200 and diag.get("rule") == "kernel-oom-killed" and diag.get("alive"):
                break
            time.sleep(1)
        assert cg.oom_kills() >= 1, "the cgroup counted no OOM kill"
        assert status == 200 and diag["rule"] == "kernel-oom-killed", diag
        assert diag["category"] == "out-of-memory" and diag["alive"] is True, diag  # restarted
        (line,) = [e for e in diag["evidence"] if "OOM killer" in e]
        assert f"memory cgroup {cg.path} (limit {LIMIT >> 20} MiB, peak usage" in line, line
        assert "1 OOM kill(s)" in line and "peak RSS" in line, line
        assert "killed by signal 9 (SIGKILL, not sent by the notebook server)" in diag["log_text"]
        # the evidence is real: the peak the kernel reached is close to the limit
        peak = int(line.split("peak usage ")[1].split(" MiB")[0])
        assert peak >= (LIMIT >> 20) - 8, line
    finally:
        left = server.stop()
        for pid in (cg.path / "cgroup.procs").read_text().split():
            try:
                os.kill(int(pid), 9)
            except ProcessLookupError:
                pass
        time.sleep(0.5)
        try:
            cg.path.rmdir()
        except OSError:
            pass
    assert left == [], left


def test_memory_watch_reads_this_process(tmp_path):
    """The readers, on this process: a cgroup with counters, a peak RSS of some MiB."""
    from jupyter_spark_openstack.core.diagnostics.memory import MemoryWatch

    w = MemoryWatch.start(os.getpid())
    assert w.cgroup is not None and w.oom_kills_at_launch is not None
    assert w.peak_rss and w.peak_rss > 10 << 20
    line = w.report("k", os.getpid(), 9)
    assert line.startswith("[spark-openstack] memory of kernel k") and "no OOM kill" in line
    assert str(w.cgroup.path) in line and Path(w.cgroup.path).is_dir()
