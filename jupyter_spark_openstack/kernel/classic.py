"""The classic session factory: a Spark driver JVM inside the kernel, on a standalone master.

Checks come first so failures are quick and clear (Java present, master port open), then the
JVM is launched with every Spark property in a private properties file (never on a command
line: it may hold ``spark.authenticate.secret``). The JVM's output goes to the kernel log,
not into notebook cells; a watchdog kills the JVM if the session is not up within
``SPARK_OPENSTACK_START_TIMEOUT`` seconds (Spark itself would keep retrying a dead master).
"""

from __future__ import annotations

import atexit
import collections
import json
import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping

from ..core.kernelspec import ENV_CONF, ENV_MASTER_URL, ENV_SECRET_FILE
from ..core.spark.daemons import is_running, write_properties
from ..core.spark.home import check_java, find_java, find_spark_home, is_spark_home
from ..core.spark.ports import port_open
from .session import SparkStartError, start_timeout, wait_until_serving

MASTER_WAIT = 5.0            # seconds to wait for a master port that is not open yet
_LOOPBACK = ("localhost", "127.0.0.1", "::1", "[::1]", "ip6-localhost")


def master_hostports(master: str) -> list[tuple[str, int]]:
    if not master.startswith("spark://"):
        return []
    out = []
    for hp in master[len("spark://"):].split(","):
        host, _, port = hp.rpartition(":")
        out.append((host.strip("[]"), int(port)))
    return out


def is_loopback_master(master: str) -> bool:
    if master.startswith("local"):
        return True
    hps = master_hostports(master)
    return bool(hps) and all(h in _LOOPBACK or h.startswith("127.") for h, _ in hps)


def check_master(master: str, wait: float = MASTER_WAIT) -> None:
    """Raise :class:`SparkStartError` unless some master ``host:port`` accepts TCP."""
    hps = master_hostports(master)
    if not hps:
        return
    deadline = time.monotonic() + wait
    while True:
        if any(port_open(h, p, timeout=1.0) for h, p in hps):
            return
        if time.monotonic() >= deadline:
            break
        time.sleep(0.25)
    where = ", ".join(f"{h}:{p}" for h, p in hps)
    raise SparkStartError(
        f"Spark master {master} is not reachable: nothing accepts connections on {where} "
        f"(waited {wait:.0f} s). Is the cluster running? Try `jupyter-spark-openstack cluster status`.")


def session_properties(env: Mapping[str, str], app_name: str) -> dict[str, str]:
    """All Spark properties of the kernel's driver (may include the auth secret)."""
    master = env.get(ENV_MASTER_URL) or "local[*]"
    try:
        conf = json.loads(env.get(ENV_CONF) or "{}")
        if not isinstance(conf, dict):
            raise ValueError("not a JSON object")
    except ValueError as e:
        raise SparkStartError(f"{ENV_CONF} is not a JSON object of Spark properties: {e}") from None
    props = {str(k): str(v) for k, v in conf.items()}
    props["spark.master"] = master
    props["spark.app.name"] = app_name
    props.setdefault("spark.ui.showConsoleProgress", "false")  # progress bars would fill the log
    host = env.get("SPARK_LOCAL_IP") or ("127.0.0.1" if is_loopback_master(master) else None)
    if host:
        props.setdefault("spark.driver.host", host)
        props.setdefault("spark.driver.bindAddress", host)
    secret_file = env.get(ENV_SECRET_FILE)
    if secret_file:
        try:
            with open(secret_file, encoding="utf-8") as f:
                secret = f.read().strip()
        except OSError as e:
            raise SparkStartError(f"cannot read the Spark secret file {secret_file}: {e.strerror}") from None
        if not secret:
            raise SparkStartError(f"the Spark secret file {secret_file} is empty")
        props["spark.authenticate"] = "true"
        props["spark.authenticate.secret"] = secret
    return props


class _JvmOutput:
    """Reads the JVM's merged stdout/stderr line by line into the kernel log; keeps a tail."""

    def __init__(self, stream, log: logging.Logger, keep: int = 40):
        self.tail: collections.deque[str] = collections.deque(maxlen=keep)
        self._log = log
        self._thread = threading.Thread(target=self._pump, args=(stream,), name="jvm-output",
                                        daemon=True)
        self._thread.start()

    def _pump(self, stream) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip()
            if not line:
                continue
            self.tail.append(line)
            self._log.info("jvm | %s", line)
        stream.close()

    def text(self, n: int = 12) -> str:
        self._thread.join(0.5)
        lines = list(self.tail)[-n:]
        return ("; last JVM output: " + " | ".join(lines)) if lines else ""


def _kill_tree(p, log: logging.Logger) -> None:
    import psutil  # noqa: PLC0415

    try:
        procs = p.children(recursive=True) + [p]
    except psutil.Error:
        return
    for q in procs:
        try:
            q.kill()
        except psutil.Error:
            pass
    # Our direct child is left for its Popen to reap (pyspark polls it: reaping it here would
    # make Popen see exit status 0 and wait forever for the gateway).
    psutil.wait_procs([q for q in procs if q.pid != p.pid or p.ppid() != os.getpid()], timeout=5)
    log.warning("killed the driver JVM (pid %s)", p.pid)


def create_session(env: Mapping[str, str], app_name: str, log: logging.Logger):
    """Create a classic SparkSession on ``SPARK_OPENSTACK_MASTER_URL``: ``(spark, spark.sparkContext)``.

    Order matters for latency: the driver JVM is launched first (before ``import pyspark``), and
    pyspark is imported while the JVM boots, once the kernel serves requests, so neither the
    kernel's first reply nor the JVM waits for that import.
    """
    timeout = start_timeout(env)
    t0 = time.monotonic()
    props = session_properties(env, app_name)
    master = props["spark.master"]
    try:
        if not find_java(dict(env)):
            check_java(dict(env))  # raises "Java not found: ..." (its version is checked below)
        spark_home = env.get("SPARK_HOME") if is_spark_home(env.get("SPARK_HOME")) else find_spark_home()
    except Exception as e:
        raise SparkStartError(str(e)) from None
    check_master(master, wait=min(MASTER_WAIT, timeout))

    # A private scratch dir: the driver's temp files (java.io.tmpdir, which is also Spark's
    # default spark.local.dir) and the properties file the JVM reads -- nothing secret on a
    # command line. Removed when the session stops.
    sweep_stale_scratch(log)
    scratch = tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{app_name}-")
    _STATE["scratch"] = scratch
    atexit.register(_remove_scratch)
    _write_owner(scratch)
    jopts = props.get("spark.driver.extraJavaOptions", "")
    if "-Djava.io.tmpdir" not in jopts:
        props["spark.driver.extraJavaOptions"] = f"{jopts} -Djava.io.tmpdir={scratch}".strip()
    prop_file = write_properties(os.path.join(scratch, "driver.properties"), props)
    if props.get("spark.driver.host"):
        os.environ["SPARK_LOCAL_IP"] = props["spark.driver.bindAddress"]  # UI binds here too
    os.environ.setdefault("PYSPARK_PYTHON", env.get("PYSPARK_PYTHON") or sys.executable)
    shown = {k: ("*****" if "secret" in k else v) for k, v in sorted(props.items())}
    log.info("launching the driver JVM: master %s, conf %s", master, json.dumps(shown))

    state: dict = {"timed_out": False, "proc": None}

    def watchdog():
        state["timed_out"] = True
        log.error("SparkSession not ready after %.0f s: stopping the driver JVM", timeout)
        if state["proc"] is not None:
            _kill_tree(psutil_process(state["proc"].pid), log)

    timer = threading.Timer(max(timeout - (time.monotonic() - t0), 1.0), watchdog)
    timer.daemon = True
    timer.start()
    # The JVM's stdout+stderr go to a pipe read from the start, into the kernel log.
    rfd, wfd = os.pipe()
    out = _JvmOutput(os.fdopen(rfd, "rb"), log)
    gateway = None
    conn_info = os.path.join(scratch, "gateway-conn-info")
    try:
        try:
            proc = _launch_driver_jvm(spark_home, prop_file, conn_info, wfd)
        finally:
            os.close(wfd)
        state["proc"] = proc
        log.info("driver JVM pid %s", proc.pid)
        try:  # `java -version` while the driver boots, not before
            java = check_java(dict(env))
        except Exception as e:
            raise SparkStartError(str(e)) from None
        log.info("java %s at %s", java.version, java.path)

        wait_until_serving(3.0)  # let the kernel answer its first requests undisturbed
        from pyspark import SparkContext  # noqa: PLC0415 - slow import, while the JVM boots
        from pyspark.sql import SparkSession  # noqa: PLC0415

        if SparkContext._active_spark_context is not None:
            raise SparkStartError("a SparkContext already exists in this process")
        gateway = _connect_gateway(proc, conn_info)
        SparkContext._ensure_initialized(gateway=gateway)
        spark = SparkSession.builder.getOrCreate()
        sc = spark.sparkContext
    except BaseException as e:
        timer.cancel()
        tail = out.text()
        _shutdown_jvm(gateway, log, proc=state["proc"])
        _remove_scratch()
        if isinstance(e, SparkStartError):
            raise
        if state["timed_out"]:
            raise SparkStartError(f"the SparkSession on {master} was not ready within {timeout:.0f} s "
                                  f"(SPARK_OPENSTACK_START_TIMEOUT){tail}") from e
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SparkStartError(f"{type(e).__name__}: {msg}{tail}") from e
    timer.cancel()
    try:
        os.unlink(prop_file)  # read by now; it may hold the secret
    except OSError:
        pass
    _STATE["gateway"] = gateway
    return spark, sc


def _launch_driver_jvm(spark_home: str, prop_file: str, conn_info: str, out_fd: int):
    """``spark-submit ... pyspark-shell`` as pyspark's ``launch_gateway`` runs it (same
    environment contract), without importing pyspark first."""
    user_args = os.environ.get("PYSPARK_SUBMIT_ARGS", "pyspark-shell")
    command = [os.path.join(spark_home, "bin", "spark-submit"), "--properties-file", prop_file,
               *shlex.split(user_args)]
    env = dict(os.environ)
    env["SPARK_HOME"] = spark_home
    env["SPARK_CONNECT_MODE"] = "0"
    env["_PYSPARK_DRIVER_CONN_INFO_PATH"] = conn_info

    def preexec():  # Ctrl-C in a cell interrupts the kernel, not its JVM
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    # stdin is a pipe: the JVM exits when it closes (i.e. when the kernel process ends).
    return subprocess.Popen(command, stdin=subprocess.PIPE, stdout=out_fd, stderr=out_fd,
                            env=env, preexec_fn=preexec)


def _connect_gateway(proc, conn_info: str):
    """Wait for the JVM's connection info, then let pyspark connect to it."""
    from pyspark.java_gateway import launch_gateway  # noqa: PLC0415
    from pyspark.serializers import UTF8Deserializer, read_int  # noqa: PLC0415

    while proc.poll() is None and not os.path.isfile(conn_info):
        time.sleep(0.05)
    if not os.path.isfile(conn_info):
        raise SparkStartError(f"the driver JVM exited with code {proc.returncode} before it was ready")
    # (the JVM writes a temp file and renames it: the file is complete once it exists)
    with open(conn_info, "rb") as f:
        port = read_int(f)
        secret = UTF8Deserializer().loads(f)
    os.unlink(conn_info)
    # pyspark's documented way to use a JVM started elsewhere; removed again right away so
    # that user subprocesses do not inherit it.
    os.environ["PYSPARK_GATEWAY_PORT"] = str(port)
    os.environ["PYSPARK_GATEWAY_SECRET"] = secret
    try:
        gateway = launch_gateway()
    finally:
        os.environ.pop("PYSPARK_GATEWAY_PORT", None)
        os.environ.pop("PYSPARK_GATEWAY_SECRET", None)
    gateway.proc = proc
    return gateway


def psutil_process(pid: int):
    import psutil  # noqa: PLC0415

    return psutil.Process(pid)


_STATE: dict = {}


def stop_session(spark, sc, log: logging.Logger) -> None:
    """Kernel shutdown: stop the session, let the driver JVM exit, remove the scratch dir."""
    try:
        spark.stop()
    except Exception as e:  # noqa: BLE001
        log.warning("spark.stop() failed: %s", e)
    _shutdown_jvm(_STATE.pop("gateway", None), log, timeout=2.0)
    _remove_scratch()


def _shutdown_jvm(gateway, log: logging.Logger, timeout: float = 5.0, proc=None) -> None:
    """Close the gateway and wait for the driver JVM to exit (it exits when its stdin closes)."""
    if gateway is not None:
        from pyspark import SparkContext  # noqa: PLC0415

        proc = proc or getattr(gateway, "proc", None)
        try:
            gateway.shutdown()
        except Exception:  # noqa: BLE001
            pass
        if SparkContext._gateway is gateway:
            SparkContext._gateway = None
            SparkContext._jvm = None
    if proc is None:
        return
    try:
        if proc.stdin:
            proc.stdin.close()
        proc.wait(timeout)
    except Exception:  # noqa: BLE001 - TimeoutExpired or an already-closed pipe
        try:
            import psutil  # noqa: PLC0415

            _kill_tree(psutil.Process(proc.pid), log)
            proc.wait(2)
        except Exception:  # noqa: BLE001
            pass
    log.info("driver JVM (pid %s) exited with %s", proc.pid, proc.returncode)


SCRATCH_PREFIX = "spark-openstack-"
_OWNER = "owner.pid"


def _write_owner(scratch: str) -> None:
    import psutil  # noqa: PLC0415

    me = psutil.Process()
    with open(os.path.join(scratch, _OWNER), "w") as f:
        f.write(f"{me.pid} {me.create_time()}\n")


def sweep_stale_scratch(log: logging.Logger | None = None) -> list[str]:
    """Remove scratch dirs of kernels that are gone (a kernel killed with SIGKILL, e.g. by a
    manager whose shutdown patience ran out, cannot clean up after itself)."""
    import glob  # noqa: PLC0415

    removed = []
    for d in glob.glob(os.path.join(tempfile.gettempdir(), SCRATCH_PREFIX + "pyspark-*")):
        try:
            with open(os.path.join(d, _OWNER)) as f:
                pid, ctime = f.read().split()
            st = os.stat(d)
        except (OSError, ValueError):
            continue  # not ours, or not written yet
        if st.st_uid != os.getuid():
            continue
        # the same pid-and-start-time test as for Spark daemons: a recycled pid is not its owner
        if not is_running({"pid": pid, "create_time": ctime}):
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
    if removed and log:
        log.info("removed %d scratch dir(s) of kernels that are gone", len(removed))
    return removed


def _remove_scratch() -> None:
    scratch = _STATE.pop("scratch", None)
    if scratch:
        shutil.rmtree(scratch, ignore_errors=True)
