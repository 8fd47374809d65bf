"""The first thing the kernel process does, before ipykernel is even imported: open the
per-kernel log and (unless eager) start creating the SparkSession in the background."""

from __future__ import annotations

import os
import sys

from .._version import __version__
from ..core.kernelspec import ENV_EAGER
from ..core.paths import kernel_id_from_connection_file
from .session import SessionStarter, setup_kernel_log

_boot: dict = {}


def is_eager(env=None) -> bool:
    env = os.environ if env is None else env
    return env.get(ENV_EAGER, "").strip().lower() in ("1", "true", "yes")


def connection_file_from_argv(argv: list[str]) -> str | None:
    for i, arg in enumerate(argv):
        if arg in ("-f", "--f", "--IPKernelApp.connection_file") and i + 1 < len(argv):
            return argv[i + 1]
        for flag in ("-f=", "--f=", "--IPKernelApp.connection_file="):
            if arg.startswith(flag):
                return arg[len(flag):]
    return None


def boot(argv: list[str] | None = None) -> SessionStarter:
    """Create (once) the log and the session starter; start it now unless eager mode.

    Eager mode (``SPARK_OPENSTACK_EAGER=1``) is the baseline this kernel is measured against:
    like the classic recipe (``PYTHONSTARTUP=$SPARK_HOME/python/pyspark/shell.py``), the
    session is created during the shell's start-up, before the first reply; the app starts
    the starter then and waits for it.
    """
    if "starter" in _boot:
        return _boot["starter"]
    args = list(sys.argv[1:] if argv is None else argv)
    cf = connection_file_from_argv(args)
    kernel_id = kernel_id_from_connection_file(cf) if cf else f"pid{os.getpid()}"
    log, log_path = setup_kernel_log(kernel_id)
    log.info("kernel %s starting (pid %s, python %s, jupyter_spark_openstack %s%s)",
             kernel_id, os.getpid(), sys.executable, __version__,
             ", eager mode" if is_eager() else "")
    starter = SessionStarter(kernel_id, log=log, log_path=log_path)
    _boot.update(starter=starter, log=log, log_path=log_path)
    if not is_eager():
        starter.start()  # the JVM boots while ipykernel is imported and set up
    return starter
