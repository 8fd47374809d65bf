"""A Spark distribution tarball made from the ``pyspark`` wheel's Spark, and an HTTP server on
the tenant network that serves it: what ``download`` install mode fetches in the emulator's
machines (a real cloud would fetch it from an admin's mirror).

:func:`spark_tarball` packs the wheel's ``bin``, ``sbin`` and ``jars`` under one top directory
(``spark-<version>-bin-pyspark/``, the layout of Apache's ``spark-*-bin-*.tgz``, which the
install script unpacks with ``--strip-components=1``) into
``<cache>/spark-<version>-<hash>.tgz`` (default ``/var/cache/jupyter-spark-openstack/spark``)
with its sha512 beside it; the hash covers the names, sizes and times of the packed files, so
another pyspark makes another tarball and an unchanged one is reused. Written to a temporary
name and renamed when complete.

:class:`FileServer` serves that one file (``GET /<name>``; anything else is 404) from a thread,
bound to the given address only (the hub's address on the tenant network).
"""

from __future__ import annotations

import hashlib
import http.server
import os
import tarfile
import threading
from pathlib import Path

DEFAULT_CACHE = Path("/var/cache/jupyter-spark-openstack/spark")
PARTS = ("bin", "sbin", "jars")


def _wheel_spark_home() -> Path:
    import pyspark  # noqa: PLC0415

    return Path(pyspark.__file__).parent


def _fingerprint(home: Path) -> tuple[str, list[Path]]:
    h = hashlib.sha256()
    files = []
    for part in PARTS:
        for p in sorted((home / part).rglob("*")):
            if p.is_file() and "__pycache__" not in p.parts:
                st = p.stat()
                h.update(f"{p.relative_to(home)}\0{st.st_size}\0{int(st.st_mtime)}\n".encode())
                files.append(p)
    return h.hexdigest()[:16], files


def spark_tarball(cache_dir: str | os.PathLike | None = None,
                  spark_home: str | os.PathLike | None = None) -> tuple[Path, str]:
    """``(path, sha512)`` of the tarball of ``spark_home`` (default: the wheel's Spark),
    built once per content and cached."""
    import pyspark  # noqa: PLC0415

    home = Path(spark_home) if spark_home else _wheel_spark_home()
    cache = Path(cache_dir) if cache_dir else DEFAULT_CACHE
    digest, files = _fingerprint(home)
    if not files or not (home / "bin" / "spark-class").is_file():
        raise ValueError(f"spark_home: {home} has no bin/spark-class")
    top = f"spark-{pyspark.__version__}-bin-pyspark"
    out = cache / f"spark-{pyspark.__version__}-{digest}.tgz"
    sha_file = out.with_suffix(".tgz.sha512")
    if out.is_file() and sha_file.is_file():
        return out, sha_file.read_text().split()[0]
    cache.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with tarfile.open(tmp, "w:gz", compresslevel=1) as tar:
            for p in files:
                tar.add(p, arcname=f"{top}/{p.relative_to(home)}", recursive=False)
        sha = hashlib.sha512()
        with open(tmp, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                sha.update(chunk)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    sha_file.write_text(f"{sha.hexdigest()}  {out.name}\n")
    return out, sha.hexdigest()


class FileServer:
    """Serve ``path`` at ``http://<address>:<port>/<name>`` from a thread (a context manager)."""

    def __init__(self, path: str | os.PathLike, address: str, port: int = 0):
        self.path = Path(path)
        served = self.path

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                if self.path != "/" + served.name:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/gzip")
                self.send_header("Content-Length", str(served.stat().st_size))
                self.end_headers()
                with open(served, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        self.wfile.write(chunk)

            def log_message(self, *args):
                pass

        self.requests: list[str] = []
        self._srv = http.server.ThreadingHTTPServer((address, port), Handler)
        self._srv.daemon_threads = True
        self._thread = threading.Thread(target=self._srv.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="spark-tarball-server", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._srv.server_address[:2]
        return f"http://{host}:{port}/{self.path.name}"

    def __enter__(self) -> FileServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._srv.shutdown()
        self._srv.server_close()
        self._thread.join(10)
