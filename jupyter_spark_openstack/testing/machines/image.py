"""The machine image: a Debian bookworm root filesystem the emulator's servers boot.

Built with ``debootstrap --variant=minbase`` from **this machine's configured Debian mirror**
(read from its apt sources, :func:`configured_mirror`; no host name is written anywhere in
this project), with what a worker VM needs in both install modes of
:mod:`jupyter_spark_openstack.core.provisioners.cloudconfig`:

* ``systemd``, ``systemd-sysv``, ``dbus``: the machine boots with systemd as PID 1;
* ``cloud-init`` (and ``python3-cffi-backend``, which ``--include`` cannot find through the
  virtual ``python3-cffi-backend-api-*`` cloud-init needs), configured for the NoCloud seed
  (``/etc/cloud/cloud.cfg.d/90_dpkg.cfg``: ``datasource_list: [ NoCloud, None ]``) and with its
  ``locale`` module disabled (no locale is generated in a minbase system; ``C.UTF-8`` is
  built into glibc);
* ``openjdk-17-jre-headless`` (``preinstalled`` mode's Java, and ``download`` mode's default
  ``java_package``, so its ``packages:`` are already there), ``curl`` and ``ca-certificates``
  (``download`` mode fetches Spark with curl), ``iproute2`` (the hosts script), ``sudo`` (the
  default user's rules, as on a cloud image), ``haproxy`` (TLS in front of the workers, later).

Spark is **not** in the image: the container boot backend bind-mounts the Spark of the
``pyspark`` wheel read-only at the configured ``spark_home`` (``image.json`` says so).

The result is cached in ``<cache>/<recipe hash>/`` (default
``/var/cache/jupyter-spark-openstack/images``): ``rootfs/`` and ``image.json`` (recipe, hash,
build time, size, every installed package and its version). The recipe (suite, variant,
architecture, packages, the files written into the image and :data:`RECIPE_VERSION`) is
hashed; a new recipe is a new directory, an unchanged one is reused. A build runs in a
``.build-<hash>-<random>`` directory next to it, renamed into place only when complete
(``image.json`` written), under a per-recipe lock file; a killed build leaves at most that
directory, which the next build removes. debootstrap and every command run in the image run
in a private mount namespace and PID namespace tied to this process (``unshare
--kill-child`` and a parent-death signal): no mount outlives them.

CLI::

    python -m jupyter_spark_openstack.testing.machines.image build [--cache DIR] [--mirror URI] [--json]
    python -m jupyter_spark_openstack.testing.machines.image path [--cache DIR]
    python -m jupyter_spark_openstack.testing.machines.image recipe
    python -m jupyter_spark_openstack.testing.machines.image prune [--cache DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

SUITE = "bookworm"
VARIANT = "minbase"
DEFAULT_CACHE_DIR = Path("/var/cache/jupyter-spark-openstack/images")
ETC_APT = Path("/etc/apt")
#: bump when the build steps change in a way the recipe below does not show
RECIPE_VERSION = 1

#: what the image contains beyond minbase (see the module docstring for why each is there)
PACKAGES: tuple[str, ...] = (
    "systemd", "systemd-sysv", "dbus",
    "cloud-init", "python3-cffi-backend",
    "iproute2", "netbase", "procps", "sudo",
    "openjdk-17-jre-headless",
    "curl", "ca-certificates",
    "haproxy",
)

#: files the build writes into the image (path in the image -> content); part of the recipe
IMAGE_FILES: dict[str, str] = {
    "etc/cloud/cloud.cfg.d/90_dpkg.cfg": (
        "# jupyter-spark-openstack machine image: the emulator hands its servers a NoCloud seed\n"
        "datasource_list: [ NoCloud, None ]\n"),
    # each machine gets its name from cloud-init (the server's name in the NoCloud meta-data)
    "etc/hostname": "localhost\n",
    # empty: a new machine id on every boot (systemd-nspawn passes the container's UUID)
    "etc/machine-id": "",
    # the boot backend gives each machine its resolver; never the build host's
    "etc/resolv.conf": "",
}
#: cloud-init modules removed from ``/etc/cloud/cloud.cfg`` (part of the recipe)
DISABLED_CLOUD_INIT_MODULES: tuple[str, ...] = ("locale",)
#: removed from the image after the build (part of the recipe)
REMOVED_PATHS: tuple[str, ...] = ("var/lib/dbus/machine-id",)
#: directories emptied after the build (the JVM of ca-certificates-java leaves hsperfdata)
EMPTIED_DIRS: tuple[str, ...] = ("tmp", "var/tmp")
#: packages whose versions ``image.json`` lists first
KEY_PACKAGES = ("systemd", "cloud-init", "openjdk-17-jre-headless", "python3", "curl", "haproxy")

_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_PACKAGE_RE = re.compile(r"[a-z0-9][a-z0-9+.-]+")
_SUITE_RE = re.compile(r"[a-z0-9][a-z0-9.-]*")


class ImageError(RuntimeError):
    """The image cannot be built or used; the message says why (with the command's output)."""


class MirrorNotFound(ImageError):
    """No apt source of this machine can serve the suite to debootstrap."""


# ---- the mirror: from this machine's apt sources -------------------------------------------

@dataclass(frozen=True)
class AptSource:
    """One ``deb`` source of the machine's apt configuration."""

    types: tuple[str, ...]
    uris: tuple[str, ...]
    suites: tuple[str, ...]
    components: tuple[str, ...]
    signed_by: str | None
    origin: str   # file it came from (and stanza or line number)
    enabled: bool = True


@dataclass(frozen=True)
class Mirror:
    """Where debootstrap fetches the suite: a URI and the keyring its source names."""

    uri: str
    suite: str
    keyring: str | None
    origin: str


def _deb822_stanzas(text: str) -> Iterable[tuple[int, dict[str, str]]]:
    """deb822 paragraphs (``Field: value``, continuation lines start with white space,
    ``#`` lines are comments) as (first line number, {lower-case field: value})."""
    fields: dict[str, str] = {}
    start = 0
    last: str | None = None
    for n, line in enumerate(text.splitlines(), 1):
        if line.startswith("#"):
            continue
        if not line.strip():
            if fields:
                yield start, fields
            fields, last = {}, None
            continue
        if line[0] in " \t":
            if last is not None:
                fields[last] += "\n" + line.strip()
            continue
        name, sep, value = line.partition(":")
        if not sep:
            continue
        if not fields:
            start = n
        last = name.strip().lower()
        fields[last] = value.strip()
    if fields:
        yield start, fields


def parse_sources_file(path: Path) -> list[AptSource]:
    """The sources of one deb822 ``.sources`` file."""
    out = []
    for start, f in _deb822_stanzas(path.read_text(errors="replace")):
        signed = f.get("signed-by", "").strip()
        out.append(AptSource(
            types=tuple(f.get("types", "").split()),
            uris=tuple(f.get("uris", "").split()),
            suites=tuple(f.get("suites", "").split()),
            components=tuple(f.get("components", "").split()),
            signed_by=signed if signed and "\n" not in signed and " " not in signed else None,
            origin=f"{path}:{start}",
            enabled=f.get("enabled", "yes").strip().lower() not in ("no", "false", "0")))
    return out


def parse_list_file(path: Path) -> list[AptSource]:
    """The sources of one one-line-style file: ``deb [opt=value ...] URI SUITE [COMPONENT...]``."""
    out = []
    for n, raw in enumerate(path.read_text(errors="replace").splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        kind, _, rest = line.partition(" ")
        if kind not in ("deb", "deb-src"):
            continue
        rest = rest.strip()
        options: dict[str, str] = {}
        if rest.startswith("["):
            opts, close, rest = rest[1:].partition("]")
            if not close:
                continue
            for opt in opts.split():
                k, _, v = opt.partition("=")
                options[k.lower()] = v
        words = rest.split()
        if len(words) < 2:
            continue
        out.append(AptSource(types=(kind,), uris=(words[0],), suites=(words[1],),
                             components=tuple(words[2:]), signed_by=options.get("signed-by"),
                             origin=f"{path}:{n}"))
    return out


def apt_sources(etc_apt: Path = ETC_APT) -> list[AptSource]:
    """Every source apt reads, in apt's order: ``sources.list``, then ``sources.list.d/*.list``
    and ``*.sources`` by name (files with other names are ignored, as apt does)."""
    out: list[AptSource] = []
    main = etc_apt / "sources.list"
    if main.is_file():
        out += parse_list_file(main)
    d = etc_apt / "sources.list.d"
    if d.is_dir():
        for p in sorted(d.iterdir()):
            if not p.is_file():
                continue
            if p.name.endswith(".list"):
                out += parse_list_file(p)
            elif p.name.endswith(".sources"):
                out += parse_sources_file(p)
    return out


def configured_mirror(suite: str = SUITE, etc_apt: Path = ETC_APT) -> Mirror:
    """The first enabled ``deb`` source of this machine that serves ``suite`` itself (not
    ``suite-updates`` or ``suite-security``) with the ``main`` component over http(s) or
    file: what debootstrap can bootstrap from. Its ``Signed-By`` keyring is used when it is
    a file. Raises :class:`MirrorNotFound` listing what the sources offer."""
    seen = []
    for src in apt_sources(etc_apt):
        if not src.enabled or "deb" not in src.types:
            continue
        seen.append(f"{src.origin}: suites {' '.join(src.suites) or '-'}")
        if suite not in src.suites or "main" not in src.components:
            continue
        for uri in src.uris:
            if uri.split(":", 1)[0] in ("http", "https", "file"):
                keyring = src.signed_by if src.signed_by and os.path.isfile(src.signed_by) else None
                return Mirror(uri=uri.rstrip("/"), suite=suite, keyring=keyring, origin=src.origin)
    raise MirrorNotFound(
        f"no apt source of this machine serves suite {suite!r} with component 'main' over "
        f"http(s) or file (read {etc_apt}/sources.list, {etc_apt}/sources.list.d/*.list and "
        f"*.sources); found: {'; '.join(seen) or 'nothing'}. Pass a mirror explicitly "
        "(--mirror URI) to build from another one")


# ---- the recipe -------------------------------------------------------------------------------

def host_arch() -> str:
    try:
        return subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as e:
        raise ImageError(f"dpkg --print-architecture failed: {e}") from None


def recipe(*, suite: str = SUITE, packages: Sequence[str] = PACKAGES,
           arch: str | None = None) -> dict:
    """What the image is made of, as data (the mirror is where it comes from, not part of it)."""
    if not _SUITE_RE.fullmatch(suite):
        raise ValueError(f"suite: {suite!r} is not a Debian suite name")
    bad = [p for p in packages if not isinstance(p, str) or not _PACKAGE_RE.fullmatch(p)]
    if bad:
        raise ValueError(f"packages: {bad!r} are not Debian package names")
    return {"recipe_version": RECIPE_VERSION, "suite": suite, "variant": VARIANT,
            "arch": arch or host_arch(), "packages": sorted(set(packages)),
            "files": dict(sorted(IMAGE_FILES.items())),
            "disabled_cloud_init_modules": list(DISABLED_CLOUD_INIT_MODULES),
            "removed_paths": list(REMOVED_PATHS), "emptied_dirs": list(EMPTIED_DIRS)}


def recipe_hash(rec: Mapping) -> str:
    return hashlib.sha256(json.dumps(rec, sort_keys=True, separators=(",", ":")).encode()
                          ).hexdigest()[:16]


# ---- the cached image -------------------------------------------------------------------------

@dataclass(frozen=True)
class Image:
    """A complete image in the cache."""

    path: Path                      # <cache>/<hash>
    metadata: dict = field(repr=False)
    reused: bool = False            # found in the cache (not built by this call)
    seconds: float = 0.0            # what this call took

    @property
    def rootfs(self) -> Path:
        return self.path / "rootfs"

    @property
    def recipe_hash(self) -> str:
        return self.metadata["recipe_hash"]

    @property
    def java_home(self) -> str:
        return self.metadata["java_home"]


def find_image(rec_hash: str, cache_dir: str | os.PathLike | None = None) -> Image | None:
    """The complete image of that recipe hash in the cache, or None. Only a renamed build
    directory with a readable ``image.json`` of that hash and a ``rootfs/`` counts."""
    d = Path(cache_dir or DEFAULT_CACHE_DIR) / rec_hash
    try:
        meta = json.loads((d / "image.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("recipe_hash") != rec_hash or \
            not (d / "rootfs").is_dir() or (d / "rootfs").is_symlink():
        return None
    return Image(path=d, metadata=meta, reused=True)


def _mounts_under(path: Path) -> list[str]:
    """Mount points at or under ``path`` in this mount namespace."""
    base = os.path.realpath(path)
    out = []
    with contextlib.suppress(OSError), open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].encode().decode("unicode_escape")
            if mp == base or mp.startswith(base.rstrip("/") + "/"):
                out.append(mp)
    return out


def _remove_build_dir(path: Path) -> None:
    """Remove a (partial) build directory: never while anything is mounted under it, never
    following a link (``shutil.rmtree`` walks by file descriptor on Linux)."""
    if not os.path.lexists(path):
        return
    mounts = _mounts_under(path)
    if mounts:
        raise ImageError(f"not removing {path}: mounted under it: {', '.join(mounts)}")
    if not shutil.rmtree.avoids_symlink_attacks:  # pragma: no cover - Linux has it
        raise ImageError(f"not removing {path}: this platform's rmtree can follow links")
    shutil.rmtree(path)


def _set_pdeathsig() -> None:
    """In the child before exec: SIGKILL it when the process that started it dies (then
    ``unshare --kill-child`` takes its PID namespace, and with it every mount, down too)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _env(**extra: str) -> dict[str, str]:
    env = {"PATH": _PATH, "HOME": "/root", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
           "DEBIAN_FRONTEND": "noninteractive"}
    for k in ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"):
        if k in os.environ:
            env[k] = os.environ[k]
    env.update(extra)
    return env


#: a private mount namespace and PID namespace that die with their first process
_UNSHARE = ["unshare", "--mount", "--propagation", "private", "--pid", "--fork", "--kill-child"]

_RUN_SCRIPT = """set -eu
root="$1"; inputs="$2"; shift 2
mount -t proc proc "$root/proc"
mount --bind "$inputs" "$root/tmp"
exec chroot "$root" "$@"
"""


def run_in_image(rootfs: str | os.PathLike, argv: Sequence[str], *,
                 files: Mapping[str, str | bytes] | None = None, timeout: float = 300,
                 check: bool = False) -> subprocess.CompletedProcess:
    """Run ``argv`` chrooted in ``rootfs`` (root only), in a private mount and PID namespace:
    a fresh ``/proc``, and as ``/tmp`` a new directory holding ``files`` (name -> content),
    so nothing is written into the image's own ``/tmp`` and no mount outlives the command.
    Returns the completed process (text, stdout and stderr captured)."""
    root = Path(rootfs)
    if not (root / "tmp").is_dir() or (root / "tmp").is_symlink():
        raise ImageError(f"{root} is not a root filesystem (no tmp/ directory)")
    with tempfile.TemporaryDirectory(prefix="jso-image-run-") as inputs:
        os.chmod(inputs, 0o1777)
        for name, data in (files or {}).items():
            if "/" in name or name.startswith(".") or not name:
                raise ValueError(f"files: {name!r} must be a plain file name")
            Path(inputs, name).write_bytes(data.encode() if isinstance(data, str) else data)
        cmd = [*_UNSHARE, "sh", "-c", _RUN_SCRIPT, "sh", str(root), inputs, *argv]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_env(),
                              preexec_fn=_set_pdeathsig, stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise ImageError(f"{' '.join(argv)} in {root} exited {proc.returncode}:\n"
                         f"{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return proc


# ---- host tools ---------------------------------------------------------------------------------

HOST_PACKAGES = {"debootstrap": "debootstrap", "systemd-nspawn": "systemd-container"}
_apt_updated = False


def ensure_host_tools(install: bool = True, log: Callable[[str], None] | None = None) -> None:
    """debootstrap (the build) and systemd-nspawn (the boot backend) on this host; missing
    ones are installed with apt-get (``apt-get update`` once per process first) when
    ``install`` and root. Raises :class:`ImageError` naming what is missing."""
    global _apt_updated
    for tool in ("unshare", "chroot", "mount", "du"):
        if shutil.which(tool, path=_PATH) is None:
            raise ImageError(f"{tool!r} not found (util-linux / coreutils)")
    missing = [pkg for tool, pkg in HOST_PACKAGES.items() if shutil.which(tool, path=_PATH) is None]
    if not missing:
        return
    if not install or os.geteuid() != 0 or shutil.which("apt-get", path=_PATH) is None:
        raise ImageError(f"missing {', '.join(missing)}: apt-get install {' '.join(missing)}")
    apt = ["apt-get", "-q", "-o", "DPkg::Lock::Timeout=300"]
    steps = ([] if _apt_updated else [[*apt, "update"]]) + \
        [[*apt, "install", "-y", "--no-install-recommends", *missing]]
    for cmd in steps:
        if log:
            log("+ " + " ".join(cmd))
        proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=900)
        if proc.returncode != 0:
            raise ImageError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout[-3000:]}"
                             f"{proc.stderr[-3000:]}")
        if cmd[-1] == "update":
            _apt_updated = True


# ---- the build ----------------------------------------------------------------------------------

def _check_no_links(root: Path, rel: str) -> Path:
    """``root/rel`` after checking that no directory on the way is a symbolic link (the
    image's links point into the image, which is not ``/`` here)."""
    p = root
    parts = Path(rel).parts
    for part in parts[:-1]:
        p = p / part
        st = os.lstat(p)
        if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
            raise ImageError(f"{p} is not a plain directory in the image")
    return p / parts[-1]


def _write_in_root(root: Path, rel: str, text: str, mode: int = 0o644) -> None:
    target = _check_no_links(root, rel)
    if os.path.islink(target):
        os.unlink(target)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(target, mode, follow_symlinks=False)


def _disable_cloud_init_modules(root: Path, names: Sequence[str]) -> None:
    cfg = _check_no_links(root, "etc/cloud/cloud.cfg")
    if os.path.islink(cfg):
        raise ImageError(f"{cfg} is a link")
    text = cfg.read_text()
    for name in names:
        pat = re.compile(rf"^[ \t]*-[ \t]*(?:{re.escape(name)}|\[[ \t]*{re.escape(name)}[ \t]*,[^\]]*\])[ \t]*\n",
                         re.MULTILINE)
        text, n = pat.subn("", text)
        if n == 0:
            raise ImageError(f"cloud-init module {name!r} not found in /etc/cloud/cloud.cfg of "
                             "the image: the recipe needs updating")
    cfg.write_text(text)


def _du(path: Path, apparent: bool) -> int:
    cmd = ["du", "-sx", "--block-size=1", *(["--apparent-size"] if apparent else []), str(path)]
    return int(subprocess.run(cmd, capture_output=True, text=True, check=True,
                              env=_env()).stdout.split()[0])


def _debootstrap(rec: dict, mirror: Mirror, rootfs: Path, logfile: Path,
                 log: Callable[[str], None] | None, timeout: float) -> None:
    cmd = ["debootstrap", f"--variant={rec['variant']}", f"--arch={rec['arch']}",
           "--components=main", "--include=" + ",".join(rec["packages"])]
    if mirror.keyring:
        cmd.append(f"--keyring={mirror.keyring}")
    cmd += [rec["suite"], str(rootfs), mirror.uri]
    if log:
        log("+ " + " ".join(cmd))
    deadline = time.monotonic() + timeout
    with open(logfile, "w") as out:
        proc = subprocess.Popen([*_UNSHARE, *cmd], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
                                env=_env(LC_ALL="C"), preexec_fn=_set_pdeathsig)
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                out.write(line)
                if log:
                    log(line.rstrip("\n"))
                if time.monotonic() > deadline:
                    raise ImageError(f"debootstrap took more than {timeout:.0f} s")
            rc = proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    if rc != 0:
        tail = logfile.read_text()[-3000:]
        dlog = rootfs / "debootstrap" / "debootstrap.log"
        more = dlog.read_text(errors="replace")[-3000:] if dlog.is_file() else ""
        raise ImageError(f"debootstrap exited {rc}:\n{tail}" +
                         (f"\n--- {dlog.name} (end) ---\n{more}" if more else ""))


def _finish(rec: dict, rootfs: Path) -> dict:
    """The steps after debootstrap; returns what image.json records of the content."""
    run_in_image(rootfs, ["apt-get", "clean"], check=True)
    audit = run_in_image(rootfs, ["dpkg", "--audit"], check=True).stdout.strip()
    if audit:
        raise ImageError(f"dpkg --audit in the image is not clean:\n{audit[-3000:]}")
    query = run_in_image(rootfs, ["dpkg-query", "-W", "-f", "${Package}\t${Version}\t${db:Status-Abbrev}\n"],
                         check=True).stdout
    installed = {}
    for line in query.splitlines():
        name, version, status = (line.split("\t") + ["", ""])[:3]
        if status.strip() == "ii":
            installed[name] = version
    missing = [p for p in rec["packages"] if p not in installed]
    if missing:
        raise ImageError(f"not installed in the image: {', '.join(missing)}")
    java = run_in_image(rootfs, ["readlink", "-f", "/usr/bin/java"], check=True).stdout.strip()
    version = run_in_image(rootfs, ["java", "-version"], check=True)
    java_version = (version.stderr or version.stdout).splitlines()[0]
    if not re.search(r'version "17[."]', java_version):
        raise ImageError(f"java in the image is not Java 17: {java_version}")
    ci_version = run_in_image(rootfs, ["cloud-init", "--version"], check=True)
    for rel, text in rec["files"].items():
        _write_in_root(rootfs, rel, text)
    _disable_cloud_init_modules(rootfs, rec["disabled_cloud_init_modules"])
    for rel in rec["removed_paths"]:
        target = _check_no_links(rootfs, rel)
        if os.path.lexists(target):
            os.unlink(target)
    for rel in rec["emptied_dirs"]:
        d = _check_no_links(rootfs, rel + "/x").parent
        for p in d.iterdir():
            if p.is_dir() and not p.is_symlink():
                _remove_build_dir(p)
            else:
                p.unlink()
    lists = _check_no_links(rootfs, "var/lib/apt/lists/x").parent
    for p in lists.iterdir():   # the mirror's indexes: cloud-init's package_update fetches them
        if p.is_file() and not p.is_symlink() and p.name != "lock":
            p.unlink()
    return {"java_home": str(Path(java).parent.parent), "java_version": java_version,
            "cloud_init_version": (ci_version.stdout or ci_version.stderr).strip(),
            "packages_installed": installed}


def build_image(cache_dir: str | os.PathLike | None = None, *, suite: str = SUITE,
                packages: Sequence[str] = PACKAGES, mirror: str | None = None,
                arch: str | None = None, install_tools: bool = True,
                log: Callable[[str], None] | None = None, timeout: float = 1800) -> Image:
    """The image of this recipe: from the cache if it is there, else built (debootstrap from
    ``mirror``, default :func:`configured_mirror`) and cached. Root only. Builds of one recipe
    are serialised by a lock file; a build that fails or is killed never looks done."""
    t0 = time.monotonic()
    rec = recipe(suite=suite, packages=packages, arch=arch)
    h = recipe_hash(rec)
    cache = Path(cache_dir or DEFAULT_CACHE_DIR)
    found = find_image(h, cache)
    if found:
        return Image(path=found.path, metadata=found.metadata, reused=True,
                     seconds=time.monotonic() - t0)
    if os.geteuid() != 0:
        raise ImageError("building the machine image needs root (debootstrap, chroot, mount)")
    src = Mirror(uri=mirror.rstrip("/"), suite=suite, keyring=None, origin="argument") \
        if mirror else configured_mirror(suite)
    cache.mkdir(parents=True, exist_ok=True, mode=0o755)
    with open(cache / f"{h}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)   # another process may be building this recipe
        found = find_image(h, cache)
        if found:
            return Image(path=found.path, metadata=found.metadata, reused=True,
                         seconds=time.monotonic() - t0)
        for stale in cache.glob(f".build-{h}-*"):   # what a killed build left
            if log:
                log(f"removing a partial build: {stale}")
            _remove_build_dir(stale)
        if os.path.lexists(cache / h):   # incomplete or foreign: not an image of ours
            _remove_build_dir(cache / h)
        ensure_host_tools(install=install_tools, log=log)
        work = cache / f".build-{h}-{secrets.token_hex(4)}"
        work.mkdir(mode=0o700)
        try:
            rootfs = work / "rootfs"
            started = time.time()
            _debootstrap(rec, src, rootfs, work / "build.log", log, timeout)
            content = _finish(rec, rootfs)
            versions = {p: content["packages_installed"].get(p) for p in KEY_PACKAGES}
            meta = {
                "recipe_hash": h,
                "recipe": rec,
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(started)),
                "build_seconds": round(time.time() - started, 1),
                "mirror": src.uri,
                "mirror_origin": src.origin,
                "debootstrap": _tool_version(["debootstrap", "--version"]),
                "size_bytes": _du(rootfs, apparent=False),
                "apparent_bytes": _du(rootfs, apparent=True),
                "java_home": content["java_home"],
                "java_version": content["java_version"],
                "cloud_init_version": content["cloud_init_version"],
                "versions": versions,
                "spark": {"included": False,
                          "how": "the boot backend bind-mounts the Spark of the pyspark wheel "
                                 "read-only at the configured spark_home"},
                "packages_requested": rec["packages"],
                "packages_installed": content["packages_installed"],
            }
            (work / "image.json").write_text(json.dumps(meta, indent=1, sort_keys=False) + "\n")
            (work / "build.log").unlink()
            os.chmod(work, 0o755)
            os.rename(work, cache / h)   # complete: only now does it exist under its name
        except BaseException:
            with contextlib.suppress(Exception):
                _remove_build_dir(work)
            raise
    img = find_image(h, cache)
    if img is None:   # pragma: no cover - it was just renamed into place
        raise ImageError(f"{cache / h} vanished after the build")
    return Image(path=img.path, metadata=img.metadata, reused=False,
                 seconds=time.monotonic() - t0)


def prune_images(cache_dir: str | os.PathLike | None = None, keep: Sequence[str] = (),
                 log: Callable[[str], None] | None = None) -> list[Path]:
    """Remove the cached images (and partial builds) of every recipe hash not in ``keep``
    whose lock no process holds (a build holds it exclusively; whatever boots machines from
    an image should hold it shared, ``fcntl.flock(LOCK_SH)``, while they run). Returns what
    was removed."""
    cache = Path(cache_dir or DEFAULT_CACHE_DIR)
    removed: list[Path] = []
    if not cache.is_dir():
        return removed
    for lockfile in sorted(cache.glob("*.lock")):
        h = lockfile.name[:-len(".lock")]
        if h in keep:
            continue
        with open(lockfile, "a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if log:
                    log(f"in use, kept: {cache / h}")
                continue
            for d in [cache / h, *cache.glob(f".build-{h}-*")]:
                if os.path.lexists(d):
                    _remove_build_dir(d)
                    removed.append(d)
                    if log:
                        log(f"removed {d}")
    return removed


def _tool_version(cmd: list[str]) -> str | None:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        return subprocess.run(cmd, capture_output=True, text=True, env=_env()).stdout.strip()
    return None


# ---- CLI ------------------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m jupyter_spark_openstack.testing.machines.image",
                                 description="The machine image of the emulator's container "
                                             "boot backend (Debian bookworm, debootstrap).")
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build the image, or reuse it from the cache")
    b.add_argument("--cache", default=None, help=f"cache directory (default {DEFAULT_CACHE_DIR})")
    b.add_argument("--mirror", default=None,
                   help="Debian mirror URI (default: this machine's, from its apt sources)")
    b.add_argument("--json", action="store_true", help="print image.json")
    b.add_argument("--quiet", action="store_true", help="no build output")
    p = sub.add_parser("path", help="print the rootfs of the current recipe (exit 1 if not built)")
    p.add_argument("--cache", default=None)
    sub.add_parser("recipe", help="print the recipe and its hash")
    q = sub.add_parser("prune", help="remove the cached images of other recipes")
    q.add_argument("--cache", default=None)
    args = ap.parse_args(argv)

    if args.cmd == "recipe":
        rec = recipe()
        print(json.dumps({"recipe_hash": recipe_hash(rec), "recipe": rec}, indent=1))
        return 0
    if args.cmd == "path":
        img = find_image(recipe_hash(recipe()), args.cache)
        if img is None:
            print("not built: python -m jupyter_spark_openstack.testing.machines.image build",
                  file=sys.stderr)
            return 1
        print(img.rootfs)
        return 0
    if args.cmd == "prune":
        prune_images(args.cache, keep=[recipe_hash(recipe())], log=print)
        return 0
    log = None if args.quiet else (lambda s: print(s, file=sys.stderr, flush=True))
    try:
        img = build_image(args.cache, mirror=args.mirror, log=log)
    except ImageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    m = img.metadata
    if args.json:
        print(json.dumps(m, indent=1))
    else:
        print(f"{'reused' if img.reused else 'built'} {img.rootfs} in {img.seconds:.2f} s "
              f"(recipe {img.recipe_hash}, {m['size_bytes'] / 2**20:.0f} MiB, "
              f"{len(m['packages_installed'])} packages, built {m['built_at']} "
              f"in {m['build_seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
