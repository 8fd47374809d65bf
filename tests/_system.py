"""Infrastructure for the tests that run a real JupyterHub as root with ``SparkOpenStackSpawner``
(``LocalProcessSpawner``) and real system accounts.

* :func:`system_venv` / :func:`system_venv_info`: a venv made from Debian's ``/usr/bin/python3``
  at a world-readable place outside the repo (``/root`` is 0700 here, so no system account can
  run the repo's ``.venv``), with the project's runtime dependencies (cached across sessions,
  keyed on ``setup.cfg``, ``pyproject.toml``, the Python version and the hub's ``jupyterhub`` and
  ``pyspark`` versions) and the project itself installed from the current source (once per
  session, skipped when the installed copy already is that source).
* :func:`make_system_users` (context manager) and the ``system_users`` fixture (a factory):
  real accounts made with ``useradd`` under a per-session prefix, each with her own 0700 home
  and her own group, removed at the end even when the test failed.
* :func:`run_as`: run a command as one of them (no supplementary groups, a clean environment).
* :func:`make_root_hub_dir` and the ``root_hub_dir`` fixture: a hub directory that every user
  can traverse (0711 all the way up), removed at the end.

Use the fixtures (``sys_venv``, ``system_users``, ``root_hub_dir``) in a test module by importing
them: ``from tests._system import _sys_venv_fixture, ...  # noqa: F401``. Without root
(or where ``useradd`` fails) the tests that ask for users FAIL, they are not skipped: CI runs
as root.
"""

from __future__ import annotations

import configparser
import contextlib
import dataclasses
import fcntl
import grp
import hashlib
import importlib.metadata
import json
import os
import pwd
import secrets
import shutil
import stat
import string
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parent.parent
SYSTEM_PYTHON = "/usr/bin/python3"
#: where the cached venvs live; every directory up to it must be traversable by others
CACHE_ROOT = Path(os.environ.get("JSO_TEST_VENV_CACHE", "/var/cache/jupyter-spark-openstack"))
#: where the users' homes and the root hubs' directories go (not /tmp/pytest-of-root: 0700)
SCRATCH = Path("/var/tmp")
#: the commands that make and remove accounts (tests replace them to check the failure path)
USERADD = ["useradd"]
USERDEL = ["userdel"]
GROUPDEL = ["groupdel"]
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"
# the hub's own versions of these are pinned in the users' venv: one JupyterHub, one Spark
PINNED = ("jupyterhub", "pyspark")
# what the package build reads (with the built lab extension): changes elsewhere (tests,
# bench, labextension sources) do not reinstall the project
SOURCE_PATHS = ("setup.py", "setup.cfg", "pyproject.toml", "README.md", "MANIFEST.in",
                "LICENSE", "jupyter_spark_openstack", "jupyter-config", "kernels")
LABEXT_BUILT = REPO / "jupyter_spark_openstack" / "labextension"
NEEDS_ROOT = "these tests need root with useradd (CI runs as root)"


# ---- paths others can reach ----------------------------------------------------------------

def untraversable_ancestor(path: str | os.PathLike) -> Path | None:
    """The first directory from ``/`` down to ``path`` (included) that others cannot traverse
    (no ``o+x``), or None."""
    p = Path(path).resolve()
    for d in [*reversed(p.parents), p]:
        if not d.stat().st_mode & stat.S_IXOTH:
            return d
    return None


def check_traversable(path: str | os.PathLike) -> None:
    """Raise if some directory on the way to ``path`` is closed to other users."""
    bad = untraversable_ancestor(path)
    if bad is not None:
        mode = stat.S_IMODE(bad.stat().st_mode)
        raise RuntimeError(f"{path}: other users cannot traverse {bad} (mode {mode:04o}); "
                           "every directory on the way must have o+x")


def _mkdirs_0755(path: Path) -> None:
    missing = [d for d in [*reversed(path.parents), path] if not d.exists()]
    for d in missing:
        try:
            d.mkdir()
        except FileExistsError:
            continue
        d.chmod(0o755)  # whatever the umask


def _make_world_readable(path: Path) -> None:
    subprocess.run(["chmod", "-R", "go+rX", str(path)], check=True)


# ---- the users' venv -------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class SystemVenv:
    """The venv every test user can run."""

    path: Path            #: the venv's root (its real path: scripts' shebangs point here)
    python: Path          #: ``<path>/bin/python``: the users' kernels and Spark executors
    spark_home: Path      #: its ``pyspark`` package directory: the Spark the users' daemons run
    timings: dict         #: seconds: ``venv`` (build or reuse), ``project`` (install or check)

    @property
    def bindir(self) -> Path:
        return self.path / "bin"

    def hub_config(self) -> dict:
        """The ``system_users`` argument of ``write_hub_config``."""
        return {"python": str(self.python), "spark_home": str(self.spark_home)}


def _clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")}
    env.update(extra)
    return env


def _run(argv, **kw) -> subprocess.CompletedProcess:
    """Run a build step; on failure raise with its output (not just the exit code)."""
    kw.setdefault("env", _clean_env())
    r = subprocess.run([str(a) for a in argv], capture_output=True, text=True, umask=0o022, **kw)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv))} exited with {r.returncode}:\n"
                           f"{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r


def runtime_requirements() -> list[str]:
    """``install_requires`` of setup.cfg."""
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    lines = (line.strip() for line in cfg["options"]["install_requires"].splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def _pins() -> dict[str, str]:
    pins = {}
    for name in PINNED:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            pins[name] = importlib.metadata.version(name)
    return pins


def venv_key() -> str:
    h = hashlib.sha256()
    for name in ("setup.cfg", "pyproject.toml"):
        h.update(name.encode() + b"\0" + (REPO / name).read_bytes() + b"\0")
    version = _run([SYSTEM_PYTHON, "-c", "import sys; print(sys.version)"]).stdout
    h.update(version.encode())
    h.update(json.dumps(_pins(), sort_keys=True).encode())
    return h.hexdigest()[:12]


def _cleanup_partial_builds(link: Path) -> None:
    """Remove ``<link>.*`` directories a killed build left (called with the lock held)."""
    current = link.resolve() if link.is_symlink() else None
    for d in link.parent.glob(link.name + ".*"):
        if d.is_dir() and d != current and not d.name.endswith(".lock"):
            shutil.rmtree(d, ignore_errors=True)


def _build_venv(link: Path) -> Path:
    """A new venv at ``<link>.<random>`` (its final path: a venv cannot be moved, its scripts
    name it), then ``link`` is pointed at it atomically: no half venv ever looks done."""
    real = link.parent / f"{link.name}.{secrets.token_hex(4)}"
    _run([SYSTEM_PYTHON, "-m", "venv", real])
    py = real / "bin" / "python"
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("".join(f"{k}=={v}\n" for k, v in _pins().items()))
        constraints = f.name
    try:
        _run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check", "-c", constraints,
              "setuptools>=68", "wheel", *runtime_requirements()])
    finally:
        os.unlink(constraints)
    _make_world_readable(real)
    (real / ".jso-complete").write_text(json.dumps({"built": time.time(),
                                                    "requirements": runtime_requirements(),
                                                    "pins": _pins()}))
    tmp_link = link.parent / f".{link.name}.{secrets.token_hex(4)}.link"
    tmp_link.symlink_to(real.name)
    os.replace(tmp_link, link)
    return real


def _source_files() -> list[Path]:
    """What the package build reads: tracked and new (not ignored) files, and the built
    JupyterLab extension (git-ignored)."""
    out = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others",
                          "--exclude-standard", "--", *SOURCE_PATHS],
                         capture_output=True, check=True).stdout.decode()
    files = {REPO / p for p in out.split("\0") if p}
    files.update(p for p in LABEXT_BUILT.rglob("*") if p.is_file())
    return sorted(p for p in files if p.is_file() and "__pycache__" not in p.parts)


def _ensure_labextension_built() -> None:
    """The built extension is what the wheel ships; build it (npm) only when it is missing."""
    if (LABEXT_BUILT / "package.json").exists():
        return
    _run([sys.executable, "-c", "import setup; setup.build_labextension()"], cwd=REPO)


def _install_project(venv: Path) -> str:
    """Install this source into the venv (non-editable, no deps); returns ``installed`` or
    ``current`` (the venv already holds exactly this source)."""
    _ensure_labextension_built()
    files = _source_files()
    h = hashlib.sha256()
    for f in files:
        h.update(str(f.relative_to(REPO)).encode() + b"\0" + f.read_bytes() + b"\0")
    digest = h.hexdigest()
    marker = venv / ".jso-source"
    if marker.exists() and marker.read_text() == digest:
        return "current"
    # a copy: an in-tree build writes build/ and *.egg-info into the work tree others use
    with tempfile.TemporaryDirectory(prefix="jso-src-") as tmp:
        for f in files:
            dest = Path(tmp) / f.relative_to(REPO)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, dest)
        _run([venv / "bin" / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check",
              "--no-deps", "--force-reinstall", "--no-build-isolation", tmp],
             env=_clean_env(JUPYTER_SPARK_OPENSTACK_SKIP_LABEXTENSION="1"), cwd=tmp)
    _make_world_readable(venv)
    marker.write_text(digest)
    return "installed"


_venv_lock = threading.Lock()
_venv_info: SystemVenv | None = None


def system_venv_info() -> SystemVenv:
    """Build or reuse the users' venv and install this source into it (once per process;
    serialised across processes by a lock file)."""
    global _venv_info
    with _venv_lock:
        if _venv_info is not None:
            return _venv_info
        _mkdirs_0755(CACHE_ROOT)
        check_traversable(CACHE_ROOT)
        link = CACHE_ROOT / f"test-venv-{venv_key()}"
        timings = {}
        with open(f"{link}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # another session may be building the same venv
            t0 = time.monotonic()
            if link.is_symlink() and not (link / ".jso-complete").exists():
                link.unlink()  # its venv was removed or never completed
            _cleanup_partial_builds(link)
            if link.is_symlink():
                real = link.resolve()
                timings["venv_reused"] = True
            else:
                real = _build_venv(link)
                timings["venv_reused"] = False
            timings["venv"] = round(time.monotonic() - t0, 2)
            t0 = time.monotonic()
            timings["project_install"] = _install_project(real)
            timings["project"] = round(time.monotonic() - t0, 2)
            python = real / "bin" / "python"
            spark_home = Path(_run([python, "-c", "import os, pyspark; "
                                    "print(os.path.dirname(pyspark.__file__))"],
                                   cwd="/").stdout.strip())
        check_traversable(python.parent)
        _venv_info = SystemVenv(path=real, python=python, spark_home=spark_home, timings=timings)
        return _venv_info


def system_venv() -> Path:
    """The users' venv (see :func:`system_venv_info` for its python and Spark home)."""
    return system_venv_info().path


@pytest.fixture(scope="session", name="sys_venv")
def _sys_venv_fixture() -> SystemVenv:
    return system_venv_info()


# ---- system users ---------------------------------------------------------------------------

class SystemUsersUnavailable(RuntimeError):
    """Accounts cannot be made here (not root, or useradd failed)."""


@dataclasses.dataclass(frozen=True)
class SystemUser:
    name: str
    uid: int
    gid: int
    group: str
    home: Path


_prefix: str | None = None
_counter = 0
_names_lock = threading.Lock()


def session_prefix() -> str:
    """``jso`` + 4 random lowercase letters, the same for the whole session."""
    global _prefix
    with _names_lock:
        if _prefix is None:
            _prefix = "jso" + "".join(secrets.choice(string.ascii_lowercase) for _ in range(4))
        return _prefix


def _next_suffixes(n: int) -> list[str]:
    global _counter
    with _names_lock:
        start = _counter + 1
        _counter += n
    return [f"u{i}" for i in range(start, start + n)]


def _user_processes(uid: int) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["uids", "name"]):
        with contextlib.suppress(psutil.Error):
            if p.info["uids"] and p.info["uids"].real == uid:
                found.append(p)
    return found


def _remove_user(user: SystemUser) -> list[str]:
    """Remove the account, its group, its home and its files at the top of /tmp, /var/tmp and
    /dev/shm (e.g. Java's hsperfdata); returns what went wrong."""
    errors = []
    left = _user_processes(user.uid)
    if left:
        warnings.warn(f"killing processes left by {user.name}: "
                      f"{[(p.pid, p.info.get('name')) for p in left]}", stacklevel=2)
        for p in left:
            with contextlib.suppress(psutil.Error):
                p.kill()
        psutil.wait_procs(left, timeout=10)
    for top in ("/tmp", "/var/tmp", "/dev/shm"):
        with contextlib.suppress(OSError):
            for entry in os.scandir(top):
                with contextlib.suppress(OSError):
                    if entry.stat(follow_symlinks=False).st_uid == user.uid:
                        if entry.is_dir(follow_symlinks=False):
                            shutil.rmtree(entry.path, ignore_errors=True)
                        else:
                            os.unlink(entry.path)
    try:
        pwd.getpwnam(user.name)
        r = subprocess.run([*USERDEL, "-r", user.name], capture_output=True, text=True)
        if r.returncode != 0 and _exists_user(user.name):
            errors.append(f"{' '.join(USERDEL)} -r {user.name}: exit {r.returncode}: "
                          f"{r.stderr.strip()}")
    except KeyError:
        pass
    if _exists_group(user.group):
        r = subprocess.run([*GROUPDEL, user.group], capture_output=True, text=True)
        if r.returncode != 0:
            errors.append(f"{' '.join(GROUPDEL)} {user.group}: exit {r.returncode}: "
                          f"{r.stderr.strip()}")
    if user.home.exists():
        shutil.rmtree(user.home, ignore_errors=True)
    return errors


def _exists_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def _exists_group(name: str) -> bool:
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


@contextlib.contextmanager
def make_system_users(n: int | None = None, suffixes: Sequence[str] | None = None, *,
                      prefix: str | None = None) -> Iterator[list[SystemUser]]:
    """``n`` real accounts ``<prefix>u1``, ``<prefix>u2``, ... or ``<prefix><suffix>`` for each
    of ``suffixes`` (``.``, ``_`` and ``-`` are fine), each with a 0700 home of her own under a
    0755 directory in /var/tmp, her own group (``useradd -U``), no supplementary group and
    ``/bin/sh``; all removed on exit, whatever happened. Raises
    :class:`SystemUsersUnavailable` (naming the command and its error) where accounts cannot be
    made."""
    if suffixes is None:
        suffixes = _next_suffixes(1 if n is None else n)
    elif n is not None and n != len(suffixes):
        raise ValueError(f"n={n} but {len(suffixes)} suffixes")
    prefix = prefix or session_prefix()
    names = [prefix + s for s in suffixes]
    for name in names:
        if len(name) > 32:
            raise ValueError(f"user name {name!r} is longer than 32 characters")
    if os.geteuid() != 0:
        raise SystemUsersUnavailable(
            f"cannot run {' '.join(USERADD)} ... {names[0]}: this process runs as uid "
            f"{os.geteuid()}, not root; {NEEDS_ROOT}")
    homes = Path(tempfile.mkdtemp(prefix=f"jso-homes-{prefix}-", dir=SCRATCH))
    users: list[SystemUser] = []
    try:
        homes.chmod(0o755)
        check_traversable(homes)
        for name in names:
            if _exists_user(name) or _exists_group(name):
                raise SystemUsersUnavailable(f"user or group {name!r} exists already")
            home = homes / name
            argv = [*USERADD, "-m", "-d", str(home), "-U", "-s", "/bin/sh", name]
            try:
                r = subprocess.run(argv, capture_output=True, text=True)
                err = f"exit {r.returncode}: {(r.stderr or r.stdout).strip()}"
            except OSError as e:
                r, err = None, str(e)
            if r is None or r.returncode != 0:
                if _exists_user(name):  # half made: still ours to remove
                    pw = pwd.getpwnam(name)
                    users.append(SystemUser(name, pw.pw_uid, pw.pw_gid, name, home))
                raise SystemUsersUnavailable(f"{' '.join(argv)} failed ({err}); {NEEDS_ROOT}")
            pw = pwd.getpwnam(name)
            user = SystemUser(name=name, uid=pw.pw_uid, gid=pw.pw_gid,
                              group=grp.getgrgid(pw.pw_gid).gr_name, home=Path(pw.pw_dir))
            users.append(user)
            user.home.chmod(0o700)  # Debian's default is 0755 (HOME_MODE unset, UMASK 022)
        yield list(users)
    finally:
        errors = []
        for user in users:
            errors += _remove_user(user)
        shutil.rmtree(homes, ignore_errors=True)
        if errors:
            raise RuntimeError("could not remove the test users: " + "; ".join(errors))


def _users_factory():
    with contextlib.ExitStack() as stack:
        def factory(n: int | None = None, suffixes: Sequence[str] | None = None):
            try:
                return stack.enter_context(make_system_users(n, suffixes))
            except SystemUsersUnavailable as e:
                pytest.fail(str(e), pytrace=False)
        yield factory


@pytest.fixture(name="system_users")
def _system_users_fixture():
    """A factory: ``system_users(n=1)`` or ``system_users(suffixes=["a.b"])`` returns a list
    of :class:`SystemUser`, removed at the end of the test. Fails the test (never skips) where
    accounts cannot be made."""
    yield from _users_factory()


@pytest.fixture(scope="module", name="module_system_users")
def _module_system_users_fixture():
    """The same factory for module-scoped fixtures (e.g. a hub shared by a module's tests);
    the users are removed at the end of the module. Where accounts cannot be made, the tests
    that use it error at setup (pytest counts that as a failure too, never a skip)."""
    yield from _users_factory()


def user_env(user: SystemUser, env: dict | None = None) -> dict:
    """A login-like environment of ``user`` (nothing of root's), plus ``env``."""
    base = {"HOME": str(user.home), "USER": user.name, "LOGNAME": user.name,
            "SHELL": "/bin/sh", "PATH": SYSTEM_PATH, "LANG": "C.UTF-8"}
    base.update(env or {})
    return base


def run_as(user: SystemUser, argv: Sequence[str], env: dict | None = None, *,
           cwd: str | os.PathLike | None = None, timeout: float = 120,
           input: str | None = None, check: bool = False) -> subprocess.CompletedProcess:
    """Run ``argv`` as ``user`` (her uid and group, no supplementary groups, :func:`user_env`
    plus ``env``, in her home unless ``cwd``); returns the completed process (text output)."""
    return subprocess.run([str(a) for a in argv], user=user.uid, group=user.gid,
                          extra_groups=[], env=user_env(user, env), cwd=cwd or user.home,
                          capture_output=True, text=True, timeout=timeout, input=input,
                          check=check, stdin=None if input is not None else subprocess.DEVNULL)


# ---- a hub directory every user can traverse ------------------------------------------------

@contextlib.contextmanager
def make_root_hub_dir(prefix: str = "jso-hub-") -> Iterator[Path]:
    """A 0711 directory in /var/tmp (pytest's tmp dirs are 0700): the root hub's config,
    database and ``cluster_run_dir`` go here. Processes still running under it are killed and
    it is removed on exit."""
    from jupyter_spark_openstack.demo.hubprocess import kill_processes, processes_under

    d = Path(tempfile.mkdtemp(prefix=prefix, dir=SCRATCH))
    try:
        d.chmod(0o711)
        check_traversable(d)
        yield d
    finally:
        kill_processes(processes_under(d))
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(name="root_hub_dir")
def _root_hub_dir_fixture():
    with make_root_hub_dir() as d:
        yield d
