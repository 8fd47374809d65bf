"""``doctor``: is this notebook server set up to run PySpark kernels on the user's cluster?

Each check is ``ok`` / ``warn`` / ``fail`` with a message and a fix. Used by
``jupyter-spark-openstack doctor`` and ``GET spark-openstack/api/doctor``. A Spark Connect
kernelspec's server is checked by :func:`.spark.connect.doctor_checks`.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
from collections.abc import Mapping
from dataclasses import asdict, dataclass

from .clusterinfo import MasterTarget, pyspark_kernelspecs, resolve_master
from .errors import ClusterError, ValidationError
from .kernelspec import ENV_CONNECT_URL, ENV_MASTER_URL, METADATA_KEY
from .models import parse_connect_url
from .spark import home
from .spark.master_client import fetch_master_state
from .spark.ports import port_open

OK, WARN, FAIL = "ok", "warn", "fail"

# Runs under any Python (2.7 too): reports which kernel modules the interpreter cannot import.
_IMPORT_PROBE = (
    "import json, sys\n"
    "r = {}\n"
    "for m in ('ipykernel', 'pyspark', 'py4j'):\n"
    "    try:\n"
    "        __import__(m)\n"
    "        r[m] = None\n"
    "    except Exception as e:\n"
    "        r[m] = '%s: %s' % (type(e).__name__, e)\n"
    "r['python'] = '%d.%d.%d' % sys.version_info[:3]\n"
    "sys.stdout.write(json.dumps(r))\n"
)


@dataclass
class Check:
    name: str
    status: str
    message: str
    fix: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def _java_check(name: str, env: Mapping[str, str], where: str) -> Check:
    jh = env.get("JAVA_HOME")
    if jh and not os.access(os.path.join(jh, "bin", "java"), os.X_OK):
        # Spark's launcher uses $JAVA_HOME/bin/java when JAVA_HOME is set: no fallback to PATH
        return Check(name, FAIL, f"JAVA_HOME={jh} for {where} has no bin/java",
                     "point JAVA_HOME at a Java 17 or 21 installation, or unset it")
    path = home.find_java(dict(env))
    if not path:
        jh = env.get("JAVA_HOME")
        return Check(name, FAIL, f"no java found for {where}"
                     + (f" (JAVA_HOME={jh} has no bin/java)" if jh else " (no JAVA_HOME, no java on PATH)"),
                     "install Java 17 or 21 (apt-get install openjdk-17-jre-headless) or set JAVA_HOME to a JDK")
    try:
        info = home._java_info(path)
    except (ClusterError, OSError, subprocess.SubprocessError) as e:
        return Check(name, FAIL, f"{path} does not run: {e}", "reinstall Java 17 or 21 and set JAVA_HOME")
    if info.major < home.MIN_JAVA:
        return Check(name, FAIL, f"Java {info.version} at {path} is too old for Spark 4 (needs {home.MIN_JAVA}+)",
                     f"install Java {home.MIN_JAVA} or 21 and point JAVA_HOME (and PATH) of {where} at it")
    return Check(name, OK, f"Java {info.version} at {path}")


def check_spark_home(env: Mapping[str, str]) -> Check:
    sh = env.get("SPARK_HOME")
    if sh and not home.is_spark_home(sh):
        return Check("spark_home", FAIL, f"SPARK_HOME={sh} is not a Spark (no bin/spark-class or jars/)",
                     "point SPARK_HOME at a Spark distribution, or unset it to use the pyspark wheel's Spark")
    try:
        sp = home.find_spark_home()
    except ClusterError as e:
        return Check("spark_home", FAIL, str(e), "pip install pyspark, or set SPARK_HOME to a Spark distribution")
    return Check("spark_home", OK, f"Spark {home.spark_version(sp) or '?'} at {sp}")


def check_hostname() -> Check:
    name = socket.gethostname()
    try:
        addrs = sorted({a[4][0] for a in socket.getaddrinfo(name, None)})
    except OSError as e:
        return Check("hostname", FAIL, f"this host's name {name!r} does not resolve: {e}",
                     f"add '127.0.1.1 {name}' (or its real address) to /etc/hosts, or set SPARK_LOCAL_IP")
    return Check("hostname", OK, f"{name} resolves to {', '.join(addrs)}")


def kernelspec_master(spec: Mapping) -> str | None:
    """The master a kernelspec's kernel connects to (metadata, else env)."""
    meta = (spec.get("metadata") or {}).get(METADATA_KEY) or {}
    if meta.get("master_url"):
        return str(meta["master_url"])
    env = spec.get("env") or {}
    for key in (ENV_MASTER_URL, "SPARK_MASTER", "MASTER"):
        if env.get(key):
            return str(env[key])
    args = shlex.split(env.get("PYSPARK_SUBMIT_ARGS", "")) if env.get("PYSPARK_SUBMIT_ARGS") else []
    for i, a in enumerate(args):
        if a == "--master" and i + 1 < len(args):
            return args[i + 1]
    return None


def _kernel_env(spec: Mapping, base: Mapping[str, str]) -> dict[str, str]:
    env = dict(base)
    for k, v in (spec.get("env") or {}).items():
        env[str(k)] = str(v).replace("${PATH}", base.get("PATH", "")).replace("$PATH", base.get("PATH", ""))
    return env


def check_kernel_imports(name: str, spec: Mapping, base_env: Mapping[str, str], timeout: float = 60.0) -> list[Check]:
    argv = spec.get("argv") or []
    python = argv[0] if argv else None
    if not python:
        return [Check(f"kernelspec:{name}:interpreter", FAIL, "kernel.json has no argv",
                      "reinstall the kernelspec: jupyter-spark-openstack kernel install --replace ...")]
    env = _kernel_env(spec, base_env)
    try:
        out = subprocess.run([python, "-c", _IMPORT_PROBE], capture_output=True, text=True,
                             timeout=timeout, env=env, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        return [Check(f"kernelspec:{name}:interpreter", FAIL, f"interpreter {python} does not exist",
                      "reinstall the kernelspec with an existing Python (kernel install --replace)")]
    except (OSError, subprocess.TimeoutExpired) as e:
        return [Check(f"kernelspec:{name}:interpreter", FAIL, f"interpreter {python} does not run: {e}",
                      "reinstall the kernelspec with a working Python")]
    try:
        res = json.loads(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return [Check(f"kernelspec:{name}:interpreter", FAIL,
                      f"{python} failed: {(out.stderr or out.stdout).strip()[-300:]}",
                      "reinstall the kernelspec with a working Python")]
    checks = []
    bad = res.get("ipykernel")
    checks.append(Check(f"kernelspec:{name}:ipykernel", FAIL if bad else OK,
                        f"{python} cannot import ipykernel ({bad})" if bad
                        else f"{python} (Python {res.get('python')}) imports ipykernel",
                        f"{python} -m pip install ipykernel jupyter-spark-openstack" if bad else ""))
    bad_mods = {m: res.get(m) for m in ("pyspark", "py4j") if res.get(m)}
    checks.append(Check(
        f"kernelspec:{name}:pyspark", FAIL if bad_mods else OK,
        ("; ".join(f"{python} cannot import {m} ({e})" for m, e in bad_mods.items())) if bad_mods
        else f"{python} imports pyspark and py4j",
        (f"{python} -m pip install pyspark (same version as the cluster), or put $SPARK_HOME/python "
         "and the py4j zip on the kernelspec's PYTHONPATH") if bad_mods else ""))
    return checks


def _hostport(master: str) -> tuple[str, int] | None:
    if not master.startswith("spark://"):
        return None
    first = master[len("spark://"):].split(",")[0]
    host, _, port = first.rpartition(":")
    return (host.strip("[]"), int(port)) if host and port.isdigit() else None


def check_master(name: str, master: str | None, webui: str | None, timeout: float) -> Check:
    hp = _hostport(master or "")
    if hp:
        host, port = hp
        try:
            socket.getaddrinfo(host, port)
        except OSError as e:
            return Check(name, FAIL, f"master host {host!r} of {master} does not resolve: {e}",
                         "use the master's IP address or a resolvable name in the master URL")
        if not port_open(host, port, timeout=timeout):
            return Check(name, FAIL, f"nothing answers at {master} (TCP {host}:{port} refused or timed out)",
                         "start the cluster (or check its status) and the master URL's port")
    if webui:
        st = fetch_master_state(webui, timeout)
        if not st.reachable:
            return Check(name, FAIL if not hp else WARN,
                         f"master UI {webui} does not answer: {st.error}",
                         "check the cluster is running and the master UI port is reachable")
        alive = len(st.alive_workers)
        return Check(name, OK if alive else WARN,
                     f"{master or st.url} is {st.status} with {alive} alive worker(s), {st.cores} cores",
                     "" if alive else "the master has no workers: start or add workers")
    return Check(name, OK, f"{master} accepts connections")


def check_connect_kernelspec(name: str, spec: Mapping, kernel_env: Mapping[str, str],
                             timeout: float) -> list[Check]:
    """A Spark Connect kernelspec (its kernel's environment has a Connect URL): the server
    answers and takes the kernel's token, and Python UDFs run with the kernel's versions
    (:func:`.spark.connect.doctor_checks`). Nothing for a classic kernelspec."""
    url = kernel_env.get(ENV_CONNECT_URL)
    if not url:
        return []
    name_ = f"kernelspec:{name}:connect"
    try:
        parse_connect_url(f"{ENV_CONNECT_URL} of kernelspec {name}", url)
    except ValidationError as e:
        return [Check(name_, FAIL, str(e), "reinstall the kernelspec: jupyter-spark-openstack kernel "
                                           f"install --replace --name {name} --connect sc://HOST:PORT")]
    argv = spec.get("argv") or []
    try:
        from .spark import connect  # noqa: PLC0415 - only Connect kernelspecs need it (and gRPC)

        found = connect.doctor_checks(name, kernel_env, kernel_python=argv[0] if argv else None,
                                      timeout=timeout)
    except ImportError as e:
        return [Check(name_, WARN, f"this Python cannot talk to Spark Connect ({e}): {url} not checked",
                      "pip install 'pyspark[connect]' into the notebook server's Python")]
    return [Check(c["name"], c["status"], c["message"], c.get("fix") or "") for c in found]


def run_doctor(*, target: MasterTarget | None = None, kernelspecs: Mapping[str, dict] | None = None,
               env: Mapping[str, str] | None = None, timeout: float = 3.0) -> dict:
    """All checks; ``{"ok": no check failed, "checks": [...]}``."""
    env = dict(os.environ if env is None else env)
    specs = pyspark_kernelspecs() if kernelspecs is None else dict(kernelspecs)
    checks: list[Check] = [_java_check("java", env, "the notebook server"), check_spark_home(env),
                           check_hostname()]
    master_check = None
    if target is None:
        try:
            target = resolve_master(env=env, kernelspecs=specs)
        except Exception as e:  # noqa: BLE001 - a bad setting is a failed check, not a crash
            master_check = Check("master", FAIL, str(e), "fix the named setting")
            target = MasterTarget(None, None)
    if master_check is None and target.configured:
        master_check = check_master("master", target.master_url, target.webui_url, timeout)
    elif master_check is None:
        master_check = Check("master", WARN, "no Spark master is configured for this server",
                             "start a cluster (jupyter-spark-openstack cluster start) and install a "
                             f"kernelspec for it, or set {ENV_MASTER_URL}")
    checks.append(master_check)
    if not specs:
        checks.append(Check("kernelspecs", WARN, "no PySpark kernelspec is installed",
                            "jupyter-spark-openstack kernel install --master spark://HOST:PORT"))
    user_master = env.get(ENV_MASTER_URL) or (target.master_url if target.source == "config" else None)
    seen_masters: set[str] = set()
    for name, spec in specs.items():
        kenv = _kernel_env(spec, env)
        if any(k in (spec.get("env") or {}) for k in ("JAVA_HOME", "PATH")):
            checks.append(_java_check(f"kernelspec:{name}:java", kenv, f"kernelspec {name}"))
        checks.extend(check_kernel_imports(name, spec, env))
        checks.extend(check_connect_kernelspec(name, spec, kenv, timeout))
        km = kernelspec_master(spec)
        if km and km.startswith("spark://") and km not in seen_masters and km != target.master_url:
            seen_masters.add(km)
            checks.append(check_master(f"kernelspec:{name}:master", km, None, timeout))
        if user_master:
            if not km:
                checks.append(Check(f"kernelspec:{name}:cluster", WARN, f"kernelspec {name} names no master",
                                    "reinstall it with --master " + user_master))
            elif km != user_master:
                checks.append(Check(f"kernelspec:{name}:cluster", FAIL,
                                    f"kernelspec {name} uses {km}, but your cluster is {user_master}",
                                    f"jupyter-spark-openstack kernel install --replace --name {name} --master {user_master}"))
            else:
                checks.append(Check(f"kernelspec:{name}:cluster", OK, f"kernelspec {name} uses your cluster {km}"))
    return {"ok": all(c.status != FAIL for c in checks), "checks": [c.to_dict() for c in checks]}
