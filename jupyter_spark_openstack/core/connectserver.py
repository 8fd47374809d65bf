"""A Spark Connect server on this host with its token file: start, wait, stop.

The one implementation behind ``cluster start --connect`` (:class:`.localcluster.LocalCluster`)
and the hub's per-user Connect server (:class:`.cluster.SparkCluster`, head placement ``hub``);
the process itself is :func:`.spark.connect.start_connect_server`. What a caller keeps of it
is the server's record (its ``state["connect"]``): the record of
:func:`~.spark.connect.start_connect_server` (``pid``, ``port``, ``url``, ``log``,
``properties_file``, ``marker`` ...) plus ``token_file``, and ``spark_version`` (and
``warm_up_s``) once it answered. The token itself is only in the token file (0600) and the
server's properties file (0600), never in the record.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from .spark import connect as spark_connect


def start_server(run_dir: str | os.PathLike, token_file: str | os.PathLike, *,
                 master_url: str, token: str | None = None,
                 record: Callable[[dict], None] | None = None, **server) -> dict:
    """Start a Connect server for ``master_url`` with its logs and properties under
    ``run_dir``; ``server`` are the other keywords of
    :func:`~.spark.connect.start_connect_server` (``host``, ``driver_host``, ``conf``,
    ``secret``, ``nice``, ``user`` ...). Its token (``token`` or a fresh one) is written to
    ``token_file`` (0600) first. ``record`` is called with the record (``token_file``
    included) before the process exists. Returns the record at once (not yet ready: call
    :func:`wait_ready`); if the server cannot be started its token file is removed."""
    token = token or spark_connect.generate_token()
    token_file = spark_connect.write_token_file(token_file, token)
    try:
        rec = spark_connect.start_connect_server(
            run_dir, master_url=master_url, token=token,
            record=(lambda r: record({**r, "token_file": token_file})) if record else None,
            **server)
    except BaseException:
        Path(token_file).unlink(missing_ok=True)
        raise
    rec["token_file"] = token_file
    return rec


def wait_ready(rec: dict, timeout: float = 120.0) -> dict:
    """Wait until the server of ``rec`` answers an RPC with the token of its token file (and
    ran its warm-up job, :func:`~.spark.connect.wait_connect_ready`); returns a copy of
    ``rec`` with ``spark_version`` and ``warm_up_s`` (``rec`` itself is not changed: it may be
    read meanwhile). Raises :class:`~.spark.connect.ConnectError` if it does not answer;
    stopping it is the caller's."""
    rec = dict(rec)
    token = spark_connect.read_token_file(rec["token_file"])
    rec["spark_version"] = spark_connect.wait_connect_ready(rec, token, timeout)
    return rec


def stop_server(rec: dict) -> None:
    """Stop the server of ``rec`` (its process group) and remove its properties file and
    token file. Idempotent; a server that will not stop raises
    :class:`~.errors.ClusterError` and its files stay (a later stop tries again)."""
    spark_connect.stop_connect_server(rec)
    if rec.get("token_file"):
        Path(rec["token_file"]).unlink(missing_ok=True)
