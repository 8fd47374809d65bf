"""Starting the SparkSession in the background, and the lazy ``spark``/``sc`` proxies."""

from __future__ import annotations

import getpass
import importlib
import logging
import os
import re
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path

from ..core.kernelspec import ENV_CONNECT_URL, ENV_START_TIMEOUT
from . import CLASSIC_FACTORY, CONNECT_FACTORY

LOGGER_NAME = "jupyter_spark_openstack.kernel"
DEFAULT_START_TIMEOUT = 120.0
_GRACE = 15.0

_current: SessionStarter | None = None
_serving = threading.Event()


def mark_serving() -> None:
    """Called by the kernel app once it handles requests (factories may wait for it)."""
    _serving.set()


def wait_until_serving(timeout: float) -> bool:
    """For factories: hold CPU-heavy work (imports) until the kernel serves, at most ``timeout`` s."""
    return _serving.wait(timeout)


class SparkStartError(RuntimeError):
    """The SparkSession of this kernel could not be created; the message says why."""


def current_starter() -> SessionStarter | None:
    return _current


# ---- the per-kernel log --------------------------------------------------------------------
class _LineFormatter(logging.Formatter):
    """``2026-11-25T17:40:01.123Z LEVEL message``; every line of a multi-line message
    (tracebacks, JVM output) gets the same prefix, so each line stands alone."""

    def format(self, record: logging.LogRecord) -> str:
        t = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        prefix = f"{t}.{int(record.msecs):03d}Z {record.levelname}"
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip()
        return "\n".join(f"{prefix} {line}" for line in text.splitlines() or [""])


def setup_kernel_log(kernel_id: str) -> tuple[logging.Logger, Path | None]:
    """The logger writing to ``kernel_log_path(kernel_id)`` (created 0600, appended to)."""
    from ..core.paths import kernel_log_path  # noqa: PLC0415

    log = logging.getLogger(LOGGER_NAME)
    log.setLevel(logging.INFO)
    log.propagate = False
    path = None
    try:
        path = kernel_log_path(kernel_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.close(fd)
        handler: logging.Handler = logging.FileHandler(path, encoding="utf-8")
    except OSError as e:  # a read-only runtime dir must not stop the kernel
        handler = logging.StreamHandler(sys.__stderr__)
        print(f"jupyter_spark_openstack: cannot write kernel log {path}: {e}", file=sys.__stderr__)
        path = None
    handler.setFormatter(_LineFormatter())
    for h in list(log.handlers):
        log.removeHandler(h)
        h.close()
    log.addHandler(handler)
    return log, path


# ---- choosing and running the factory ------------------------------------------------------
def factory_spec(env: Mapping[str, str]) -> str:
    explicit = env.get("SPARK_OPENSTACK_SESSION_FACTORY")
    if explicit:
        return explicit
    return CONNECT_FACTORY if env.get(ENV_CONNECT_URL) else CLASSIC_FACTORY


def load_factory(spec: str) -> Callable:
    module, _, func = spec.partition(":")
    return getattr(importlib.import_module(module), func or "create_session")


def app_name_for(kernel_id: str, env: Mapping[str, str]) -> str:
    user = env.get("JUPYTERHUB_USER") or ""
    if not user:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = "user"
    user = re.sub(r"[^A-Za-z0-9._-]+", "_", user)[:40] or "user"
    return f"pyspark-{user}-{kernel_id[:8]}"


def start_timeout(env: Mapping[str, str]) -> float:
    try:
        t = float(env.get(ENV_START_TIMEOUT) or DEFAULT_START_TIMEOUT)
        return t if t > 0 else DEFAULT_START_TIMEOUT
    except ValueError:
        return DEFAULT_START_TIMEOUT


class SessionStarter:
    """Runs the session factory once, in a daemon thread, and remembers the outcome."""

    def __init__(self, kernel_id: str, env: Mapping[str, str] | None = None,
                 log: logging.Logger | None = None, log_path: Path | None = None):
        self.kernel_id = kernel_id
        self.env = dict(os.environ if env is None else env)
        self.log = log or logging.getLogger(LOGGER_NAME)
        self.log_path = log_path
        self.app_name = app_name_for(kernel_id, self.env)
        self.factory = factory_spec(self.env)
        self.timeout = start_timeout(self.env)
        self.state = "idle"
        self.spark = None
        self.sc = None
        self.error: BaseException | None = None
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> SessionStarter:
        global _current
        _current = self
        self.state = "starting"
        self.started_at = time.monotonic()
        self.log.info("kernel %s: starting SparkSession %s in the background (factory %s, timeout %.0f s)",
                      self.kernel_id, self.app_name, self.factory, self.timeout)
        self._thread = threading.Thread(target=self._run, name="spark-session-starter", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            spark, sc = load_factory(self.factory)(self.env, self.app_name, self.log)
            self.spark, self.sc = spark, sc
            self.state = "ready"
            self.finished_at = time.monotonic()
            self.log.info("SparkSession ready after %.1f s: %s", self.elapsed, _describe(spark, sc))
        except BaseException as e:  # noqa: BLE001 - every failure must reach the user
            self.error = e
            self.state = "failed"
            self.finished_at = time.monotonic()
            self.log.error("SparkSession could not start: %s", _one_line(e), exc_info=True)
        finally:
            self._done.set()

    @property
    def elapsed(self) -> float | None:
        if self.started_at is None:
            return None
        return (self.finished_at or time.monotonic()) - self.started_at

    def status(self) -> dict:
        return {"state": self.state, "elapsed": self.elapsed, "app_name": self.app_name,
                "factory": self.factory, "error": _one_line(self.error) if self.error else None,
                "log": str(self.log_path) if self.log_path else None}

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    def result(self, notice: Callable[[str], None] | None = None):
        """``(spark, sc)``, waiting for the start if needed; :class:`SparkStartError` if it failed."""
        __tracebackhide__ = True  # noqa: F841 - IPython hides this frame
        if not self._done.is_set():
            if self.state == "idle":
                raise SparkStartError("SparkSession was never started in this kernel")
            if notice:
                notice(f"waiting for SparkSession {self.app_name}… "
                       f"(starting for {self.elapsed:.1f} s)")
            limit = self.timeout + _GRACE - (self.elapsed or 0)
            if not self._done.wait(max(limit, 0.1)):
                raise SparkStartError(
                    f"SparkSession could not start: still not ready after {self.elapsed:.0f} s "
                    f"(SPARK_OPENSTACK_START_TIMEOUT={self.timeout:.0f}); see {self.log_path}")
            if notice and self.state == "ready":
                notice(f"SparkSession ready after {self.elapsed:.1f} s")
        if self.state == "failed":
            where = f" (kernel log: {self.log_path})" if self.log_path else ""
            # The cause is in the message; its traceback is in the kernel log.
            raise SparkStartError(f"SparkSession could not start: {_one_line(self.error)}{where}") from None
        return self.spark, self.sc

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the session if it exists (on kernel shutdown), bounded by ``timeout``."""
        if self.state != "ready" or self.spark is None:
            return
        stopper = _quiet_stop
        try:
            mod = importlib.import_module(self.factory.partition(":")[0])
            stopper = getattr(mod, "stop_session", None) or _quiet_stop
        except ImportError:
            pass
        t = threading.Thread(target=_run_stop, args=(stopper, self.spark, self.sc, self.log),
                             daemon=True)
        t.start()
        t.join(timeout)
        self.state = "stopped"
        self.log.info("SparkSession stopped (kernel shutdown)")


def _run_stop(stopper, spark, sc, log) -> None:
    try:
        stopper(spark, sc, log)
    except Exception as e:  # noqa: BLE001
        log.warning("stopping the session failed: %s", _one_line(e))


def _quiet_stop(spark, sc, log) -> None:
    try:
        spark.stop()
    except Exception as e:  # noqa: BLE001
        log.warning("spark.stop() failed: %s", _one_line(e))


def _one_line(e: BaseException | None) -> str:
    if e is None:
        return ""
    text = str(e).strip() or type(e).__name__
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return " | ".join(lines[:6]) if len(lines) > 1 else (lines[0] if lines else type(e).__name__)


def _describe(spark, sc) -> str:
    try:
        if sc is not None and hasattr(sc, "applicationId"):
            return f"app {sc.applicationId} on {sc.master}, UI {sc.uiWebUrl}"
    except Exception:  # noqa: BLE001
        pass
    return repr(spark)


# ---- the lazy proxies ----------------------------------------------------------------------
def _print_notice(msg: str) -> None:
    print(msg, flush=True)


class LazySession:
    """Stands for ``spark`` (``which="spark"``) or ``sc`` until the session exists.

    Attribute access waits for the session (printing one line while it waits), then
    forwards to the real object. IPython's display probes (``_ipython_*``) don't wait.
    """

    __slots__ = ("_starter", "_which")

    def __init__(self, starter: SessionStarter, which: str):
        object.__setattr__(self, "_starter", starter)
        object.__setattr__(self, "_which", which)

    def _target(self):
        __tracebackhide__ = True  # noqa: F841
        spark, sc = self._starter.result(notice=_print_notice)
        if self._which == "spark":
            return spark
        if sc is None:
            raise RuntimeError(f"`sc` (SparkContext) is not available in this kernel "
                               f"(session factory {self._starter.factory})")
        return sc

    def __getattr__(self, name: str):
        __tracebackhide__ = True  # noqa: F841
        if name.startswith("_ipython_") or name in ("__wrapped__",):
            raise AttributeError(name)
        return getattr(self._target(), name)

    def __setattr__(self, name: str, value) -> None:
        setattr(self._target(), name, value)

    def __dir__(self):
        if self._starter.state == "ready":
            return dir(self._target())
        return sorted(set(object.__dir__(self)))

    def __repr__(self) -> str:
        if self._starter.state in ("starting", "idle"):
            return f"<{self._which}: SparkSession {self._starter.app_name} is starting ({self._starter.elapsed or 0:.1f} s); use it to wait>"
        return repr(self._target())

    def __enter__(self):
        return self._target().__enter__()

    def __exit__(self, *exc):
        return self._target().__exit__(*exc)

    def __eq__(self, other):
        return self._target() == other

    def __hash__(self):
        return object.__hash__(self)
