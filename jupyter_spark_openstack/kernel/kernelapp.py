"""The ipykernel application: starts the SparkSession in the background, then serves cells."""

from __future__ import annotations

import logging

from ipykernel.ipkernel import IPythonKernel
from ipykernel.kernelapp import IPKernelApp
from traitlets import Type

from .._version import __version__
from .boot import _boot, boot, is_eager
from .session import LazySession, SessionStarter, current_starter, mark_serving


class SparkKernel(IPythonKernel):
    """IPython kernel with ``spark``/``sc``; stops the SparkSession on shutdown."""

    implementation = "jupyter_spark_openstack"
    implementation_version = __version__

    def do_shutdown(self, restart):
        starter = current_starter()
        if starter is not None:
            # within jupyter_client's patience (shutdown_wait_time, 5 s) before it kills us
            starter.stop(timeout=4.0)
        return super().do_shutdown(restart)


class SparkKernelApp(IPKernelApp):
    name = "jupyter-spark-openstack-kernel"
    kernel_class = Type(SparkKernel, klass="ipykernel.kernelbase.Kernel", config=True)

    starter: SessionStarter | None = None

    def initialize(self, argv=None):
        self.starter = starter = boot(argv)  # already started unless eager
        log, log_path = _boot["log"], _boot["log_path"]
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
        if is_eager():
            # Baseline: the session is created now, during start-up, and no request is
            # served before it exists (the classic PYTHONSTARTUP=pyspark/shell.py recipe).
            log.info("eager mode: creating the SparkSession before serving requests")
            mark_serving()
            starter.start()
            starter.wait(starter.timeout + 15)

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
        # live Spark progress under each running cell (kernel/progress.py)
        from .progress import ProgressTracker  # noqa: PLC0415

        ProgressTracker(lambda: (starter.spark, starter.sc) if starter.state == "ready" else None
                        ).install(shell)


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


def main() -> None:
    SparkKernelApp.launch_instance()
