"""The UI guard: a token on every request to the web UIs of a user's Spark daemons.

Spark's UIs (master, worker, driver) have no authentication of their own: on a hub host every
account can reach every loopback port, and a worker UI shows executor logs. Every UI of a
user's cluster on the hub host therefore runs :file:`UiTokenFilter.java` (``spark.ui.filters``,
Spark's servlet-filter hook): a request without the cluster's token in the
``X-Spark-UI-Token`` header gets 403. The token file is readable by its owner only; the hub
and her notebook server's proxy send the header, nobody else can.

The filter is compiled once per source version with the JDK's ``javac`` against the
``jakarta.servlet-api`` jar that Spark ships, into ``<cache>/uiguard-<hash>/`` (0755, read by
every user's daemons). Nothing is downloaded.
"""

from __future__ import annotations

import glob
import hashlib
import os
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

from ...errors import ClusterError

FILTER_CLASS = "org.jupyter_spark_openstack.UiTokenFilter"
HEADER = "X-Spark-UI-Token"
#: the token file of the user's cluster, in her notebook server's (and kernels') environment
ENV_TOKEN_FILE = "SPARK_OPENSTACK_UI_TOKEN_FILE"
SOURCE = Path(__file__).with_name("UiTokenFilter.java")


def generate_token() -> str:
    return secrets.token_urlsafe(32)


def headers(token: str | None = None) -> dict[str, str]:
    """The request headers a client of a guarded UI sends: ``token``, else the one in
    ``$SPARK_OPENSTACK_UI_TOKEN_FILE`` (none without either)."""
    token = token or read_token(os.environ.get(ENV_TOKEN_FILE))
    return {HEADER: token} if token else {}


def read_token(path: str | os.PathLike | None) -> str | None:
    """The token in ``path`` (None if there is no such file or no path)."""
    if not path:
        return None
    try:
        return Path(path).read_text().strip() or None
    except OSError:
        return None


def _javac() -> str | None:
    home = os.environ.get("JAVA_HOME")
    if home and os.access(os.path.join(home, "bin", "javac"), os.X_OK):
        return os.path.join(home, "bin", "javac")
    found = shutil.which("javac")
    if found:
        return found
    java = shutil.which("java")   # Debian: /usr/bin/java -> /usr/lib/jvm/<jdk>/bin/java
    if java:
        cand = os.path.join(os.path.dirname(os.path.realpath(java)), "javac")
        if os.access(cand, os.X_OK):
            return cand
    return None


def classes_dir(cache_root: str | os.PathLike, spark_home: str) -> Path:
    """The compiled filter (a class directory for the daemons' classpath), built on first use."""
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:16]
    root = Path(cache_root)
    done = root / f"uiguard-{digest}"
    if (done / ".complete").exists():
        return done
    javac = _javac()
    if javac is None:
        raise ClusterError(
            "the Spark UI guard (spark_ui_guard) is compiled once with the JDK's javac, which "
            "is not installed: apt-get install openjdk-17-jdk-headless (or set "
            "c.SparkClusterMixin.spark_ui_guard = False)")
    api = sorted(glob.glob(os.path.join(spark_home, "jars", "jakarta.servlet-api-*.jar")))
    if not api:
        raise ClusterError(f"no jakarta.servlet-api jar in {spark_home}/jars: cannot build "
                           "the Spark UI guard for this Spark")
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".uiguard-", dir=root))
    try:
        res = subprocess.run([javac, "--release", "17", "-nowarn", "-cp", api[-1],
                              "-d", str(tmp), str(SOURCE)], capture_output=True, text=True,
                             timeout=300)
        if res.returncode != 0:
            raise ClusterError(f"building the Spark UI guard failed: {res.stderr.strip()[-800:]}")
        for d, _dirs, files in os.walk(tmp):
            os.chmod(d, 0o755)
            for f in files:
                os.chmod(os.path.join(d, f), 0o644)
        (tmp / ".complete").write_text(digest + "\n")
        os.chmod(tmp / ".complete", 0o644)
        try:
            os.rename(tmp, done)
        except OSError:  # built meanwhile by another start
            if not (done / ".complete").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return done


def ui_conf(token_file: str) -> dict[str, str]:
    """Spark properties that put the guard in front of a daemon's or driver's UI."""
    return {"spark.ui.filters": FILTER_CLASS,
            f"spark.{FILTER_CLASS}.param.tokenFile": token_file}
