"""Starting and stopping Spark standalone daemons (master, worker) as local processes.

Each daemon runs ``$SPARK_HOME/bin/spark-class`` in the foreground in its own session (process
group), so stopping it also stops the executors it launched. A daemon is recorded as a plain
dict (``pid``, ``create_time``, ``log``, ...) that survives in a JSON state file: a pid is only
signalled while its start time still matches, so a recycled pid is never killed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import psutil

from ..errors import ClusterError, ValidationError
from .home import check_java, find_spark_home

MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"
DAEMON_MEMORY = "512m"
DAEMON_JAVA_OPTS = "-XX:+UseSerialGC -XX:TieredStopAtLevel=1"


def write_properties(path: str | os.PathLike, props: dict[str, str]) -> str:
    """A Java properties file readable by its owner only (it may hold spark.authenticate.secret)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        for k, v in sorted(props.items()):
            esc = str(v).replace("\\", "\\\\").replace("\n", "\\n")
            f.write(f"{k}={esc}\n")
    os.chmod(path, 0o600)
    return str(path)


def daemon_env(host: str, conf_dir: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    spark_home = find_spark_home()
    env.update({
        "SPARK_HOME": spark_home,
        "SPARK_LOCAL_IP": host,          # bind to an explicit interface, never guess
        "SPARK_LOCAL_HOSTNAME": host,
        "SPARK_CONF_DIR": conf_dir,      # isolate from any global spark-defaults.conf
        "SPARK_DAEMON_MEMORY": DAEMON_MEMORY,
        "SPARK_DAEMON_JAVA_OPTS": DAEMON_JAVA_OPTS,
        "SPARK_NO_DAEMONIZE": "1",
    })
    env.pop("PYSPARK_SUBMIT_ARGS", None)
    if extra:
        env.update(extra)
    return env


def check_nice(nice: int, field: str = "nice") -> int:
    """A niceness for daemons: 0 (normal) to 19 (lowest priority)."""
    if isinstance(nice, bool) or not isinstance(nice, int) or not 0 <= nice <= 19:
        raise ValidationError(field, nice, "an integer from 0 (normal priority) to 19 (lowest)")
    return nice


def _spawn(role: str, argv: list[str], log_path: Path, env: dict[str, str], nice: int = 0) -> dict:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    # `nice -n N` rather than a preexec_fn: safe from threads, and the JVM's threads inherit it
    cmd = ["nice", "-n", str(check_nice(nice)), *argv] if nice else argv
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env=env, start_new_session=True, close_fds=True,
        )
    try:
        ctime = psutil.Process(proc.pid).create_time()
    except psutil.Error:
        ctime = 0.0
    # The Popen object is dropped on purpose: the daemon outlives this Python process.
    proc.returncode = 0  # silence "subprocess still running" ResourceWarning
    return {"role": role, "pid": proc.pid, "create_time": ctime, "log": str(log_path),
            "argv": argv[1:3]}


def start_master(run_dir: str | os.PathLike, *, host: str, port: int, webui_port: int,
                 properties: dict[str, str] | None = None, nice: int = 0) -> dict:
    """Start a master; returns its record. It is ready once its web UI answers. ``nice`` > 0
    runs it at lower CPU priority (see :func:`check_nice`)."""
    check_java()
    run_dir = Path(run_dir)
    conf_dir = run_dir / "conf"
    conf_dir.mkdir(parents=True, exist_ok=True)
    # no REST submission server: it would take a port from the fixed 6066+ range per master
    # (many per-user masters on one hub host run out of them) and nothing here submits by REST
    props = write_properties(run_dir / "master.properties",
                             {"spark.master.rest.enabled": "false", **dict(properties or {})})
    argv = [os.path.join(find_spark_home(), "bin", "spark-class"), MASTER_CLASS,
            "--host", host, "--port", str(port), "--webui-port", str(webui_port),
            "--properties-file", props]
    rec = _spawn("master", argv, run_dir / "logs" / "master.log", daemon_env(host, str(conf_dir)),
                 nice)
    rec.update({"host": host, "port": port, "webui_port": webui_port})
    return rec


def start_worker(run_dir: str | os.PathLike, *, master_url: str, host: str, cores: int,
                 memory: str, webui_port: int, name: str, port: int = 0,
                 properties: dict[str, str] | None = None,
                 extra_env: dict[str, str] | None = None, nice: int = 0) -> dict:
    """Start a worker that joins ``master_url`` with ``cores`` and ``memory`` to offer
    (``nice`` as for :func:`start_master`)."""
    check_java()
    run_dir = Path(run_dir)
    conf_dir = run_dir / "conf"
    conf_dir.mkdir(parents=True, exist_ok=True)
    work_dir = run_dir / "work" / name
    work_dir.mkdir(parents=True, exist_ok=True)
    props = write_properties(run_dir / f"{name}.properties", dict(properties or {}))
    argv = [os.path.join(find_spark_home(), "bin", "spark-class"), WORKER_CLASS,
            "--host", host, "--port", str(port), "--webui-port", str(webui_port),
            "--cores", str(cores), "--memory", memory, "--work-dir", str(work_dir),
            "--properties-file", props, master_url]
    rec = _spawn("worker", argv, run_dir / "logs" / f"{name}.log",
                 daemon_env(host, str(conf_dir), extra_env), nice)
    rec.update({"name": name, "host": host, "webui_port": webui_port, "cores": cores,
                "memory": memory})
    return rec


def is_running(rec: dict) -> bool:
    """True while the recorded process (same pid *and* start time) is alive."""
    try:
        p = psutil.Process(int(rec["pid"]))
        if rec.get("create_time") and abs(p.create_time() - float(rec["create_time"])) > 1.0:
            return False
        return p.status() != psutil.STATUS_ZOMBIE
    except (psutil.Error, KeyError, ValueError):
        return False


def _group_pids(pgid: int) -> list[int]:
    pids = []
    for p in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(p.info["pid"]) == pgid:
                pids.append(p.info["pid"])
        except (ProcessLookupError, PermissionError, psutil.Error, OSError):
            continue
    return pids


def stop_daemon(rec: dict, timeout: float = 15.0) -> None:
    """SIGTERM the daemon's process group (daemon + its executors), SIGKILL after ``timeout``."""
    if not is_running(rec):
        _reap(int(rec.get("pid", 0)))
        return
    pgid = int(rec["pid"])  # start_new_session: pgid == pid
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pgid)
        if not _group_pids(pgid):
            return
        time.sleep(0.1)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return
    for _ in range(50):
        _reap(pgid)
        if not _group_pids(pgid):
            return
        time.sleep(0.1)
    raise ClusterError(f"could not stop Spark {rec.get('role')} (pid {pgid})")


def _reap(pid: int) -> None:
    """Collect the exit status if the daemon is our child (avoids zombies in long-lived hubs)."""
    if pid <= 0:
        return
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    except OSError:
        pass
