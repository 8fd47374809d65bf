"""Finding Spark (SPARK_HOME, the pyspark wheel) and Java on this host."""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..errors import ClusterError

# Spark 4 runs on Java 17 and 21.
MIN_JAVA = 17


def is_spark_home(path: str | os.PathLike | None) -> bool:
    return bool(path) and (Path(path) / "bin" / "spark-class").is_file() and (Path(path) / "jars").is_dir()


def find_spark_home() -> str:
    """``$SPARK_HOME`` if it is a Spark, else the Spark inside the installed pyspark wheel."""
    env = os.environ.get("SPARK_HOME")
    if env and is_spark_home(env):
        return str(Path(env).resolve())
    try:
        import pyspark  # noqa: PLC0415

        home = Path(pyspark.__file__).parent
        if is_spark_home(home):
            return str(home)
    except ImportError:
        pass
    try:
        import findspark  # noqa: PLC0415

        home = findspark.find()
        if is_spark_home(home):
            return str(Path(home).resolve())
    except (ImportError, ValueError, IndexError):
        pass
    raise ClusterError(
        "No Spark found: set SPARK_HOME to a Spark distribution or `pip install pyspark`"
        + (f" (SPARK_HOME={env!r} has no bin/spark-class)" if env else "")
    )


def py4j_zip(spark_home: str) -> str | None:
    """The py4j zip of a Spark *distribution* (``python/lib/py4j-*.zip``), None for the wheel."""
    found = sorted(glob.glob(os.path.join(spark_home, "python", "lib", "py4j-*-src.zip")))
    return found[-1] if found else None


def spark_version(spark_home: str) -> str | None:
    jars = glob.glob(os.path.join(spark_home, "jars", "spark-core_*.jar"))
    for jar in jars:
        m = re.search(r"spark-core_[0-9.]+-([0-9][^/]*)\.jar$", jar)
        if m:
            return m.group(1)
    return None


@dataclass(frozen=True)
class JavaInfo:
    path: str
    version: str
    major: int


def find_java(env: dict | None = None) -> str | None:
    env = os.environ if env is None else env
    jh = env.get("JAVA_HOME")
    if jh and os.access(os.path.join(jh, "bin", "java"), os.X_OK):
        return os.path.join(jh, "bin", "java")
    return shutil.which("java", path=env.get("PATH"))


@lru_cache(maxsize=8)
def _java_info(path: str) -> JavaInfo:
    out = subprocess.run([path, "-version"], capture_output=True, text=True, timeout=30)
    text = out.stderr + out.stdout
    m = re.search(r'version "([^"]+)"', text)
    if not m:
        raise ClusterError(f"could not read the version of {path}: {text.strip()[:200]}")
    ver = m.group(1)
    parts = ver.split(".")
    major = int(parts[1]) if parts[0] == "1" and len(parts) > 1 else int(re.match(r"\d+", parts[0]).group(0))
    return JavaInfo(path=path, version=ver, major=major)


def java_info(env: dict | None = None) -> JavaInfo:
    """The Java Spark will use, or :class:`ClusterError` saying how to get one."""
    path = find_java(env)
    if not path:
        raise ClusterError("Java not found: install a JDK 17 or 21 (e.g. `apt-get install openjdk-17-jre-headless`) or set JAVA_HOME")
    return _java_info(path)


def check_java(env: dict | None = None) -> JavaInfo:
    info = java_info(env)
    if info.major < MIN_JAVA:
        raise ClusterError(f"Java {info.version} at {info.path} is too old for Spark 4: install Java {MIN_JAVA} or 21 and set JAVA_HOME")
    return info
