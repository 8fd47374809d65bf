"""A jupyter_client kernel provisioner that captures a PySpark kernel's stdout/stderr to a file.

Registered as the entry point ``spark-openstack-capture`` in the group
``jupyter_client.kernel_provisioners``. The server extension makes it the default provisioner
of the notebook server (unless another default was configured), so kernelspecs need no
``kernel_provisioner`` stanza; a kernelspec may still name it explicitly.

It behaves exactly like jupyter_client's ``LocalProvisioner``, except for kernels whose
kernelspec metadata has a ``jupyter_spark_openstack`` section: for those, the process's stdout
and stderr go (appended) to :func:`jupyter_spark_openstack.core.paths.kernel_output_path`.
The file is opened *by the server* and handed to the child as its fds 1 and 2, so even an
interpreter that cannot import anything ("No module named ipykernel") leaves its message
there. When the process ends on a signal the server did not send (e.g. the OOM killer's
SIGKILL), a line saying so is appended too, and one on its memory: its memory cgroup's limit,
peak and OOM kills during this life, and its own peak RSS (:mod:`..core.diagnostics.memory`),
so that an out-of-memory kill is shown with its evidence.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from jupyter_client.provisioning import LocalProvisioner

from ..core import paths
from ..core.diagnostics.classify import LAUNCH_MARKER
from ..core.diagnostics.memory import MemoryWatch
from ..core.kernelspec import is_ours

PROVISIONER_NAME = "spark-openstack-capture"


def is_pyspark_spec(kernel_spec: Any) -> bool:
    return is_ours({"metadata": getattr(kernel_spec, "metadata", None)})


def _stamp() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")


class CaptureProvisioner(LocalProvisioner):
    """LocalProvisioner + stdout/stderr of PySpark kernels to ``kernel_output_path(kernel_id)``."""

    _exit_recorded = False
    _signal_sent: int | None = None
    _memory: MemoryWatch | None = None

    @property
    def capturing(self) -> bool:
        return is_pyspark_spec(self.kernel_spec)

    @property
    def output_path(self):
        return paths.kernel_output_path(self.kernel_id)

    def _append(self, text: str) -> None:
        try:
            path = self.output_path
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a", encoding="utf-8") as f:
                f.write(text)
        except OSError as e:  # never break a kernel start or stop for a log line
            self.log.warning("spark-openstack: cannot write %s: %s", self.output_path, e)

    async def launch_kernel(self, cmd: list[str], **kwargs: Any):
        if not self.capturing or "stdout" in kwargs or "stderr" in kwargs:
            return await super().launch_kernel(cmd, **kwargs)
        path = self.output_path
        path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)  # logs can show conf values; keep them to this user
        name = getattr(self.parent, "kernel_name", None) or "?"
        self._append(f"{LAUNCH_MARKER} {self.kernel_id} ({name}) at {_stamp()}: {' '.join(cmd)}\n")
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            # The child gets its own dup of fd as 1 and 2; ours is closed right after.
            info = await super().launch_kernel(cmd, stdout=fd, stderr=fd, **kwargs)
        finally:
            os.close(fd)
        self._exit_recorded = False
        self._signal_sent = None
        self._memory = MemoryWatch.start(self.pid) if self.pid else None
        self.log.info("spark-openstack: kernel %s output -> %s", self.kernel_id, path)
        return info

    def _record_exit(self, ret: int | None) -> None:
        if ret is None or self._exit_recorded or not self.capturing:
            return
        self._exit_recorded = True
        if ret < 0:
            signum = -ret
            try:
                name = signal.Signals(signum).name
            except ValueError:
                name = f"signal {signum}"
            by_us = self._signal_sent == signum
            who = "sent by the notebook server" if by_us else "not sent by the notebook server"
            self._append(f"[spark-openstack] kernel {self.kernel_id} (pid {self.pid}) killed by "
                         f"signal {signum} ({name}, {who}) at {_stamp()}\n")
            if not by_us and self._memory is not None:
                self._append(self._memory.report(self.kernel_id, self.pid, signum))
        else:
            self._append(f"[spark-openstack] kernel {self.kernel_id} (pid {self.pid}) exited "
                         f"with code {ret} at {_stamp()}\n")

    async def poll(self) -> int | None:
        ret = await super().poll()
        if ret is None and self._memory is not None and self.pid:
            self._memory.sample(self.pid)  # the restarter polls every few seconds
        self._record_exit(ret)
        return ret

    async def wait(self) -> int | None:
        proc = self.process
        ret = await super().wait()
        if ret is None and proc is not None:
            ret = proc.returncode
        self._record_exit(ret)
        return ret

    async def send_signal(self, signum: int) -> None:
        self._signal_sent = signum
        await super().send_signal(signum)

    async def kill(self, restart: bool = False) -> None:
        self._signal_sent = signal.SIGKILL
        await super().kill(restart=restart)

    async def terminate(self, restart: bool = False) -> None:
        self._signal_sent = signal.SIGTERM
        await super().terminate(restart=restart)
