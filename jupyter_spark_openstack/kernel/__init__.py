"""The PySpark kernel: ``python -m jupyter_spark_openstack.kernel -f {connection_file}``.

An ipykernel whose namespace has ``spark`` (SparkSession) and ``sc`` (SparkContext). The
session is created in a background thread as soon as the kernel process starts, so the kernel
answers cells at once; ``spark``/``sc`` are lazy proxies that wait for the session on first use
(and are swapped for the real objects once it exists). A failed start (no Java, master
unreachable, bad conf) is raised, with its cause, by the cell that touches ``spark``, and is
written to the per-kernel log :func:`jupyter_spark_openstack.core.paths.kernel_log_path`.

Settings come from the environment the kernelspec sets (see
:mod:`jupyter_spark_openstack.core.kernelspec`): ``SPARK_OPENSTACK_MASTER_URL``,
``SPARK_OPENSTACK_CONF`` (JSON), ``SPARK_OPENSTACK_SECRET_FILE``, ``SPARK_OPENSTACK_CONNECT_URL``,
``SPARK_OPENSTACK_CONNECT_TOKEN_FILE``, ``SPARK_OPENSTACK_START_TIMEOUT`` (seconds, default 120),
``SPARK_OPENSTACK_EAGER=1`` (create the session during start-up, once the shell exists, and
serve no request before it is there, like the PYTHONSTARTUP=pyspark/shell.py recipe:
the baseline of ``bench/bench_kernel_start.py``).

Session factories
-----------------
How the session is made is chosen by the environment:

* ``SPARK_OPENSTACK_SESSION_FACTORY=module:function`` if set, else
* ``jupyter_spark_openstack.kernel.connect:create_session`` when
  ``SPARK_OPENSTACK_CONNECT_URL`` is set (Spark Connect), else
* ``jupyter_spark_openstack.kernel.classic:create_session`` (a driver JVM in the kernel).

A factory has this signature and runs in the background thread::

    def create_session(env: Mapping[str, str], app_name: str,
                       log: logging.Logger) -> tuple[SparkSession, object | None]:
        '''Return (spark, sc). Raise an exception whose message says what failed and why
        (it is shown to the user as "SparkSession could not start: <message>").'''

``env`` is a copy of the kernel's environment, ``app_name`` is ``pyspark-<user>-<kernel8>``,
``log`` writes to the per-kernel log (plain text, one event per line). The factory must bound
its own waiting (``SPARK_OPENSTACK_START_TIMEOUT``); the kernel additionally gives up waiting
15 s after that timeout. ``sc`` may be ``None`` (touching ``sc`` then raises a ``RuntimeError``
saying this kernel has no SparkContext) or any object, e.g. one that explains on attribute
access why a Spark Connect kernel has no RDD API.

The factory's module may also define ``stop_session(spark, sc, log) -> None``, called (bounded
to 8 s) when the kernel shuts down; without it the kernel calls ``spark.stop()``.
"""

from __future__ import annotations

CLASSIC_FACTORY = "jupyter_spark_openstack.kernel.classic:create_session"
CONNECT_FACTORY = "jupyter_spark_openstack.kernel.connect:create_session"


def session_status() -> dict:
    """State of this kernel's SparkSession start, without waiting:
    ``{"state": "idle"|"starting"|"ready"|"failed", "elapsed": s, "error": str|None, ...}``."""
    from .session import current_starter  # noqa: PLC0415

    starter = current_starter()
    return starter.status() if starter else {"state": "idle", "elapsed": None, "error": None}


__all__ = ["session_status", "CLASSIC_FACTORY", "CONNECT_FACTORY"]
