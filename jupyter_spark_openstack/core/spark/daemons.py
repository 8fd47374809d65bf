"""Starting and stopping Spark standalone daemons (master, worker) as local processes.

Each daemon runs ``$SPARK_HOME/bin/spark-class`` in the foreground in its own session (process
group), so stopping it also stops the executors it launched. A daemon is recorded as a plain
dict (``pid``, ``create_time``, ``log``, ``marker``, ``uid`` ...) that survives in a JSON state
file. A recorded process is signalled only while it is still the one recorded: same pid *and*
start time, same uid, and its command line still names the record's ``marker`` (its own
properties file, which lies under the run directory). A forged or stale record therefore
kills nothing else, and a daemon whose pid was never saved (the hub died right after starting
it) is still found by its marker.

With a :class:`DaemonUser` the daemon runs as that user (her uid and gid, no supplementary
groups) with her own allow-listed environment, its properties in her private files and its
work in her directory; without one it runs as this process's user with its environment (the
``cluster`` CLI).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from .. import safefs
from ..errors import ClusterError, ValidationError
from .home import check_java, find_spark_home, is_spark_home

MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"
DAEMON_MEMORY = "512m"
DAEMON_JAVA_OPTS = "-XX:+UseSerialGC -XX:TieredStopAtLevel=1"
#: the same for a master's or worker's systemd unit on a machine (spark-class reads them)
DAEMON_ENV = {"SPARK_DAEMON_MEMORY": DAEMON_MEMORY, "SPARK_DAEMON_JAVA_OPTS": DAEMON_JAVA_OPTS}
SETPRIV = "/usr/bin/setpriv"

#: Spark properties every daemon of a user's cluster runs with: no "kill" links or POSTs in
#: any UI, and no decommissioning of workers from the master UI (another user on the same
#: host could reach either).
HARDENING = {
    "spark.ui.killEnabled": "false",
    "spark.master.ui.decommission.allow.mode": "DENY",
}


@dataclass(frozen=True)
class DaemonUser:
    """Who a user's daemons run as, what they see, where their files go.

    ``uid``/``gid`` None: this process's own user (single-user and demo hubs). ``env`` is
    the *whole* base environment of the daemons (the spawner builds it from an allow-list).
    ``conf_dir``: a directory only the hub can write, where each daemon's properties file is
    created new and owned by the user (0600). ``work_dir``: the user's own directory (0700),
    where Spark writes (worker work dirs, local dirs, warehouse)."""

    name: str
    uid: int | None = None
    gid: int | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    conf_dir: str | None = None
    work_dir: str | None = None

    @property
    def owner(self) -> tuple[int, int] | None:
        return (self.uid, self.gid) if self.uid is not None else None

    def __repr__(self) -> str:  # the environment may hold values the admin set: not logged
        return f"DaemonUser(name={self.name!r}, uid={self.uid}, gid={self.gid})"


def escape_property(text: str, *, key: bool = False) -> str:
    """``text`` escaped for a Java properties file (``Properties.load``): backslash, the
    whitespace escapes, every other control or non-ASCII character as ``\\uXXXX``, so no
    value can start a new line, i.e. a new property."""
    out = []
    for i, ch in enumerate(str(text)):
        o = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif ch in "\t\n\r\f":
            out.append({"\t": "\\t", "\n": "\\n", "\r": "\\r", "\f": "\\f"}[ch])
        elif ch == " " and (key or i == 0):
            out.append("\\ ")
        elif key and ch in "=:#!":
            out.append("\\" + ch)
        elif o < 0x20 or o >= 0x7f:
            units = ch.encode("utf-16-be", "surrogatepass")
            out.extend("\\u" + units[j:j + 2].hex() for j in range(0, len(units), 2))
        else:
            out.append(ch)
    return "".join(out)


def properties_text(props: Mapping[str, object]) -> str:
    return "".join(f"{escape_property(k, key=True)}={escape_property(str(v))}\n"
                   for k, v in sorted(props.items()))


def write_properties(path: str | os.PathLike, props: dict[str, str],
                     owner: tuple[int, int] | None = None) -> str:
    """A Java properties file readable by its owner only (it may hold spark.authenticate.secret),
    created new (never written through a link); ``owner``: the user it is for."""
    path = Path(path)
    if owner is None:
        path.parent.mkdir(parents=True, exist_ok=True)
    return safefs.write_file(path, properties_text(props), 0o600, owner, replace=True)


def spark_home_for(env: Mapping[str, str] | None) -> str:
    """``SPARK_HOME`` of a user's environment if it is a Spark, else this process's Spark."""
    home = (env or {}).get("SPARK_HOME")
    return home if home and is_spark_home(home) else find_spark_home()


def daemon_env(host: str, conf_dir: str, extra: dict[str, str] | None = None,
               user: DaemonUser | None = None, ui_host: str | None = None) -> dict[str, str]:
    """The daemon's environment: the user's allow-listed one (with ``user``) or ours, plus
    Spark's settings. ``ui_host`` (default ``host``) is where the web UIs bind
    (``SPARK_LOCAL_IP``); RPC binds where ``--host`` says."""
    env = dict(user.env) if user is not None else dict(os.environ)
    spark_home = spark_home_for(env)
    env.update({
        "SPARK_HOME": spark_home,
        "SPARK_LOCAL_IP": ui_host or host,   # bind to an explicit interface, never guess
        "SPARK_LOCAL_HOSTNAME": host,
        "SPARK_CONF_DIR": conf_dir,          # isolate from any global spark-defaults.conf
        **DAEMON_ENV,
        "SPARK_NO_DAEMONIZE": "1",
    })
    if user is not None and user.work_dir:
        env["SPARK_LOCAL_DIRS"] = os.path.join(user.work_dir, "local")
        env["TMPDIR"] = user.work_dir
    env.pop("PYSPARK_SUBMIT_ARGS", None)
    if extra:
        env.update(extra)
    return env


def daemon_dirs(run_dir: Path, user: DaemonUser | None) -> tuple[Path, Path]:
    """(conf dir, work dir) of a daemon: the user's, or under ``run_dir``."""
    if user is not None and user.conf_dir and user.work_dir:
        return Path(user.conf_dir), Path(user.work_dir)
    conf_dir = run_dir / "conf"
    conf_dir.mkdir(parents=True, exist_ok=True)
    return conf_dir, run_dir / "work"


def check_nice(nice: int, field: str = "nice") -> int:
    """A niceness for daemons: 0 (normal) to 19 (lowest priority)."""
    if isinstance(nice, bool) or not isinstance(nice, int) or not 0 <= nice <= 19:
        raise ValidationError(field, nice, "an integer from 0 (normal priority) to 19 (lowest)")
    return nice


def _spawn(role: str, argv: list[str], log_path: Path, env: dict[str, str], nice: int = 0,
           *, marker: str, user: DaemonUser | None = None,
           record: Callable[[dict], None] | None = None) -> dict:
    """Start one daemon. ``record`` is called with the daemon's record (no pid yet) before
    the process exists, so a hub that dies meanwhile still finds it by ``marker``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    rec = {"role": role, "pid": None, "create_time": 0.0, "log": str(log_path),
           "argv": argv[1:3], "marker": marker,
           "uid": user.uid if user is not None and user.uid is not None else os.geteuid()}
    if record is not None:
        record(dict(rec))
    # `nice -n N` rather than a preexec_fn: safe from threads, and the JVM's threads inherit it
    cmd = ["nice", "-n", str(check_nice(nice)), *argv] if nice else argv
    as_user = {}
    if user is not None and user.uid is not None:
        # her uid and gid, no supplementary groups, by `setpriv` (util-linux) rather than
        # Popen(user=, group=, extra_groups=): with those, CPython forks instead of vfork,
        # and a fork of a hub that uses gRPC (the Connect probes) may crash in gRPC's fork
        # handlers before exec, a child that dies silently. Files she creates are hers.
        cmd = [SETPRIV, f"--reuid={user.uid}", f"--regid={user.gid}", "--clear-groups",
               "--", *cmd]
        as_user = {"umask": 0o077}
    cwd = user.work_dir if user is not None and user.work_dir else None
    fd = safefs.open_log(log_path)
    try:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=fd, stderr=subprocess.STDOUT,
            env=env, start_new_session=True, close_fds=True, cwd=cwd, **as_user,
        )
    finally:
        os.close(fd)
    try:
        ctime = psutil.Process(proc.pid).create_time()
    except psutil.Error:
        ctime = 0.0
    # The Popen object is dropped on purpose: the daemon outlives this Python process.
    proc.returncode = 0  # silence "subprocess still running" ResourceWarning
    rec.update(pid=proc.pid, create_time=ctime)
    return rec


def start_master(run_dir: str | os.PathLike, *, host: str, port: int, webui_port: int,
                 properties: dict[str, str] | None = None, nice: int = 0,
                 user: DaemonUser | None = None, ui_host: str | None = None,
                 record: Callable[[dict], None] | None = None) -> dict:
    """Start a master; returns its record. It is ready once its web UI answers. ``nice`` > 0
    runs it at lower CPU priority (see :func:`check_nice`); ``user``: who it runs as;
    ``ui_host``: where its web UI binds (default ``host``)."""
    check_java()
    run_dir = Path(run_dir)
    conf_dir, _ = daemon_dirs(run_dir, user)
    # no REST submission server: it would take a port from the fixed 6066+ range per master
    # (many per-user masters on one hub host run out of them) and nothing here submits by REST
    props = write_properties(conf_dir / "master.properties",
                             {"spark.master.rest.enabled": "false", **HARDENING,
                              **dict(properties or {})}, user.owner if user else None)
    env = daemon_env(host, str(conf_dir), user=user, ui_host=ui_host)
    argv = [os.path.join(env["SPARK_HOME"], "bin", "spark-class"), MASTER_CLASS,
            "--host", host, "--port", str(port), "--webui-port", str(webui_port),
            "--properties-file", props]
    rec = _spawn("master", argv, run_dir / "logs" / "master.log", env, nice, marker=props,
                 user=user, record=record)
    rec.update({"host": host, "port": port, "webui_port": webui_port})
    return rec


def start_worker(run_dir: str | os.PathLike, *, master_url: str, host: str, cores: int,
                 memory: str, webui_port: int, name: str, port: int = 0,
                 properties: dict[str, str] | None = None,
                 extra_env: dict[str, str] | None = None, nice: int = 0,
                 user: DaemonUser | None = None,
                 record: Callable[[dict], None] | None = None) -> dict:
    """Start a worker that joins ``master_url`` with ``cores`` and ``memory`` to offer
    (``nice``, ``user`` and ``record`` as for :func:`start_master`)."""
    check_java()
    run_dir = Path(run_dir)
    conf_dir, work_root = daemon_dirs(run_dir, user)
    work_dir = work_root / name   # created by the worker itself (as its user)
    if user is None:
        work_dir.mkdir(parents=True, exist_ok=True)
    props = write_properties(conf_dir / f"{name}.properties",
                             {**HARDENING, **dict(properties or {})}, user.owner if user else None)
    env = daemon_env(host, str(conf_dir), extra_env, user=user)
    argv = [os.path.join(env["SPARK_HOME"], "bin", "spark-class"), WORKER_CLASS,
            "--host", host, "--port", str(port), "--webui-port", str(webui_port),
            "--cores", str(cores), "--memory", memory, "--work-dir", str(work_dir),
            "--properties-file", props, master_url]
    rec = _spawn("worker", argv, run_dir / "logs" / f"{name}.log", env, nice, marker=props,
                 user=user, record=record)
    rec.update({"name": name, "host": host, "webui_port": webui_port, "cores": cores,
                "memory": memory})
    return rec


def _is_ours(p: psutil.Process, rec: dict, *, exec_grace: bool = False) -> bool:
    """Is ``p`` the process ``rec`` describes: same uid (if recorded) and its command line
    names the record's marker (if recorded)? With ``exec_grace`` an empty command line
    counts as ours: a process in the middle of ``exec`` (spark-class exec's java) shows
    none for a moment; the caller has already matched pid and start time."""
    try:
        cmdline = p.cmdline()
        if rec.get("uid") is not None and p.uids().real != int(rec["uid"]):
            # a moment after start, `setpriv` (still root) has not switched to her yet
            if not (exec_grace and cmdline and os.path.basename(cmdline[0]) == "setpriv"):
                return False
        marker = rec.get("marker")
        if not marker:
            return True
        return marker in cmdline or (exec_grace and not cmdline)
    except (psutil.Error, ValueError, TypeError):
        return False


def is_running(rec: dict) -> bool:
    """True while the recorded process (same pid and start time) is alive. Before a process
    is *signalled*, :func:`stop_daemon` also checks its uid and marker (:func:`_is_ours`)."""
    try:
        p = psutil.Process(int(rec["pid"]))
        if rec.get("create_time") and abs(p.create_time() - float(rec["create_time"])) > 1.0:
            return False
        return p.status() != psutil.STATUS_ZOMBIE
    except (psutil.Error, KeyError, ValueError, TypeError):
        return False


def _still_ours(rec: dict) -> bool:
    """The recorded process is alive *and* still the one recorded (uid and marker)."""
    if not is_running(rec):
        return False
    try:
        return _is_ours(psutil.Process(int(rec["pid"])), rec, exec_grace=True)
    except (psutil.Error, ValueError, TypeError):
        return False


def find_by_marker(rec: dict) -> list[int]:
    """Session leaders whose command line names ``rec['marker']`` (and whose uid is the
    recorded one): a daemon started but never recorded with its pid."""
    marker = rec.get("marker")
    if not marker:
        return []
    found = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            if marker in (p.info["cmdline"] or []) and _is_ours(p, rec) \
                    and os.getsid(p.info["pid"]) == p.info["pid"]:
                found.append(p.info["pid"])
        except (psutil.Error, OSError):
            continue
    return found


def exit_status(rec: dict) -> str:
    """How a daemon this process started has ended (``exit status N`` / ``killed by SIGX``),
    collected from the kernel; '' when it is not our child or has not ended."""
    try:
        pid, status = os.waitpid(int(rec.get("pid") or 0), os.WNOHANG)
    except (ChildProcessError, OSError, ValueError):
        return ""
    if pid == 0:
        return ""
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


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
    """SIGTERM the daemon's process group (daemon + its executors), SIGKILL after ``timeout``.
    Only a process that is still the recorded one is signalled (see the module docstring)."""
    if rec.get("pid") and _still_ours(rec):
        pgids = [int(rec["pid"])]  # start_new_session: pgid == pid
    else:
        _reap(int(rec.get("pid") or 0))
        pgids = find_by_marker(rec)
    for pgid in pgids:
        _stop_group(pgid, rec, timeout)


def _stop_group(pgid: int, rec: dict, timeout: float) -> None:
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
