"""The cloud-config (user-data) that turns a fresh VM into a Spark worker.

Built as a Python data structure from validated values only and dumped with PyYAML; nothing
is pasted into a string template. What it does on the VM:

* sets the hostname and makes it resolvable: a small fixed script
  (``/usr/local/sbin/spark-openstack-hosts``) maps the hostname to the VM's primary address in
  ``/etc/hosts`` and writes ``SPARK_LOCAL_IP`` for the unit (the seed's /etc/hosts fix: without
  it the worker resolves its own name to 127.0.1.1 and the master cannot reach it back);
* writes the env file ``/etc/spark-openstack/worker.env`` (0600: master URL, cores, memory,
  ports, Spark secret) and the worker's properties file ``/etc/spark-openstack/worker.properties``:
  ``spark.authenticate``, the block manager port, ``spark.ui.killEnabled=false`` (the worker's
  web UI cannot kill anything), then every property of ``spark_conf`` (what the cluster
  lifecycle wants each worker to run with, e.g. ``spark.network.crypto.enabled=true``; they win
  over the ones before). Keys must be ``spark.*`` property names and values one line without
  control characters (:func:`parse_worker_spark_conf`); values are escaped as Java properties
  files need (:func:`properties_text`), so the file always means exactly those values;
* writes the systemd unit ``spark-openstack-worker.service`` running the Spark worker with those
  values, enabled so it comes back after a reboot;
* install modes: ``preinstalled`` (Java and Spark already in the image at configured paths:
  the fast path) or ``download`` (Java from the distro's packages, Spark from an admin-given
  URL checked against an admin-given sha512 *before* unpacking).

It never contains OpenStack credentials or a JupyterHub API token: user-data is readable by
anything on the VM through the metadata service. The Spark secret it does contain is the
per-user cluster secret, which the worker needs and which only gives access to that user's
cluster.

:func:`read_worker_boot` is the reverse direction, used by the emulator's cloud-init
emulation: it parses user-data and checks it has what a worker needs.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field

import yaml

from ..errors import ValidationError
from ..models import (
    parse_abs_path,
    parse_choice,
    parse_http_url,
    parse_master_url,
    parse_memory,
    parse_os_name,
    parse_positive_int,
    parse_safe_token,
    parse_sha512,
)
from ..spark import daemons, ports

CONF_DIR = "/etc/spark-openstack"
ENV_FILE = f"{CONF_DIR}/worker.env"
PROPERTIES_FILE = f"{CONF_DIR}/worker.properties"
INSTALL_ENV_FILE = f"{CONF_DIR}/install.env"
UNIT_NAME = "spark-openstack-worker.service"
UNIT_FILE = f"/etc/systemd/system/{UNIT_NAME}"
HOSTS_SCRIPT = "/usr/local/sbin/spark-openstack-hosts"
INSTALL_SCRIPT = "/usr/local/sbin/spark-openstack-install"
LOCAL_ENV_FILE = "/run/spark-openstack/local.env"
DOWNLOAD_SPARK_HOME = "/opt/spark"
WORK_DIR = "/var/lib/spark-openstack/work"
SERVICE_USER = "spark"
INSTALL_MODES = ("preinstalled", "download")
DEFAULT_JAVA_PACKAGE = "openjdk-17-jre-headless"

#: keys the env file must have (what the unit passes to the worker)
ENV_REQUIRED = ("SPARK_MASTER_URL", "SPARK_WORKER_CORES", "SPARK_WORKER_MEMORY", "SPARK_HOME",
                "SPARK_WORKER_PORT", "SPARK_WORKER_WEBUI_PORT")

# Fixed scripts: constant text, no value from any person is ever inserted in them.
HOSTS_SCRIPT_TEXT = """#!/bin/sh
# Make this VM's hostname resolve to its primary address (not 127.0.1.1), so the Spark
# master can reach the worker back by the name it registers with.
set -eu
ip="$(hostname -I | cut -d' ' -f1)"
[ -n "$ip" ] || { echo "spark-openstack-hosts: no IPv4 address yet" >&2; exit 1; }
name="$(hostname)"
sed -i "/[[:space:]]$name\\([[:space:]]\\|\\$\\)/d" /etc/hosts
echo "$ip $name" >> /etc/hosts
mkdir -p /run/spark-openstack
printf 'SPARK_LOCAL_IP=%s\\nSPARK_PUBLIC_DNS=%s\\n' "$ip" "$ip" > /run/spark-openstack/local.env
"""

_INSTALL_SCRIPT_TEXT = f"""#!/bin/sh
# Download Spark from the admin-given URL, check its sha512 BEFORE unpacking, install it in
# {DOWNLOAD_SPARK_HOME}, then start the worker unit. Values come from {INSTALL_ENV_FILE}.
# A failure says so on stderr (cloud-init puts it on the console) with the tag
# "spark-openstack-install: FAILED:", which the hub looks for to fail the spawn at once.
set -eu
. {INSTALL_ENV_FILE}
fail() {{ echo "spark-openstack-install: FAILED: $*; the Spark worker is not started" >&2; exit 1; }}
tmp=/var/tmp/spark-openstack-spark.tgz
curl -fsSL --retry 5 --retry-delay 3 -o "$tmp" "$SPARK_URL" || fail "cannot download $SPARK_URL"
echo "$SPARK_SHA512  $tmp" | sha512sum -c - || {{ rm -f "$tmp"; fail "$SPARK_URL does not have the configured sha512"; }}
mkdir -p {DOWNLOAD_SPARK_HOME}
tar -xzf "$tmp" -C {DOWNLOAD_SPARK_HOME} --strip-components=1 || fail "cannot unpack $SPARK_URL"
rm -f "$tmp"
systemctl daemon-reload
systemctl enable --now {UNIT_NAME}
"""

#: Console lines that mean a worker VM will never start its Spark worker (data: each rule is a
#: regular expression and what it means). The first matching line fails the spawn at once,
#: with the console lines around it, instead of waiting for the start timeout.
BOOT_FAILURES: tuple[tuple[str, str], ...] = (
    (r"spark-openstack-install: FAILED: .*", "installing Spark failed"),
    (r"Failed to (?:enable|start) unit: .*" + UNIT_NAME.replace(".", r"\.") + r".*",
     "the Spark worker unit could not be started"),
    (r"Unit file " + UNIT_NAME.replace(".", r"\.") + r" is masked\.?",
     "the Spark worker unit is masked on the image"),
    (r"Invalid cloud-config provided.*", "cloud-init refused the user-data"),
    (r"Failed loading yaml blob.*", "cloud-init could not read the user-data"),
)
_BOOT_FAILURE_RES = tuple((re.compile(rx), meaning) for rx, meaning in BOOT_FAILURES)


def boot_failure(console: str, context: int = 4) -> str | None:
    """If the console shows a :data:`BOOT_FAILURES` line: what it means, that line and up to
    ``context`` lines before it (one string); else None."""
    lines = console.splitlines()
    for i, line in enumerate(lines):
        for rx, meaning in _BOOT_FAILURE_RES:
            if rx.search(line):
                shown = [x.strip() for x in lines[max(0, i - context):i + 1] if x.strip()]
                return f"{meaning}; the console says: " + " | ".join(shown)
    return None


_ENV_VALUE_RE = re.compile(r"[A-Za-z0-9_.:+/=@%,?~-]*")

#: a Spark property name: ``spark.`` then parts of letters, digits, ``_`` and ``-`` joined by dots
_PROP_KEY_RE = re.compile(r"spark(?:\.[A-Za-z0-9_-]+)+")
_PROP_KEY_ALLOWED = ("a Spark property name: 'spark.' then parts of letters, digits, '_' and '-' "
                     "separated by single dots, at most 255 characters")
_PROP_VALUE_MAX = 4096
_PROP_VALUE_ALLOWED = (f"one line of text without control characters, at most {_PROP_VALUE_MAX} "
                       "characters")
#: values of keys like these are not repeated in error messages (Spark's redaction rule)
_SECRET_KEY_RE = re.compile(r"secret|password|token|access[.]key|credential", re.IGNORECASE)
#: what every worker VM runs with before ``spark_conf`` (which wins)
WORKER_DEFAULT_PROPERTIES = {"spark.ui.killEnabled": "false"}


class CloudConfigError(ValueError):
    """User-data a VM's cloud-init would refuse; the message reads like cloud-init's."""


@dataclass(frozen=True)
class InstallConfig:
    """How Spark gets onto a worker VM (validated)."""

    mode: str = "preinstalled"
    spark_home: str = "/opt/spark"
    java_home: str | None = None
    spark_url: str | None = None
    spark_sha512: str | None = None
    java_package: str = DEFAULT_JAVA_PACKAGE

    @classmethod
    def parse(cls, value: object, field: str = "install") -> InstallConfig:
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise ValidationError(field, value, "a mapping with 'mode': 'preinstalled' or 'download'")
        known = {"mode", "spark_home", "java_home", "spark_url", "spark_sha512", "java_package"}
        for k in value:
            if k not in known:
                raise ValidationError(f"{field}.{k}", value[k], "one of the keys " + ", ".join(sorted(known)))
        mode = parse_choice(f"{field}.mode", value.get("mode", "preinstalled"), INSTALL_MODES)
        if mode == "preinstalled":
            for k in ("spark_url", "spark_sha512"):
                if value.get(k) is not None:
                    raise ValidationError(f"{field}.{k}", value[k], "nothing in mode 'preinstalled' "
                                          "(set mode: download to download Spark)")
            jh = value.get("java_home")
            return cls(mode=mode,
                       spark_home=parse_abs_path(f"{field}.spark_home", value.get("spark_home", "/opt/spark")),
                       java_home=parse_abs_path(f"{field}.java_home", jh) if jh is not None else None)
        if value.get("spark_url") is None:
            raise ValidationError(f"{field}.spark_url", None, "an http(s) URL of a Spark .tgz (required in mode 'download')")
        if value.get("spark_sha512") is None:
            raise ValidationError(f"{field}.spark_sha512", None,
                                  "the sha512 of that .tgz, 128 hex characters (required in mode 'download')")
        if value.get("spark_home") not in (None, DOWNLOAD_SPARK_HOME):
            raise ValidationError(f"{field}.spark_home", value["spark_home"],
                                  f"{DOWNLOAD_SPARK_HOME} (where mode 'download' installs Spark) or nothing")
        jh = value.get("java_home")
        return cls(mode=mode, spark_home=DOWNLOAD_SPARK_HOME,
                   java_home=parse_abs_path(f"{field}.java_home", jh) if jh is not None else None,
                   spark_url=parse_http_url(f"{field}.spark_url", value["spark_url"]),
                   spark_sha512=parse_sha512(f"{field}.spark_sha512", value["spark_sha512"]),
                   java_package=parse_os_name(f"{field}.java_package",
                                              value.get("java_package", DEFAULT_JAVA_PACKAGE)))


@dataclass(frozen=True)
class WorkerBoot:
    """What a worker VM runs, as read back from user-data (see :func:`read_worker_boot`)."""

    hostname: str
    master_url: str
    cores: int
    memory: str
    spark_home: str
    java_home: str | None
    worker_port: int
    webui_port: int
    secret: str | None
    install_mode: str
    spark_url: str | None = None
    spark_sha512: str | None = None
    #: the worker's properties file, read back (unescaped)
    properties: dict[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        return (f"WorkerBoot(hostname={self.hostname!r}, master_url={self.master_url!r}, "
                f"cores={self.cores}, memory={self.memory!r}, install_mode={self.install_mode!r})")


def env_text(values: dict[str, str]) -> str:
    lines = []
    for k, v in values.items():
        if not k.isidentifier() or not _ENV_VALUE_RE.fullmatch(str(v)):
            raise ValidationError(k, "<hidden>" if "SECRET" in k else v,
                                  "letters, digits and _ . : + / = @ % , ? ~ - only")
        lines.append(f"{k}={v}")
    return "\n".join(lines) + "\n"


def _is_control(ch: str) -> bool:
    # Cc: C0/C1 controls and DEL (tab, newline, NEL...); Zl/Zp: U+2028/U+2029 line breaks
    return unicodedata.category(ch) in ("Cc", "Zl", "Zp")


def parse_worker_spark_conf(value: object, field: str = "spark_conf") -> dict[str, str]:
    """The Spark properties a worker must run with, checked: a mapping of ``spark.*`` property
    names to one-line values without control characters (booleans and numbers are turned into
    Spark's text). Raises :class:`ValidationError` naming ``field`` (a bad key) or
    ``field.<key>`` (a bad value)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValidationError(field, value, "a mapping of Spark property names to values")
    out: dict[str, str] = {}
    for key, val in value.items():
        if not isinstance(key, str) or len(key) > 255 or not _PROP_KEY_RE.fullmatch(key):
            raise ValidationError(field, key, _PROP_KEY_ALLOWED)
        if key == "spark.authenticate.secret":
            raise ValidationError(field, key, "another property: the secret goes in the worker's "
                                  "0600 env file, never in its world-readable properties file")
        if isinstance(val, bool):
            val = "true" if val else "false"
        elif isinstance(val, int | float):
            val = str(val)
        if not isinstance(val, str) or len(val) > _PROP_VALUE_MAX or any(_is_control(c) for c in val):
            shown = "<hidden>" if _SECRET_KEY_RE.search(key) and isinstance(val, str) else val
            raise ValidationError(f"{field}.{key}", shown, _PROP_VALUE_ALLOWED)
        out[key] = val
    return out


def escape_property_value(value: str) -> str:
    r"""A value as a Java properties file needs it: ``\\`` for a backslash, ``\ `` for a
    leading space (which the loader would drop), ``\uXXXX`` (UTF-16) for every character
    outside printable ASCII, so no control character is ever written raw. ``=``, ``:``, ``#``
    and ``!`` mean themselves after the separator and are kept as they are."""
    out = []
    for i, ch in enumerate(value):
        o = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif ch == " " and i == 0:
            out.append("\\ ")
        elif 0x20 <= o < 0x7F:
            out.append(ch)
        else:
            units = ch.encode("utf-16-be", "surrogatepass")
            out.extend(f"\\u{int.from_bytes(units[j:j + 2], 'big'):04x}"
                       for j in range(0, len(units), 2))
    return "".join(out)


def properties_text(props: Mapping[str, str]) -> str:
    """``key=value`` lines of a Java properties file, keys and values checked
    (:func:`parse_worker_spark_conf`) and values escaped."""
    checked = parse_worker_spark_conf(props, "properties")
    return "".join(f"{k}={escape_property_value(v)}\n" for k, v in checked.items())


def parse_properties(text: str) -> dict[str, str]:
    """The reverse of :func:`properties_text` (the subset of the Java format it writes):
    ``key=value`` lines, ``#``/``!`` comments, backslash escapes. Raises CloudConfigError."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        stripped = line.lstrip(" \t\f")
        if not stripped or stripped[0] in "#!":
            continue
        key, sep, raw = stripped.partition("=")
        key = key.rstrip(" \t\f")
        if not sep or not _PROP_KEY_RE.fullmatch(key):
            raise CloudConfigError(f"malformed line in properties file: {line[:60]!r}")
        raw = raw.lstrip(" \t\f")
        units: list[str] = []
        i = 0
        while i < len(raw):
            ch = raw[i]
            if ch != "\\":
                units.append(ch)
                i += 1
                continue
            if i + 1 >= len(raw):
                raise CloudConfigError(f"properties file: {key}: line continuations are not used here")
            nxt = raw[i + 1]
            if nxt == "u":
                digits = raw[i + 2:i + 6]
                if not re.fullmatch(r"[0-9A-Fa-f]{4}", digits):
                    raise CloudConfigError(f"properties file: {key}: malformed \\uxxxx escape")
                units.append(chr(int(digits, 16)))
                i += 6
                continue
            units.append({"t": "\t", "n": "\n", "r": "\r", "f": "\f"}.get(nxt, nxt))
            i += 2
        value = "".join(units)
        out[key] = value.encode("utf-16", "surrogatepass").decode("utf-16")
    return out


def parse_env_file(text: str) -> dict[str, str]:
    """``KEY=VALUE`` lines (systemd EnvironmentFile / sh, no quoting) -> dict."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        k, sep, v = line.partition("=")
        if not sep or not k.isidentifier():
            raise CloudConfigError(f"malformed line in env file: {line[:60]!r}")
        out[k] = v
    return out


def unit_text(sections: list[tuple[str, list[tuple[str, str]]]]) -> str:
    """A systemd unit from (section, [(key, value)]) data, one entry per line; a value with a
    line break is refused."""
    out = []
    for name, entries in sections:
        out.append(f"[{name}]")
        for k, v in entries:
            if "\n" in v or "\r" in v:
                raise ValidationError(f"unit.{k}", v, "a single line")
            out.append(f"{k}={v}")
        out.append("")
    return "\n".join(out)


def service_unit(description: str, exec_start: list[str], *, env_files: tuple[str, ...],
                 after: str = "network-online.target", user: str | None = SERVICE_USER,
                 pre: str | None = f"+{HOSTS_SCRIPT}", working_dir: str | None = None,
                 environment: Mapping[str, str] | None = None) -> str:
    """A long-running service of ours (a worker's, or a head's master, Connect server or TLS
    terminator): its env files and then the machine's own (``LOCAL_ENV_FILE``: its address),
    ``environment`` (fixed values of ours, quoted: they may hold spaces), the hosts script
    before it starts (``pre``), restarted on failure, wanted by ``multi-user.target``."""
    service: list[tuple[str, str]] = [("Type", "simple")]
    if user:
        service.append(("User", user))
    service += [("EnvironmentFile", f) for f in env_files]
    service += [("EnvironmentFile", f"-{LOCAL_ENV_FILE}"), ("Environment", "SPARK_NO_DAEMONIZE=1")]
    for k, v in (environment or {}).items():
        if not k.isidentifier() or any(c in v for c in '"\\$%'):
            raise ValidationError(f"unit.Environment.{k}", v, "a value without quotes, '\\', '$' or '%'")
        service.append(("Environment", f'"{k}={v}"'))
    if pre:
        service.append(("ExecStartPre", pre))
    service.append(("StateDirectory", "spark-openstack"))
    if working_dir:
        service.append(("WorkingDirectory", working_dir))
    service += [("ExecStart", " ".join(exec_start)), ("Restart", "on-failure"), ("RestartSec", "5")]
    return unit_text([
        ("Unit", [("Description", f"{description} (jupyter-spark-openstack)"),
                  ("Wants", "network-online.target"), ("After", after)]),
        ("Service", service),
        ("Install", [("WantedBy", "multi-user.target")]),
    ])


def _unit_text(install: InstallConfig) -> str:
    """The worker's systemd unit."""
    spark_class = parse_abs_path("install.spark_home", install.spark_home) + "/bin/spark-class"
    return service_unit("Spark worker", [
        spark_class, "org.apache.spark.deploy.worker.Worker",
        "--host", "${SPARK_LOCAL_IP}",
        "--port", "${SPARK_WORKER_PORT}",
        "--webui-port", "${SPARK_WORKER_WEBUI_PORT}",
        "--cores", "${SPARK_WORKER_CORES}",
        "--memory", "${SPARK_WORKER_MEMORY}",
        "--work-dir", WORK_DIR,
        "--properties-file", PROPERTIES_FILE,
        "${SPARK_MASTER_URL}"], env_files=(ENV_FILE,), environment=daemons.DAEMON_ENV)


def build_cloud_config(*, hostname: str, master_url: str, cores: int, memory: str,
                       secret: str | None, install: InstallConfig,
                       worker_port: int = ports.WORKER_PORT,
                       webui_port: int = ports.WORKER_WEBUI_PORT,
                       block_manager_port: int = ports.BLOCK_MANAGER_PORT,
                       spark_conf: Mapping[str, str] | None = None) -> dict:
    """The cloud-config as data. Every value is validated here (again) before use.
    ``spark_conf``: Spark properties the worker runs with (on top of ours; they win)."""
    hostname = parse_os_name("hostname", hostname)
    if not all(c.isalnum() or c == "-" for c in hostname) or len(hostname) > 63:
        raise ValidationError("hostname", hostname, "letters, digits and '-' only, at most 63 characters")
    env = {
        "SPARK_MASTER_URL": parse_master_url("master_url", master_url),
        "SPARK_WORKER_CORES": str(parse_positive_int("cores", cores, maximum=1024)),
        "SPARK_WORKER_MEMORY": parse_memory("memory", memory),
        "SPARK_WORKER_PORT": str(parse_positive_int("worker_port", worker_port, maximum=65535)),
        "SPARK_WORKER_WEBUI_PORT": str(parse_positive_int("webui_port", webui_port, maximum=65535)),
        "SPARK_HOME": install.spark_home,
        "SPARK_WORKER_DIR": WORK_DIR,
    }
    if install.java_home:
        env["JAVA_HOME"] = install.java_home
    if secret:
        # read by Spark's SecurityManager (ENV_AUTH_SECRET) with spark.authenticate=true
        env["_SPARK_AUTH_SECRET"] = parse_safe_token("secret", secret)
    props = {"spark.authenticate": "true" if secret else "false",
             "spark.blockManager.port": str(parse_positive_int("block_manager_port",
                                                               block_manager_port, maximum=65535)),
             **WORKER_DEFAULT_PROPERTIES,
             **parse_worker_spark_conf(spark_conf)}
    files = [
        {"path": HOSTS_SCRIPT, "permissions": "0755", "owner": "root:root",
         "content": HOSTS_SCRIPT_TEXT},
        {"path": ENV_FILE, "permissions": "0600", "owner": "root:root", "content": env_text(env)},
        {"path": PROPERTIES_FILE, "permissions": "0644", "owner": "root:root",
         "content": properties_text(props)},
        {"path": UNIT_FILE, "permissions": "0644", "owner": "root:root",
         "content": _unit_text(install)},
    ]
    doc: dict = {
        "hostname": hostname,
        "fqdn": hostname,
        "manage_etc_hosts": False,   # our hosts script maps the name to the real address
        "users": ["default", {"name": SERVICE_USER, "system": True,
                              "shell": "/usr/sbin/nologin", "lock_passwd": True}],
        "write_files": files,
    }
    if install.mode == "download":
        doc["package_update"] = True
        doc["packages"] = [install.java_package, "curl"]
        files.append({"path": INSTALL_ENV_FILE, "permissions": "0600", "owner": "root:root",
                      "content": env_text({"SPARK_URL": install.spark_url or "",
                                            "SPARK_SHA512": install.spark_sha512 or ""})})
        files.append({"path": INSTALL_SCRIPT, "permissions": "0755", "owner": "root:root",
                      "content": _INSTALL_SCRIPT_TEXT})
        doc["runcmd"] = [[HOSTS_SCRIPT], [INSTALL_SCRIPT]]
    else:
        doc["runcmd"] = [[HOSTS_SCRIPT], ["systemctl", "daemon-reload"],
                         ["systemctl", "enable", "--now", UNIT_NAME]]
    return doc


class Dumper(yaml.SafeDumper):
    """Multi-line strings as literal blocks (``|``), so the files read as they will be written."""


def _str_representer(dumper, data):
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


Dumper.add_representer(str, _str_representer)


def render_user_data(**kwargs) -> str:
    """``#cloud-config`` + the YAML of :func:`build_cloud_config` (same keyword arguments)."""
    doc = build_cloud_config(**kwargs)
    return "#cloud-config\n" + yaml.dump(doc, Dumper=Dumper, sort_keys=False,
                                          default_flow_style=False, width=1000)


# ---- the reverse: what a VM's cloud-init would make of it ----------------------------------
def read_worker_boot(user_data: str | bytes) -> WorkerBoot:
    """Parse user-data the way cloud-init + our unit would; raise :class:`CloudConfigError`
    with a cloud-init-like message when it would not give a running worker."""
    if isinstance(user_data, bytes):
        try:
            user_data = user_data.decode("utf-8")
        except UnicodeDecodeError:
            raise CloudConfigError("Unhandled non-multipart (text/x-not-multipart) userdata: "
                                   "not UTF-8 text") from None
    if not user_data.startswith("#cloud-config"):
        first = user_data.splitlines()[0][:40] if user_data else ""
        raise CloudConfigError(f"Unhandled non-multipart (text/x-not-multipart) userdata: {first!r}")
    try:
        doc = yaml.safe_load(user_data)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise CloudConfigError(f"Failed loading yaml blob. Invalid format{where}: "
                               f"{getattr(e, 'problem', e)}") from None
    if not isinstance(doc, dict):
        raise CloudConfigError("Invalid cloud-config provided: top level is not a mapping")
    files = doc.get("write_files")
    if not isinstance(files, list) or not all(isinstance(f, dict) for f in files):
        raise CloudConfigError("Invalid cloud-config provided: write_files: is not a list of mappings")
    by_path = {f.get("path"): f for f in files}
    for needed in (ENV_FILE, UNIT_FILE, PROPERTIES_FILE):
        if needed not in by_path or not isinstance(by_path[needed].get("content"), str):
            raise CloudConfigError(f"Spark worker not configured: no {needed} in write_files")
    runcmd = doc.get("runcmd") or []
    starts_unit = any(isinstance(c, list) and c[:3] == ["systemctl", "enable", "--now"]
                      and UNIT_NAME in c for c in runcmd)
    downloads = any(isinstance(c, list) and c == [INSTALL_SCRIPT] for c in runcmd)
    if not (starts_unit or downloads):
        raise CloudConfigError(f"Spark worker not started: runcmd does not enable {UNIT_NAME}")
    env = parse_env_file(by_path[ENV_FILE]["content"])
    missing = [k for k in ENV_REQUIRED if k not in env]
    if missing:
        raise CloudConfigError(f"{ENV_FILE}: missing {', '.join(missing)}")
    try:
        hostname = parse_os_name("hostname", doc.get("hostname"))
        boot = WorkerBoot(
            hostname=hostname,
            master_url=parse_master_url("SPARK_MASTER_URL", env["SPARK_MASTER_URL"]),
            cores=parse_positive_int("SPARK_WORKER_CORES", env["SPARK_WORKER_CORES"], maximum=1024),
            memory=parse_memory("SPARK_WORKER_MEMORY", env["SPARK_WORKER_MEMORY"]),
            spark_home=parse_abs_path("SPARK_HOME", env["SPARK_HOME"]),
            java_home=parse_abs_path("JAVA_HOME", env["JAVA_HOME"]) if "JAVA_HOME" in env else None,
            worker_port=parse_positive_int("SPARK_WORKER_PORT", env["SPARK_WORKER_PORT"], maximum=65535),
            webui_port=parse_positive_int("SPARK_WORKER_WEBUI_PORT", env["SPARK_WORKER_WEBUI_PORT"],
                                          maximum=65535),
            secret=env.get("_SPARK_AUTH_SECRET") or None,
            install_mode="download" if downloads else "preinstalled",
            properties=parse_properties(by_path[PROPERTIES_FILE]["content"]),
        )
        if downloads:
            inst = parse_env_file((by_path.get(INSTALL_ENV_FILE) or {}).get("content") or "")
            boot = WorkerBoot(**{**boot.__dict__,
                                 "spark_url": parse_http_url("SPARK_URL", inst.get("SPARK_URL")),
                                 "spark_sha512": parse_sha512("SPARK_SHA512", inst.get("SPARK_SHA512"))})
    except ValidationError as e:
        raise CloudConfigError(f"{ENV_FILE}: {e}") from None
    return boot
