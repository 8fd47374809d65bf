"""The Spark Connect session factory of the PySpark kernel.

The kernel (``python -m jupyter_spark_openstack.kernel``) calls :func:`create_session` when its
kernelspec sets ``SPARK_OPENSTACK_CONNECT_URL``: the kernel is then a thin gRPC client of the
user's Connect server, with no JVM of its own.

* The token comes from the file named by ``SPARK_OPENSTACK_CONNECT_TOKEN_FILE`` (0600) or from
  ``SPARK_CONNECT_AUTHENTICATE_TOKEN``; never from kernel.json.
* The client talks to ``sc://localhost:PORT``: with a token, PySpark uses TLS for any other
  host name (even ``127.0.0.1``) and would hang against our plain loopback server, so loopback
  addresses are rewritten to ``localhost`` and other hosts are refused until TLS exists.
* The connection is checked with one RPC under a deadline first, so a wrong token or a dead
  server ends in a clear :class:`~jupyter_spark_openstack.core.spark.connect.ConnectError`
  instead of PySpark's long retries.
* ``sc`` is a :class:`SparkContextUnavailable`: any attribute access explains that this is a
  Spark Connect kernel and names the classic kernel; :func:`install_explanations` makes
  ``spark.sparkContext``, ``df.rdd`` and ``SparkContext.getOrCreate()`` say the same.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping

from ..core.kernelspec import (
    ENV_CONNECT_TOKEN_FILE,
    ENV_CONNECT_URL,
)
from ..core.spark import connect as core_connect
from ..core.spark.connect import ConnectUnreachableError

URL_ENV = ENV_CONNECT_URL
TOKEN_FILE_ENV = ENV_CONNECT_TOKEN_FILE
TOKEN_ENV = core_connect.TOKEN_ENV
TIMEOUT_ENV = "SPARK_OPENSTACK_CONNECT_TIMEOUT"
DEFAULT_TIMEOUT = 15.0
CLASSIC_KERNEL = "PySpark (classic, RDD API)"

EXPLANATION = (
    "this is a Spark Connect kernel: `sc`/RDD API not available "
    "(no SparkContext: the driver runs in your Spark Connect server, not in this kernel); "
    f"use the DataFrame API (spark.range, spark.createDataFrame, spark.read ...) or the "
    f"'{CLASSIC_KERNEL}' kernel"
)

# PySpark error conditions that mean "this needs a SparkContext in the kernel"
_UNSUPPORTED_CONDITIONS = ("JVM_ATTRIBUTE_NOT_SUPPORTED", "CONTEXT_UNAVAILABLE_FOR_REMOTE_CLIENT")
_UNSUPPORTED_FEATURES = ("rdd", "sparkContext", "SparkContext")


class SparkConnectUnsupportedError(AttributeError):
    """Raised for the RDD/SparkContext API in a Spark Connect kernel (category
    ``connect-unsupported-api``). An AttributeError, so ``hasattr`` and tab completion stay quiet."""


class SparkContextUnavailable:
    """What ``sc`` is in a Spark Connect kernel: every attribute access explains why not."""

    __slots__ = ()

    def __getattr__(self, name: str):
        raise SparkConnectUnsupportedError(f"sc.{name}: {EXPLANATION}")

    def __call__(self, *args, **kwargs):
        raise SparkConnectUnsupportedError(EXPLANATION)

    def __repr__(self) -> str:
        return f"<sc unavailable: {EXPLANATION}>"

    def __bool__(self) -> bool:
        return False


def _say(log, msg: str) -> None:
    if log is None:
        return
    if hasattr(log, "info"):
        log.info(msg)
    elif callable(log):
        log(msg)


def resolve(env: Mapping[str, str]) -> tuple[str, str | None, dict]:
    """``(client_url, token, tls)`` from the kernel's environment:
    :func:`.core.spark.connect.resolve_kernel_env` (the one reader of a Connect kernelspec's
    environment, which the doctor uses too)."""
    return core_connect.resolve_kernel_env(env)


def create_session(env: Mapping[str, str] | None = None, app_name: str | None = None, log=None):
    """Connect to the user's Spark Connect server; returns ``(spark, sc)`` where ``sc`` is a
    :class:`SparkContextUnavailable`.

    Raises :class:`ConnectError` (``ConnectAuthError``: token refused; ``ConnectUnreachableError``:
    nothing answers within ``SPARK_OPENSTACK_CONNECT_TIMEOUT`` seconds, default 15) with a
    message meant for the notebook cell; never hangs longer than that deadline.
    """
    env = os.environ if env is None else env
    timeout = float(env.get(TIMEOUT_ENV) or DEFAULT_TIMEOUT)
    url, token, tls = resolve(env)
    _say(log, f"Spark Connect: checking {url} ({'with' if token else 'without'} a token"
              f"{', TLS with the cluster CA' if tls else ''})")
    version = core_connect.probe(url, token, timeout=timeout, **tls)
    _say(log, f"Spark Connect: server {url} answers (Spark {version})")

    # Code that calls SparkSession.builder.getOrCreate() itself gets this same session (and
    # never starts a local JVM); SparkContext() raises CONTEXT_UNAVAILABLE_FOR_REMOTE_CLIENT.
    os.environ["SPARK_CONNECT_MODE_ENABLED"] = "1"
    os.environ["SPARK_REMOTE"] = url
    os.environ.pop(TOKEN_ENV, None)

    from pyspark.sql.connect.session import SparkSession  # noqa: PLC0415

    builder = core_connect.channel_builder(url, token, **tls)
    user = env.get("JUPYTERHUB_USER") or env.get("USER")
    if user:
        builder.set("user_id", user)
    spark = _with_deadline(lambda: SparkSession.builder.channelBuilder(builder).getOrCreate(),
                           timeout, url)
    _with_deadline(lambda: spark.version, timeout, url)   # first RPC of this client, bounded
    _bound_retries(spark)
    if not install_explanations():
        _install_explanations_later()
    _say(log, f"Spark Connect: session {app_name or ''} ready on {url}")
    return spark, SparkContextUnavailable()


RETRIES = 6            # PySpark's default (15, up to 60 s apart) waits 10+ minutes for a
MAX_BACKOFF_MS = 10000  # dead server; these give up after about 25 s


def _bound_retries(spark) -> None:
    """A cell must not hang for 10 minutes when the server is gone: bound PySpark's retries."""
    try:
        from pyspark.sql.connect.client.retries import DefaultPolicy  # noqa: PLC0415

        spark.client.set_retry_policies([DefaultPolicy(max_retries=RETRIES,
                                                       max_backoff=MAX_BACKOFF_MS)])
    except (ImportError, AttributeError, TypeError):  # another PySpark: keep its policy
        pass


def _install_explanations_later(timeout: float = 120.0) -> None:
    """The kernel runs this factory while ipykernel is still building its shell: install the
    explanations as soon as the shell exists."""

    def wait():
        try:
            from IPython.core.interactiveshell import InteractiveShell  # noqa: PLC0415
        except ImportError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if InteractiveShell.initialized():
                install_explanations(InteractiveShell.instance())
                return
            time.sleep(0.05)

    threading.Thread(target=wait, name="spark-connect-explanations", daemon=True).start()


def _with_deadline(fn, timeout: float, url: str):
    """Run ``fn`` in a daemon thread; raise :class:`ConnectUnreachableError` after ``timeout``."""
    box: dict = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = e

    t = threading.Thread(target=run, name="spark-connect-first-rpc", daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise ConnectUnreachableError(
            f"the Spark Connect server at {url} did not answer within {timeout:.0f}s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def is_unsupported_api_error(value: BaseException) -> bool:
    """True for PySpark's errors that mean "needs a SparkContext" (``df.rdd``, ...)."""
    if isinstance(value, SparkConnectUnsupportedError):
        return True
    cond = None
    getter = getattr(value, "getCondition", None) or getattr(value, "getErrorClass", None)
    if callable(getter):
        try:
            cond = getter()
        except Exception:  # noqa: BLE001
            cond = None
    if cond in _UNSUPPORTED_CONDITIONS:
        return True
    if cond == "NOT_IMPLEMENTED":
        params = getattr(value, "getMessageParameters", lambda: {})() or {}
        return params.get("feature") in _UNSUPPORTED_FEATURES
    return False


def install_explanations(shell=None) -> bool:
    """Make the running IPython shell explain RDD/SparkContext errors (see module docstring):
    the cell's error becomes :class:`SparkConnectUnsupportedError` whose message names the
    classic kernel, followed by PySpark's own message. Chains any handler already installed.
    Returns False when there is no IPython shell."""
    if shell is None:
        try:
            from IPython import get_ipython  # noqa: PLC0415
        except ImportError:
            return False
        shell = get_ipython()
    if shell is None or getattr(shell, "_spark_connect_explanations", False):
        return shell is not None
    from pyspark.errors import PySparkException  # noqa: PLC0415

    prev_types = tuple(shell.custom_exceptions or ())
    prev_handler = shell.CustomTB if prev_types else None

    def handler(self, etype, value, tb, tb_offset=None):
        if is_unsupported_api_error(value) and not isinstance(value, SparkConnectUnsupportedError):
            new = SparkConnectUnsupportedError(f"{EXPLANATION}\n(PySpark said: {value})")
            new.__cause__ = None
            self.showtraceback((SparkConnectUnsupportedError, new, tb), tb_offset=tb_offset)
            return None
        if prev_handler is not None and isinstance(value, prev_types):
            return prev_handler(etype, value, tb, tb_offset=tb_offset)
        self.showtraceback((etype, value, tb), tb_offset=tb_offset)
        return None

    shell.set_custom_exc(tuple({PySparkException, *prev_types}), handler)
    shell._spark_connect_explanations = True
    return True
