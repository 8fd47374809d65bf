"""A Spark Connect server as a local process: one driver per user, kernels are thin gRPC clients.

The server is ``spark-submit --class org.apache.spark.sql.connect.service.SparkConnectServer``
against a standalone master, bound to loopback on a free port, with a per-user token. Every
Spark property (token and cluster secret included) goes into an owner-only properties file
passed with ``--properties-file``: nothing secret appears on the command line, which ``ps``
shows to every user of the host.

The server is recorded as a plain dict like the master and worker records of
:mod:`.daemons` (``pid``, ``create_time``, ``log``, ``port``, ``url`` ...), so a later process
can stop it with :func:`stop_connect_server` (which is :func:`.daemons.stop_daemon`).

Facts that shaped this module (pyspark 4.3.0):

* the Python client uses TLS as soon as a token is set and the host is anything but the
  literal ``localhost`` (even ``127.0.0.1``): against this plain server it would hang, so
  clients connect to ``sc://localhost:PORT``;
* a wrong token can make the PySpark client retry for a long time: :func:`probe` makes one
  raw RPC with a gRPC deadline and turns the status into :class:`ConnectAuthError` or
  :class:`ConnectUnreachableError`;
* Python UDFs run in the executors' Python: ``PYSPARK_PYTHON`` in the server's environment
  *and* ``spark.executorEnv.PYSPARK_PYTHON`` (``spark.pyspark.python`` alone is not enough).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import stat
import sys
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

from ..errors import ClusterError, ValidationError

# This module's probes use gRPC in threads of the hub process, and the hub forks (JupyterHub's
# LocalProcessSpawner starts notebook servers with a preexec_fn, so with fork()): gRPC's fork
# handlers then crash the child between fork and exec, a notebook server or daemon that dies
# silently (seen on a root hub with several users spawning at once). Without fork support
# gRPC installs no handlers; nothing here uses gRPC across a fork. Read when grpc is imported.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
from ..models import parse_conf, parse_master_url, parse_memory, parse_positive_int
from . import daemons
from .home import check_java
from .ports import connect_url, free_port, port_open

CONNECT_SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"
TOKEN_ENV = "SPARK_CONNECT_AUTHENTICATE_TOKEN"
#: the Connect token's file (0600) in a cluster's run directory, the hub's and `cluster start`'s
TOKEN_FILE_NAME = "connect.token"
DEFAULT_DRIVER_MEMORY = "1g"
# The only host name the PySpark client reaches over plain (local) credentials with a token.
CLIENT_HOST = "localhost"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost")
LOOPBACK_ALLOWED = ("a loopback address (127.0.0.1): the Spark Connect server has no TLS yet, "
                    "so it only serves notebook servers on the same host")

# Properties this module sets itself; extra conf may not override them.
_RESERVED_CONF = (
    "spark.master",
    "spark.submit.deployMode",
    "spark.connect.grpc.binding.address",
    "spark.connect.grpc.binding.port",
    "spark.connect.authenticate.token",
    "spark.authenticate",
    "spark.authenticate.secret",
    "spark.executorEnv.PYSPARK_PYTHON",
)


class ConnectError(ClusterError):
    """A Spark Connect server could not be started or reached."""


class ConnectUnreachableError(ConnectError):
    """Nothing answers on the Connect port, or it did not answer within the deadline."""


class ConnectAuthError(ConnectError):
    """The Connect server refused the token (or no token was given)."""


class ConnectTLSError(ConnectError):
    """The TLS handshake failed: the server's certificate is not signed by the CA the client
    trusts (a wrong or stale CA file), or it names another host."""


class ConnectServerExited(ConnectError):
    """The Connect server process ended while :func:`wait_answering` waited for it."""


_TLS_BUILDER = None


def channel_builder(url: str, token: str | None = None, *, ca_pem: bytes | None = None,
                    server_name: str | None = None):
    """A PySpark channel builder for ``url``. Without ``ca_pem``: PySpark's own
    ``DefaultChannelBuilder`` (local credentials for ``sc://localhost``). With ``ca_pem``: TLS
    that trusts that CA and nothing else, checking the certificate names ``server_name`` (a
    subclass of ``DefaultChannelBuilder`` whose ``toChannel`` builds
    ``grpc.ssl_channel_credentials(root_certificates=ca_pem)``; verification is never off)."""
    global _TLS_BUILDER
    import grpc  # noqa: PLC0415
    from pyspark.sql.connect.client.core import DefaultChannelBuilder  # noqa: PLC0415

    if ca_pem is None:
        b = DefaultChannelBuilder(url)
    else:
        if _TLS_BUILDER is None:
            class TLSChannelBuilder(DefaultChannelBuilder):
                """TLS to a cluster head, trusting only the cluster's CA."""

                ca_pem: bytes = b""

                @property
                def secure(self) -> bool:
                    return True

                def toChannel(self):
                    creds = grpc.ssl_channel_credentials(root_certificates=self.ca_pem)
                    if self.token is not None:
                        creds = grpc.composite_channel_credentials(
                            creds, grpc.access_token_call_credentials(self.token))
                    return self._secure_channel(self.endpoint, creds)

            _TLS_BUILDER = TLSChannelBuilder
        b = _TLS_BUILDER(url)
        b.ca_pem = ca_pem
        if server_name:
            b.setChannelOption("grpc.ssl_target_name_override", server_name)
    if token:
        b.set("token", token)
    return b


# ---- tokens --------------------------------------------------------------------------------
def generate_token() -> str:
    """A fresh random token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def derive_token(secret: str, purpose: str = "spark-connect") -> str:
    """A token derived from the per-user Spark secret (HMAC-SHA256), stable across restarts."""
    if not secret:
        raise ValidationError("secret", secret, "a non-empty per-user Spark secret")
    return hmac.new(secret.encode(), purpose.encode(), hashlib.sha256).hexdigest()


def write_token_file(path: str | os.PathLike, token: str) -> str:
    """Write ``token`` to ``path`` readable by its owner only (0600); returns the path."""
    if not token or any(c in token for c in "\r\n\x00;"):
        raise ValidationError("token", "<hidden>", "a non-empty single-line token without ';'")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    os.chmod(path, 0o600)
    return str(path)


def read_token_file(path: str | os.PathLike) -> str:
    """The token in ``path``; refuses a missing, empty or group/world-readable file."""
    p = Path(path)
    try:
        st = p.stat()
        text = p.read_text().strip()
    except OSError as e:
        raise ConnectAuthError(f"cannot read the Spark Connect token file {p}: {e.strerror or e}") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConnectAuthError(f"the Spark Connect token file {p} is readable by others "
                               f"(mode {stat.S_IMODE(st.st_mode):o}); run `chmod 600 {p}`")
    if not text:
        raise ConnectAuthError(f"the Spark Connect token file {p} is empty")
    return text


# ---- validation ----------------------------------------------------------------------------
def parse_connect_host(field_name: str, value: object) -> str:
    """The address the server binds: loopback only until TLS exists."""
    text = str(value).strip() if value is not None else ""
    if text not in LOOPBACK_HOSTS:
        raise ValidationError(field_name, value, LOOPBACK_ALLOWED)
    return "127.0.0.1"


_HOST_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")


def parse_host(field_name: str, value: object) -> str:
    """An IP address or a host name (letters, digits, '.' and '-')."""
    text = str(value).strip() if isinstance(value, str) else ""
    if not _HOST_RE.fullmatch(text) and ":" not in text:
        raise ValidationError(field_name, value, "an IP address or a host name")
    if ":" in text:
        import ipaddress  # noqa: PLC0415

        try:
            ipaddress.IPv6Address(text)
        except ValueError:
            raise ValidationError(field_name, value, "an IP address or a host name") from None
    return text


def parse_connect_conf(field_name: str, conf) -> dict[str, str]:
    """Extra Spark properties for the server; the ones this module owns are refused."""
    out = parse_conf(field_name, conf or {})
    for key in out:
        if key in _RESERVED_CONF:
            raise ValidationError(field_name, key,
                                  "a Spark property other than " + ", ".join(_RESERVED_CONF)
                                  + " (those are set from the cluster and the token)")
    return out


CONNECT_OPTIONS = ("driver_memory", "conf", "port", "python", "token")


def parse_connect_options(options: dict) -> dict:
    """Validate options for a Connect server (``LocalCluster.start_connect``'s keywords):
    returns ``{"driver_memory", "conf", "port"}`` normalised; unknown keys are refused."""
    for key in options:
        if key not in CONNECT_OPTIONS:
            raise ValidationError("connect option", key, "one of " + ", ".join(CONNECT_OPTIONS))
    port = options.get("port")
    python = options.get("python")
    if python is not None and not os.access(str(python), os.X_OK):
        raise ValidationError("connect python", python,
                              "an executable Python interpreter with pyspark and pyarrow")
    return {
        "driver_memory": parse_memory("connect driver memory",
                                      options.get("driver_memory") or DEFAULT_DRIVER_MEMORY),
        "conf": parse_connect_conf("connect conf", options.get("conf") or {}),
        "port": parse_positive_int("connect port", port, minimum=1024, maximum=65535) if port else None,
    }


def client_url(port: int) -> str:
    """``sc://localhost:PORT``: ``localhost`` literally, see the module docstring."""
    return connect_url(CLIENT_HOST, port)


# ---- start / stop --------------------------------------------------------------------------
#: what every Connect server of ours runs with unless its conf says otherwise: progress reports
#: to the client every 500 ms (Spark's default is 2 s), so the live display under a running
#: cell (:mod:`...kernel.progress`) moves at least every second
CONNECT_DEFAULTS = {"spark.connect.progress.reportInterval": "500ms"}


def connect_properties(*, master_url: str, port: int, token: str, host: str = "127.0.0.1",
                       driver_host: str | None = None,
                       driver_memory: str = DEFAULT_DRIVER_MEMORY, python: str | None = None,
                       secret: str | None = None, conf: dict[str, str] | None = None,
                       app_name: str = "Spark Connect server") -> dict[str, str]:
    """Every Spark property of the server (the properties file's content). ``host``: where
    its gRPC endpoint binds (loopback); ``driver_host``: where its driver listens for its
    executors (default ``host``; the hub's address when the workers are other machines)."""
    props = {**CONNECT_DEFAULTS, **(conf or {})}
    props.update({
        "spark.master": master_url,
        "spark.app.name": props.get("spark.app.name", app_name),
        "spark.driver.memory": driver_memory,
        "spark.driver.host": driver_host or host,
        "spark.driver.bindAddress": driver_host or host,
        "spark.connect.grpc.binding.address": host,
        "spark.connect.grpc.binding.port": str(port),
        "spark.connect.authenticate.token": token,
        "spark.executorEnv.PYSPARK_PYTHON": python or sys.executable,
    })
    if secret:
        props["spark.authenticate"] = "true"
        props["spark.authenticate.secret"] = secret
    return props


def start_connect_server(run_dir: str | os.PathLike, *, master_url: str, token: str,
                         host: str = "127.0.0.1", port: int | None = None,
                         driver_host: str | None = None, driver_memory: object = DEFAULT_DRIVER_MEMORY,
                         conf=None, secret: str | None = None, python: str | None = None,
                         app_name: str = "Spark Connect server", name: str = "connect",
                         nice: int = 0, user: daemons.DaemonUser | None = None,
                         record=None) -> dict:
    """Start a Connect server for ``master_url``; returns its record at once (not yet ready:
    call :func:`wait_connect_ready`); ``nice`` > 0 runs it at lower CPU priority; ``user``:
    who it runs as (see :class:`.daemons.DaemonUser`); ``record`` is called with its record
    before the process exists. Bad values raise :class:`ValidationError` before anything is
    written or started."""
    master_url = parse_master_url("master_url", master_url)
    host = parse_connect_host("connect host", host)
    if driver_host is not None:
        driver_host = parse_host("connect driver host", driver_host)
    port = parse_positive_int("connect port", port, maximum=65535) if port else free_port(host)
    driver_memory = parse_memory("connect driver memory", driver_memory or DEFAULT_DRIVER_MEMORY)
    extra = parse_connect_conf("connect conf", conf)
    if not token or any(c in token for c in "\r\n\x00;"):
        raise ValidationError("token", "<hidden>", "a non-empty single-line token without ';'")
    nice = daemons.check_nice(nice, "connect nice")
    python = python or sys.executable
    if not os.access(python, os.X_OK):
        raise ValidationError("executors' python", python, "an executable Python interpreter with pyspark and pyarrow")
    check_java()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    conf_dir, work_dir = daemons.daemon_dirs(run_dir, user)
    extra.setdefault("spark.sql.warehouse.dir", str(work_dir / "spark-warehouse"))
    props = connect_properties(master_url=master_url, port=port, token=token, host=host,
                               driver_host=driver_host,
                               driver_memory=driver_memory, python=python, secret=secret,
                               conf=extra, app_name=app_name)
    for k, v in daemons.HARDENING.items():
        props.setdefault(k, v)
    props_file = daemons.write_properties(conf_dir / f"{name}.properties", props,
                                          user.owner if user else None)
    env = daemons.daemon_env(host, str(conf_dir), {
        "PYSPARK_PYTHON": python,
        "SPARK_DRIVER_MEMORY": driver_memory,
    }, user=user)
    argv = [os.path.join(env["SPARK_HOME"], "bin", "spark-submit"),
            "--class", CONNECT_SERVER_CLASS, "--name", app_name,
            "--properties-file", props_file, "spark-internal"]
    for k in (TOKEN_ENV, "PYSPARK_DRIVER_PYTHON", "SPARK_REMOTE", "SPARK_CONNECT_MODE_ENABLED"):
        env.pop(k, None)
    extra_rec = {"name": name, "host": host, "port": port, "url": client_url(port),
                 "master_url": master_url, "driver_memory": driver_memory,
                 "properties_file": props_file, "python": python}
    try:
        rec = daemons._spawn("connect", argv, run_dir / "logs" / f"{name}.log", env, nice,
                             marker=props_file, user=user,
                             record=(lambda r: record({**r, **extra_rec})) if record else None)
    except OSError as e:
        Path(props_file).unlink(missing_ok=True)
        raise ConnectError(f"could not start the Spark Connect server: {e}") from None
    rec.update(extra_rec)
    return rec


def is_running(rec: dict | None) -> bool:
    return bool(rec) and daemons.is_running(rec)


def stop_connect_server(rec: dict | None, timeout: float = 20.0) -> None:
    """Stop the server (its whole process group) and remove its properties file. Idempotent."""
    if not rec:
        return
    daemons.stop_daemon(rec, timeout=timeout)
    if rec.get("properties_file"):
        Path(rec["properties_file"]).unlink(missing_ok=True)


# ---- reaching the server -------------------------------------------------------------------
def probe(url: str, token: str | None, timeout: float = 10.0, *, ca_pem: bytes | None = None,
          server_name: str | None = None) -> str:
    """One real RPC (AnalyzePlan: SparkVersion) with a gRPC deadline; returns Spark's version.
    ``ca_pem``/``server_name``: TLS to a cluster head (:func:`channel_builder`).

    Raises :class:`ConnectAuthError` when the server refuses the token,
    :class:`ConnectTLSError` when its certificate is not the CA's, and
    :class:`ConnectUnreachableError` when nothing answers within ``timeout`` seconds.
    """
    import grpc  # noqa: PLC0415
    from pyspark.sql.connect.proto import base_pb2, base_pb2_grpc  # noqa: PLC0415

    host, port = _host_port(url)
    if not port_open("127.0.0.1" if host == CLIENT_HOST else host, port, timeout=min(2.0, timeout)):
        if ca_pem is not None:
            raise ConnectUnreachableError(
                f"the cluster's head at {url} does not answer (connection refused, or no route: "
                "is the head server up, and is this host allowed by its security group?)")
        raise ConnectUnreachableError(f"no Spark Connect server listens on {url} (connection refused)")
    channel = channel_builder(f"sc://{host}:{port}", token, ca_pem=ca_pem,
                              server_name=server_name).toChannel()
    try:
        stub = base_pb2_grpc.SparkConnectServiceStub(channel)
        req = base_pb2.AnalyzePlanRequest(session_id=str(uuid.uuid4()),
                                          client_type="jupyter-spark-openstack-probe")
        req.user_context.user_id = os.environ.get("USER", "probe")
        req.spark_version.SetInParent()
        try:
            resp = stub.AnalyzePlan(req, timeout=timeout)
        except grpc.RpcError as e:
            code = e.code() if hasattr(e, "code") else None
            detail = e.details() if hasattr(e, "details") else str(e)
            if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                raise ConnectAuthError(
                    f"the Spark Connect server at {url} refused the "
                    + ("token" if token else "connection: no token was given")
                    + f" ({code.name}: {detail})") from None
            if ca_pem is not None and _is_tls_failure(detail):
                raise ConnectTLSError(
                    f"the TLS handshake with {url} failed: its certificate is not signed by the "
                    f"cluster's CA or does not name {server_name or host} ({detail})") from None
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise ConnectUnreachableError(
                    f"the Spark Connect server at {url} did not answer within {timeout:.0f}s") from None
            raise ConnectUnreachableError(
                f"the Spark Connect server at {url} failed: {getattr(code, 'name', code)}: {detail}") from None
        return resp.spark_version.version
    finally:
        channel.close()


_TLS_FAILURE_RE = re.compile(r"handshake fail|CERTIFICATE_VERIFY_FAILED|certificate verify failed|"
                             r"Peer name .* is not in peer certificate|ssl_transport_security|"
                             r"Hostname Verification Check failed|"
                             r"WRONG_VERSION_NUMBER|SSL_ERROR", re.IGNORECASE)


def _is_tls_failure(detail: str) -> bool:
    return bool(_TLS_FAILURE_RE.search(detail or ""))


def _host_port(url: str) -> tuple[str, int]:
    rest = url[len("sc://"):] if url.startswith("sc://") else url
    rest = rest.split("/", 1)[0]
    host, _, port = rest.rpartition(":")
    return host, int(port)


def warm_up(url: str, token: str | None, timeout: float = 60.0, *, ca_pem: bytes | None = None,
            server_name: str | None = None) -> float | None:
    """Run one tiny job (``range(0, 2)`` over 2 partitions, collected) through the server so
    its executors are up and its code paths warm before the first kernel asks; returns the
    seconds it took, or None if it did not finish within ``timeout`` (best effort: a cluster
    without free cores must not fail the start)."""
    import grpc  # noqa: PLC0415
    from pyspark.sql.connect.proto import base_pb2, base_pb2_grpc, relations_pb2  # noqa: PLC0415

    host, port = _host_port(url)
    channel = channel_builder(f"sc://{host}:{port}", token, ca_pem=ca_pem,
                              server_name=server_name).toChannel()
    t0 = time.monotonic()
    session_id = str(uuid.uuid4())
    user = os.environ.get("USER", "warm-up")
    try:
        stub = base_pb2_grpc.SparkConnectServiceStub(channel)
        req = base_pb2.ExecutePlanRequest(session_id=session_id,
                                          client_type="jupyter-spark-openstack-warm-up")
        req.user_context.user_id = user
        req.plan.root.range.CopyFrom(relations_pb2.Range(start=0, end=2, step=1, num_partitions=2))
        try:
            for _ in stub.ExecutePlan(req, timeout=timeout):
                pass
        except grpc.RpcError:
            return None
        return time.monotonic() - t0
    finally:
        try:
            rel = base_pb2.ReleaseSessionRequest(session_id=session_id)
            rel.user_context.user_id = user
            base_pb2_grpc.SparkConnectServiceStub(channel).ReleaseSession(rel, timeout=5)
        except grpc.RpcError:
            pass
        channel.close()


def wait_answering(url: str, token: str | None, timeout: float, *, ca_pem: bytes | None = None,
                   server_name: str | None = None, alive=None, warm: bool = True,
                   interval: float = 0.25) -> tuple[str, float | None]:
    """Wait until the Connect server at ``url`` answers a real RPC with ``token`` (over TLS
    with ``ca_pem``/``server_name``); returns ``(Spark's version, warm-up seconds)``. With
    ``warm`` (default) it then runs :func:`warm_up` within what is left of ``timeout`` (at most
    90 s), so the first kernel's first job does not pay for executor start-up (None if not
    warmed). ``alive()``, if given, is asked before each try: a message means the server is gone
    (:class:`ConnectServerExited` with it). A refused token or a certificate not of the CA raise at
    once; anything else is retried every ``interval`` seconds until ``timeout``
    (:class:`ConnectError` with the last reason)."""
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while True:
        gone = alive() if alive is not None else None
        if gone:
            raise ConnectServerExited(gone)
        try:
            version = probe(url, token, timeout=max(1.0, min(10.0, deadline - time.monotonic())),
                            ca_pem=ca_pem, server_name=server_name)
            break
        except (ConnectAuthError, ConnectTLSError):
            raise
        except ConnectError as e:
            last = str(e)
        if time.monotonic() > deadline:
            raise ConnectError(f"the Spark Connect server at {url} was not ready within "
                               f"{timeout:.0f}s ({last})")
        time.sleep(interval)
    warmed = warm_up(url, token, timeout=max(1.0, min(90.0, deadline - time.monotonic())),
                     ca_pem=ca_pem, server_name=server_name) if warm else None
    return version, warmed


def wait_connect_ready(rec: dict, token: str, timeout: float = 120.0, *,
                       warm: bool = True) -> str:
    """:func:`wait_answering` for the local server process ``rec`` (its exit ends the wait);
    returns Spark's version and records the warm-up's seconds in ``rec["warm_up_s"]``. Raises
    :class:`ConnectError` with the log's tail if the process dies or the deadline passes."""
    def alive() -> str | None:
        if daemons.is_running(rec):
            return None
        how = daemons.exit_status(rec)
        return (f"the Spark Connect server exited during start-up"
                f"{f' ({how})' if how else ''}\n{_log_tail(rec)}")

    try:
        version, warmed = wait_answering(rec["url"], token, timeout, alive=alive, warm=warm)
    except (ConnectAuthError, ConnectTLSError, ConnectServerExited):
        raise
    except ConnectError as e:   # the deadline passed: its log says why
        raise ConnectError(f"{e}\n{_log_tail(rec)}") from None
    if warm:
        rec["warm_up_s"] = warmed
    return version


def _log_tail(rec: dict, lines: int = 15) -> str:
    try:
        with open(rec["log"], errors="replace") as f:
            data = f.readlines()[-lines:]
        return f"--- last lines of {rec['log']} ---\n" + "".join(data)
    except (OSError, KeyError):
        return ""


# ---- doctor --------------------------------------------------------------------------------
def check_connect(url: str, token: str | None, timeout: float = 5.0, *, ca_pem: bytes | None = None,
                  server_name: str | None = None) -> dict:
    """For ``doctor``: ``{"ok", "category", "message", "version"}``; never raises. Categories:
    ``connect-auth-failed`` (token), ``connect-tls-failed`` (CA), ``connect-unreachable``."""
    try:
        version = probe(url, token, timeout=timeout, ca_pem=ca_pem, server_name=server_name)
    except ConnectAuthError as e:
        return {"ok": False, "category": "connect-auth-failed", "message": str(e), "version": None}
    except ConnectTLSError as e:
        return {"ok": False, "category": "connect-tls-failed", "message": str(e), "version": None}
    except ConnectUnreachableError as e:
        category = "connect-head-unreachable" if ca_pem is not None else "connect-unreachable"
        return {"ok": False, "category": category, "message": str(e), "version": None}
    except ConnectError as e:
        return {"ok": False, "category": "connect-unreachable", "message": str(e), "version": None}
    except (OSError, ValueError) as e:
        return {"ok": False, "category": "connect-unreachable", "message": f"{url}: {e}", "version": None}
    return {"ok": True, "category": None, "message": f"Spark Connect {version} answers on {url}",
            "version": version}


def check_executor_python(python: str, timeout: float = 60.0) -> dict:
    """For ``doctor``: the executors' Python has pyspark and pyarrow, same minor version as
    this (the kernel's) Python. ``{"ok", "message", "python_version", "pyspark", "pyarrow"}``."""
    import json  # noqa: PLC0415
    import subprocess  # noqa: PLC0415

    code = ("import json,sys\nout={'python_version':'%d.%d'%sys.version_info[:2]}\n"
            "for m in ('pyspark','pyarrow'):\n"
            "    try:\n        out[m]=__import__(m).__version__\n"
            "    except Exception as e:\n        out[m]=None\n"
            "print(json.dumps(out))")
    mine = "{}.{}".format(*sys.version_info[:2])
    try:
        res = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=timeout)
        info = json.loads(res.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError) as e:
        return {"ok": False, "message": f"cannot run the executors' Python {python}: {e}",
                "python_version": None, "pyspark": None, "pyarrow": None}
    problems = []
    if info["python_version"] != mine:
        problems.append(f"Python {info['python_version']} but the kernel runs {mine}")
    for m in ("pyspark", "pyarrow"):
        if not info.get(m):
            problems.append(f"{m} is not installed")
    try:
        import pyspark  # noqa: PLC0415

        if info.get("pyspark") and info["pyspark"] != pyspark.__version__:
            problems.append(f"pyspark {info['pyspark']} but the kernel has {pyspark.__version__}")
    except ImportError:
        pass
    info["ok"] = not problems
    info["message"] = (f"executors' Python {python}: " + ("; ".join(problems) if problems else
                       f"Python {info['python_version']}, pyspark {info['pyspark']}, pyarrow {info['pyarrow']}"))
    return info


_EXECUTOR_PROBE = r"""
import json, os, sys
os.environ["SPARK_CONNECT_MODE_ENABLED"] = "1"
from pyspark.sql.connect.client.core import DefaultChannelBuilder
from pyspark.sql.connect.session import SparkSession
from pyspark.sql.functions import udf

def versions(_):
    import json, sys
    out = {"python": "%d.%d" % sys.version_info[:2], "executable": sys.executable}
    for m in ("pyspark", "pyarrow"):
        try:
            out[m] = __import__(m).__version__
        except Exception as e:
            out[m] = None
    return json.dumps(out)

tok = os.environ.pop("SPARK_CONNECT_AUTHENTICATE_TOKEN", None)
if len(sys.argv) > 2:   # TLS to a cluster head: the CA file and the certificate's name
    from jupyter_spark_openstack.core.spark.connect import channel_builder
    cb = channel_builder(sys.argv[1], tok, ca_pem=open(sys.argv[2], "rb").read(),
                         server_name=sys.argv[3] or None)
else:
    cb = DefaultChannelBuilder(sys.argv[1])
    if tok:
        cb.set("token", tok)
spark = SparkSession.builder.channelBuilder(cb).create()
try:
    row = spark.range(1).select(udf(versions, "string")("id")).collect()[0][0]
finally:
    spark.stop()
import pyspark
print(json.dumps({"executor": json.loads(row), "kernel": {
    "python": "%d.%d" % sys.version_info[:2], "pyspark": pyspark.__version__}}))
"""


def check_connect_executors(url: str, token: str | None, kernel_python: str | None = None,
                            timeout: float = 90.0, *, ca_file: str | None = None,
                            server_name: str | None = None) -> dict:
    """For ``doctor``: run a Python UDF through the Connect server from ``kernel_python`` (the
    kernel's interpreter) and compare the executors' Python, pyspark and pyarrow with the
    kernel's. ``{"ok", "category", "message", "executor", "kernel"}``; never raises.

    UDFs run in the executors' Python (``PYSPARK_PYTHON`` of the server); it needs pyspark and
    pyarrow and the kernel's Python minor version."""
    import json  # noqa: PLC0415
    import subprocess  # noqa: PLC0415

    ca_pem = Path(ca_file).read_bytes() if ca_file else None
    base = check_connect(url, token, timeout=min(10.0, timeout), ca_pem=ca_pem,
                         server_name=server_name)
    if not base["ok"]:
        return {**base, "executor": None, "kernel": None}
    python = kernel_python or sys.executable
    env = {k: v for k, v in os.environ.items() if k not in ("SPARK_REMOTE", "SPARK_CONNECT_MODE_ENABLED")}
    if token:
        env[TOKEN_ENV] = token  # the child's environment, not its command line
    try:
        tls_args = [ca_file, server_name or ""] if ca_file else []
        res = subprocess.run([python, "-c", _EXECUTOR_PROBE, url, *tls_args], capture_output=True,
                             text=True, timeout=timeout, env=env)
        info = json.loads(res.stdout.strip().splitlines()[-1])
    except subprocess.TimeoutExpired:
        return {"ok": False, "category": "connect-unreachable", "executor": None, "kernel": None,
                "message": f"a Python UDF through {url} gave no result within {timeout:.0f}s "
                           "(no executors? see the Connect server's log)"}
    except (OSError, ValueError, IndexError):
        tail = (res.stderr.strip().splitlines() or ["no output"])[-1] if "res" in locals() else "could not run"
        return {"ok": False, "category": "unknown", "executor": None, "kernel": None,
                "message": f"a Python UDF through {url} failed: {tail}"}
    ex, ke = info["executor"], info["kernel"]
    problems = []
    if ex["python"] != ke["python"]:
        problems.append(f"executors run Python {ex['python']} ({ex['executable']}), the kernel {ke['python']}")
    for m in ("pyspark", "pyarrow"):
        if not ex.get(m):
            problems.append(f"{m} is missing in the executors' Python {ex['executable']}")
    if ex.get("pyspark") and ex["pyspark"] != ke["pyspark"]:
        problems.append(f"executors have pyspark {ex['pyspark']}, the kernel {ke['pyspark']}")
    return {"ok": not problems, "category": "version-mismatch" if problems else None,
            "executor": ex, "kernel": ke,
            "message": "; ".join(problems) if problems else
            (f"Python UDFs run: executors' Python {ex['python']} ({ex['executable']}), "
             f"pyspark {ex['pyspark']}, pyarrow {ex['pyarrow']}")}


def resolve_kernel_env(env: Mapping[str, str]) -> tuple[str, str | None, dict]:
    """``(client_url, token, tls)`` from a Connect kernel's environment (what its kernelspec
    sets), validated; ``tls`` is ``{"ca_pem", "server_name"}`` (the keywords of
    :func:`channel_builder`) when it names the cluster's CA (a head on her cluster), else
    ``{}``; a loopback server is reached as ``localhost`` (:func:`client_url`). The kernel
    (:func:`...kernel.connect.resolve`) and :func:`doctor_checks` both read it here.

    Raises :class:`ValidationError` for a bad URL or CA file and :class:`ConnectError` for an
    unreadable token file or a token for another host without TLS."""
    from ..kernelspec import (  # noqa: PLC0415
        ENV_CONNECT_CA_FILE,
        ENV_CONNECT_TLS_NAME,
        ENV_CONNECT_TOKEN_FILE,
        ENV_CONNECT_URL,
    )
    from ..models import parse_connect_url  # noqa: PLC0415
    from ..tls import read_ca_file  # noqa: PLC0415

    url = parse_connect_url(ENV_CONNECT_URL, env.get(ENV_CONNECT_URL))
    host, port = _host_port(url)
    token_file = env.get(ENV_CONNECT_TOKEN_FILE)
    token = read_token_file(token_file) if token_file else (env.get(TOKEN_ENV) or None)
    ca_file = env.get(ENV_CONNECT_CA_FILE)
    if ca_file:
        tls = {"ca_pem": read_ca_file(ca_file), "server_name": env.get(ENV_CONNECT_TLS_NAME) or None}
        return connect_url(host, port), token, tls
    if host in (*LOOPBACK_HOSTS, "[::1]", "::1"):
        return client_url(port), token, {}
    if token:
        raise ConnectError(
            f"{ENV_CONNECT_URL}={url}: a Spark Connect server on another host needs TLS: the "
            f"kernelspec names no CA ({ENV_CONNECT_CA_FILE}); restart your server from the hub")
    return connect_url(host, port), token, {}


def doctor_checks(name: str, env: Mapping[str, str], kernel_python: str | None = None,
                  timeout: float = 5.0, udf_timeout: float = 90.0) -> list[dict]:
    """Doctor checks for one Connect kernelspec (its ``env``): the server answers and accepts
    the token, and Python UDFs run with matching versions. Each item has the fields of
    :class:`jupyter_spark_openstack.core.doctor.Check`: ``name``, ``status`` (ok/fail),
    ``message``, ``fix``."""
    from ..kernelspec import ENV_CONNECT_CA_FILE, ENV_CONNECT_URL  # noqa: PLC0415

    if not env.get(ENV_CONNECT_URL):
        return []
    ca_file = env.get(ENV_CONNECT_CA_FILE) or None
    try:
        url, token, tls = resolve_kernel_env(env)
    except ValidationError as e:
        fix = ("restart your server from the hub (it writes the CA file anew)"
               if e.field == "connect CA file" else "restart your server from the hub")
        return [{"name": f"kernelspec:{name}:connect", "status": "fail", "message": str(e), "fix": fix}]
    except ConnectError as e:
        return [{"name": f"kernelspec:{name}:connect", "status": "fail", "message": str(e),
                 "fix": "restart your server from the hub, or reinstall the kernelspec with "
                        "--connect-token-file pointing at the cluster's connect.token"}]
    ca_pem, tls_name = tls.get("ca_pem"), tls.get("server_name")
    c = check_connect(url, token, timeout=timeout, ca_pem=ca_pem, server_name=tls_name)
    if not c["ok"]:
        fix = {"connect-auth-failed": "the token is not this server's: reinstall the kernelspec "
                                      "with the server's token file",
               "connect-tls-failed": "the CA file is not the one of this cluster's start: restart "
                                     "your server from the hub (a new CA at every start)",
               "connect-head-unreachable": "check that her cluster's head is up (cluster status) "
                                           "and that this host is in the hub's hub_cidr"}.get(
            c["category"], "start the Connect server (cluster start --connect, or restart your "
                           "server from the hub) and check its log RUN_DIR/logs/connect.log")
        return [{"name": f"kernelspec:{name}:connect", "status": "fail", "message": c["message"], "fix": fix}]
    out = [{"name": f"kernelspec:{name}:connect", "status": "ok", "message": c["message"], "fix": ""}]
    e = check_connect_executors(url, token, kernel_python, timeout=udf_timeout, ca_file=ca_file,
                                server_name=tls_name)
    out.append({"name": f"kernelspec:{name}:executor-python", "status": "ok" if e["ok"] else "fail",
                "message": e["message"],
                "fix": "" if e["ok"] else "start the Connect server with PYSPARK_PYTHON (and "
                       "spark.executorEnv.PYSPARK_PYTHON) set to a Python of the kernel's minor "
                       "version that has pyspark and pyarrow"})
    return out
