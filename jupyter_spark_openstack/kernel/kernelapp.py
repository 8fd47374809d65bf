"""The ipykernel application: starts the SparkSession in the background, then serves cells."""

from __future__ import annotations

import logging
import os
import sys

from ipykernel.ipkernel import IPythonKernel
from ipykernel.kernelapp import IPKernelApp
from traitlets import Type

from .._version import __version__
from ..core.kernelspec import ENV_EAGER
from ..core.paths import kernel_id_from_connection_file
from .session import LazySession, SessionStarter, current_starter, mark_serving, setup_kernel_log


class SparkKernel(IPythonKernel):
    """IPython kernel with ``spark``/``sc``; stops the SparkSession on shutdown."""

    implementation = "jupyter_spark_openstack"
    implementation_version = __version__

    def do_shutdown(self, restart):
        starter = current_starter()
        if starter is not None:
            starter.stop(timeout=8.0)
        return super().do_shutdown(restart)


def _connection_file_from_argv(argv: list[str]) -> str | None:
    for i, arg in enumerate(argv):
        if arg in ("-f", "--f", "--IPKernelApp.connection_file") and i + 1 < len(argv):
            return argv[i + 1]
        for flag in ("-f=", "--f=", "--IPKernelApp.connection_file="):
            if arg.startswith(flag):
                return arg[len(flag):]
    return None


class SparkKernelApp(IPKernelApp):
    name = "jupyter-spark-openstack-kernel"
    kernel_class = Type(SparkKernel, klass="ipykernel.kernelbase.Kernel", config=True)

    starter: SessionStarter | None = None

    def initialize(self, argv=None):
        args = list(sys.argv[1:] if argv is None else argv)
        cf = _connection_file_from_argv(args)
        kernel_id = kernel_id_from_connection_file(cf) if cf else f"pid{os.getpid()}"
        log, log_path = setup_kernel_log(kernel_id)
        log.info("kernel %s starting (pid %s, python %s, jupyter_spark_openstack %s)",
                 kernel_id, os.getpid(), sys.executable, __version__)
        # First thing: the JVM start runs while ipykernel sets itself up.
        self.starter = SessionStarter(kernel_id, log=log, log_path=log_path).start()
        try:
            super().initialize(argv)
        except BaseException:
            log.exception("kernel initialisation failed")
            raise
        if log_path is not None:
            # the kernel app's own warnings and errors (what it prints on stderr) go there too
            tee = logging.FileHandler(log_path, encoding="utf-8")
            tee.setLevel(logging.WARNING)
            tee.setFormatter(log.handlers[0].formatter)
            self.log.addHandler(tee)
        if self.kernel is not None and getattr(self.kernel, "shell", None) is not None:
            self._install_names(self.kernel.shell)
        if os.environ.get(ENV_EAGER, "").strip().lower() in ("1", "true", "yes"):
            # Baseline behaviour: no request is served before the session exists.
            log.info("eager mode: waiting for the SparkSession before serving requests")
            mark_serving()
            self.starter.wait(self.starter.timeout + 15)

    def start(self):
        import signal  # noqa: PLC0415

        from tornado import ioloop  # noqa: PLC0415

        # SIGTERM (a manager giving up on a polite shutdown): exit through SystemExit so that
        # atexit handlers run (the driver's scratch dir is removed; the JVM exits on its own
        # when our end of its stdin closes).
        signal.signal(signal.SIGTERM, _exit_on_sigterm)

        # shortly after the event loop runs: the kernel is answering requests
        ioloop.IOLoop.current().call_later(0.3, mark_serving)
        super().start()

    def _install_names(self, shell) -> None:
        starter = self.starter
        proxies = {"spark": LazySession(starter, "spark"), "sc": LazySession(starter, "sc")}
        shell.user_ns.update(proxies)

        def swap_in_real_objects(*_a, **_k):
            # Once the session exists, the proxies make way for the real objects.
            if starter.state != "ready":
                return
            for name, proxy in proxies.items():
                if shell.user_ns.get(name) is proxy:
                    real = starter.spark if name == "spark" else starter.sc
                    if real is not None:
                        shell.user_ns[name] = real
            try:
                shell.events.unregister("post_execute", swap_in_real_objects)
            except ValueError:
                pass

        shell.events.register("post_execute", swap_in_real_objects)


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


def main() -> None:
    SparkKernelApp.launch_instance()
