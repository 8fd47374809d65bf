"""Typed models: every value a person gives is parsed and validated once, here.

Adapters (CLI, spawner form, REST, traitlets config) build these models and act on them only;
a bad value raises :class:`~jupyter_spark_openstack.core.errors.ValidationError`, whose
message names the field, the value and what is allowed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .errors import ValidationError

_MEMORY_RE = re.compile(r"^([1-9][0-9]*)([kmgt])b?$", re.IGNORECASE)
_MEMORY_FACTORS_MB = {"k": 1 / 1024, "m": 1, "g": 1024, "t": 1024 * 1024}
MEMORY_ALLOWED = "a Spark memory size: a positive whole number with a unit k, m, g or t (e.g. 512m, 2g, 1t)"

_HOST_RE = re.compile(
    r"^(?:\[[0-9A-Fa-f:.]+\]"  # [ipv6]
    r"|[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*)$"
)
_LOCAL_MASTER_RE = re.compile(r"^local(?:\[(?:[1-9][0-9]*|\*)\])?$")
MASTER_ALLOWED = "spark://host:port[,host:port...] or local, local[N], local[*]"
CONNECT_ALLOWED = "sc://host:port (for example sc://localhost:15002)"
_CONF_KEY_RE = re.compile(r"^spark\.[A-Za-z0-9_.\-]+$")
_KERNEL_NAME_RE = re.compile(r"^[a-z0-9._\-]+$", re.IGNORECASE)


def parse_memory(field_name: str, value: object) -> str:
    """Return ``value`` as a normalised Spark memory string (``"2g"``) or raise."""
    text = str(value).strip() if value is not None else ""
    m = _MEMORY_RE.match(text)
    if not m:
        raise ValidationError(field_name, value, MEMORY_ALLOWED)
    return f"{int(m.group(1))}{m.group(2).lower()}"


def memory_mb(value: str) -> int:
    """Megabytes in a Spark memory string (already validated or not)."""
    m = _MEMORY_RE.match(str(value).strip())
    if not m:
        raise ValidationError("memory", value, MEMORY_ALLOWED)
    return max(1, int(int(m.group(1)) * _MEMORY_FACTORS_MB[m.group(2).lower()]))


def format_mb(mb: int) -> str:
    """``4096`` -> ``"4g"``, ``1536`` -> ``"1536m"``: the shortest exact Spark memory string."""
    if mb % (1024 * 1024) == 0:
        return f"{mb // (1024 * 1024)}t"
    if mb % 1024 == 0:
        return f"{mb // 1024}g"
    return f"{mb}m"


def parse_positive_int(field_name: str, value: object, *, maximum: int | None = None,
                       minimum: int = 1) -> int:
    """A whole number in ``[minimum, maximum]``; bools and fractions are refused."""
    allowed = f"a whole number from {minimum}" + (f" to {maximum}" if maximum is not None else " up")
    if isinstance(value, bool):
        raise ValidationError(field_name, value, allowed)
    if isinstance(value, int):
        n = value
    elif isinstance(value, str) and re.fullmatch(r"\s*-?[0-9]+\s*", value):
        n = int(value)
    elif isinstance(value, float) and value.is_integer():
        n = int(value)
    else:
        raise ValidationError(field_name, value, allowed)
    if n < minimum or (maximum is not None and n > maximum):
        raise ValidationError(field_name, value, allowed)
    return n


def _valid_hostport(hp: str) -> bool:
    host, sep, port = hp.rpartition(":")
    if not sep or not _HOST_RE.match(host) or not port.isdigit():
        return False
    return 0 < int(port) < 65536


def parse_master_url(field_name: str, value: object) -> str:
    """``spark://host:port[,host:port...]`` or ``local[N|*]``."""
    text = str(value).strip() if value is not None else ""
    if _LOCAL_MASTER_RE.match(text):
        return text
    if text.startswith("spark://"):
        parts = text[len("spark://"):].split(",")
        if parts and all(_valid_hostport(p) for p in parts):
            return text
    raise ValidationError(field_name, value, MASTER_ALLOWED)


def parse_connect_url(field_name: str, value: object) -> str:
    """``sc://host:port`` with no parameters: tokens never travel inside the URL we store."""
    text = str(value).strip() if value is not None else ""
    if text.startswith("sc://"):
        rest = text[len("sc://"):].rstrip("/")
        if _valid_hostport(rest):
            return "sc://" + rest
    raise ValidationError(field_name, value, CONNECT_ALLOWED + ", without ;parameters (the token comes from a file or the environment)")


def parse_conf(field_name: str, items: Iterable[str] | Mapping[str, object]) -> dict[str, str]:
    """``["spark.a=1", ...]`` or a mapping -> ``{"spark.a": "1"}``, keys checked."""
    out: dict[str, str] = {}
    pairs: Iterable[tuple[str, object]]
    if isinstance(items, Mapping):
        pairs = items.items()
    else:
        parsed = []
        for item in items:
            key, sep, val = str(item).partition("=")
            if not sep:
                raise ValidationError(field_name, item, "spark.key=value")
            parsed.append((key.strip(), val))
        pairs = parsed
    for key, val in pairs:
        if not _CONF_KEY_RE.match(str(key)):
            raise ValidationError(field_name, key, "a Spark property name starting with 'spark.' (letters, digits, . _ -)")
        sval = str(val)
        if "\n" in sval or "\r" in sval or "\x00" in sval:
            raise ValidationError(field_name, f"{key}={sval}", "a single-line value")
        out[str(key)] = sval
    return out


_WEBUI_RE = re.compile(r"^https?://([^/?#\s]+)(/[A-Za-z0-9._~+,=:@%/-]*)?$")


def parse_webui_url(field_name: str, value: object) -> str:
    """A Spark web UI address: ``http(s)://host:port[/path]`` (no query, no spaces)."""
    text = str(value).strip() if value is not None else ""
    m = _WEBUI_RE.match(text)
    if not m or not _valid_hostport(m.group(1)):
        raise ValidationError(field_name, value, "an http:// or https:// URL with host and port, e.g. http://127.0.0.1:8080")
    return text.rstrip("/")


def parse_readable_file(field_name: str, value: object) -> str:
    """An existing, readable regular file; returned as an absolute path."""
    import os  # noqa: PLC0415

    text = str(value) if value is not None else ""
    path = os.path.abspath(os.path.expanduser(text)) if text else ""
    if not path or not os.path.isfile(path) or not os.access(path, os.R_OK):
        raise ValidationError(field_name, value, "the path of an existing, readable file")
    return path


def parse_kernel_name(field_name: str, value: object) -> str:
    text = str(value) if value is not None else ""
    if not text or not _KERNEL_NAME_RE.match(text):
        raise ValidationError(field_name, value, "letters, digits, '.', '_' and '-' only (a kernelspec name)")
    return text.lower()


def _parse_tls_name(field_name: str, value: object) -> str:
    from .tls import parse_server_name  # noqa: PLC0415

    return parse_server_name(field_name, value)


@dataclass(frozen=True)
class KernelSettings:
    """What a PySpark kernelspec says: where Spark is and how much of it one kernel may use."""

    master: str
    name: str = "pyspark"
    display_name: str = "PySpark"
    executor_memory: str | None = None
    executor_cores: int | None = None
    cores_max: int | None = None
    driver_memory: str | None = None
    conf: dict[str, str] = field(default_factory=dict)
    connect_url: str | None = None
    secret_file: str | None = None
    connect_token_file: str | None = None
    cluster_name: str | None = None
    webui_url: str | None = None
    #: TLS to a head of her cluster: the cluster CA's file and the name its certificate carries
    connect_ca_file: str | None = None
    connect_tls_name: str | None = None
    #: the executors' Python when it is not the kernel's (workers on other machines)
    executor_python: str | None = None

    @classmethod
    def parse(cls, *, master: object = None, name: object = "pyspark",
              display_name: object = None, executor_memory: object = None,
              executor_cores: object = None, cores_max: object = None,
              driver_memory: object = None, conf: Iterable[str] | Mapping[str, object] = (),
              connect_url: object = None, secret_file: object = None,
              connect_token_file: object = None, cluster_name: object = None,
              webui_url: object = None, connect_ca_file: object = None,
              connect_tls_name: object = None, executor_python: object = None,
              field_names: Mapping[str, str] | None = None) -> KernelSettings:
        """Validate raw values; ``field_names`` maps model fields to the names a person typed
        (e.g. ``{"executor_memory": "--executor-memory"}``) so errors speak their language."""
        fn = dict(field_names or {})

        def f(key: str) -> str:
            return fn.get(key, key)

        if connect_url is not None:
            curl = parse_connect_url(f("connect_url"), connect_url)
            mast = parse_master_url(f("master"), master) if master is not None else None
        else:
            curl = None
            if master is None:
                raise ValidationError(f("master"), master, MASTER_ALLOWED)
            mast = parse_master_url(f("master"), master)
        kname = parse_kernel_name(f("name"), name)
        ec = parse_positive_int(f("executor_cores"), executor_cores) if executor_cores is not None else None
        cm = parse_positive_int(f("cores_max"), cores_max) if cores_max is not None else None
        if ec is not None and cm is not None and cm < ec:
            raise ValidationError(f("cores_max"), cores_max,
                                  f"a whole number at least {f('executor_cores')} ({ec})")
        dn = str(display_name) if display_name is not None else ("PySpark" if curl else "PySpark (classic, RDD API)")
        if not dn.strip() or "\n" in dn:
            raise ValidationError(f("display_name"), display_name, "a non-empty single-line name")
        return cls(
            master=mast or "",
            name=kname,
            display_name=dn,
            executor_memory=parse_memory(f("executor_memory"), executor_memory) if executor_memory is not None else None,
            executor_cores=ec,
            cores_max=cm,
            driver_memory=parse_memory(f("driver_memory"), driver_memory) if driver_memory is not None else None,
            conf=parse_conf(f("conf"), conf),
            connect_url=curl,
            secret_file=str(secret_file) if secret_file else None,
            connect_token_file=str(connect_token_file) if connect_token_file else None,
            cluster_name=str(cluster_name) if cluster_name else None,
            webui_url=parse_webui_url(f("webui_url"), webui_url) if webui_url is not None else None,
            connect_ca_file=str(connect_ca_file) if connect_ca_file else None,
            connect_tls_name=_parse_tls_name(f("connect_tls_name"), connect_tls_name)
            if connect_tls_name else None,
            executor_python=parse_abs_path(f("executor_python"), executor_python)
            if executor_python else None,
        )

    @property
    def is_connect(self) -> bool:
        return self.connect_url is not None

    def spark_conf(self) -> dict[str, str]:
        """All Spark properties this kernel sets (explicit options win over ``conf``)."""
        conf = dict(self.conf)
        if self.executor_memory:
            conf["spark.executor.memory"] = self.executor_memory
        if self.executor_cores:
            conf["spark.executor.cores"] = str(self.executor_cores)
        if self.cores_max:
            conf["spark.cores.max"] = str(self.cores_max)
        if self.driver_memory:
            conf["spark.driver.memory"] = self.driver_memory
        return conf


# ---- values of the OpenStack provisioner's config (admin-given) ----------------------------
_OS_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@+\- ]{0,254}$")
_SAFE_TOKEN_RE = re.compile(r"^[A-Za-z0-9_.:+/=@-]{1,512}$")
_URL_RE = re.compile(r"^https?://[A-Za-z0-9.\-\[\]:]+(?::[0-9]{1,5})?(?:/[A-Za-z0-9._~+,=:@%?/-]*)?$")
_SHA512_RE = re.compile(r"^[0-9a-f]{128}$")
_ABS_PATH_RE = re.compile(r"^/(?:[A-Za-z0-9._+-]+/?)*$")


def parse_os_name(field_name: str, value: object) -> str:
    """An OpenStack resource name or id (flavor, image, network, keypair, group, zone)."""
    text = str(value) if isinstance(value, str | int) and not isinstance(value, bool) else ""
    if not _OS_NAME_RE.fullmatch(text) or text != text.strip():
        raise ValidationError(field_name, value, "a name or id: letters, digits and _ . : @ + - "
                                                 "(spaces inside), at most 255 characters")
    return text


def parse_safe_token(field_name: str, value: object) -> str:
    """A single-line value safe in a systemd EnvironmentFile without quoting (secrets, ids)."""
    text = str(value) if isinstance(value, str) else ""
    if not _SAFE_TOKEN_RE.fullmatch(text):
        raise ValidationError(field_name, "<hidden>" if "secret" in field_name else value,
                              "1-512 characters from letters, digits and _ . : + / = @ -")
    return text


def parse_http_url(field_name: str, value: object) -> str:
    text = str(value).strip() if isinstance(value, str) else ""
    if not _URL_RE.fullmatch(text):
        raise ValidationError(field_name, value, "an http:// or https:// URL of letters, digits and . _ ~ + , = : @ % ? / - (no spaces, quotes, & or ;)")
    return text


def parse_sha512(field_name: str, value: object) -> str:
    text = str(value).strip().lower() if isinstance(value, str) else ""
    if not _SHA512_RE.fullmatch(text):
        raise ValidationError(field_name, value, "a sha512 digest: 128 hexadecimal characters")
    return text


def parse_abs_path(field_name: str, value: object) -> str:
    text = str(value) if isinstance(value, str) else ""
    if not _ABS_PATH_RE.fullmatch(text) or "/../" in text + "/" or "/./" in text + "/":
        raise ValidationError(field_name, value, "an absolute path of letters, digits and . _ + - "
                                                 "(no spaces, no '..')")
    return text.rstrip("/") or "/"


def parse_cidr(field_name: str, value: object) -> str:
    import ipaddress  # noqa: PLC0415

    try:
        return str(ipaddress.ip_network(str(value), strict=False))
    except ValueError:
        raise ValidationError(field_name, value, "an IP network in CIDR form, e.g. 10.0.0.0/24") from None


def parse_choice(field_name: str, value: object, choices: Iterable[str]) -> str:
    choices = list(choices)
    if not isinstance(value, str) or value not in choices:
        raise ValidationError(field_name, value, "one of: " + ", ".join(choices))
    return value


def parse_positive_float(field_name: str, value: object, *, maximum: float | None = None) -> float:
    allowed = "a number greater than 0" + (f" and at most {maximum}" if maximum is not None else "")
    if isinstance(value, bool):
        raise ValidationError(field_name, value, allowed)
    try:
        f = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValidationError(field_name, value, allowed) from None
    if not f > 0 or (maximum is not None and f > maximum) or f != f:
        raise ValidationError(field_name, value, allowed)
    return f
