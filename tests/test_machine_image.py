"""The machine image of issue 11 (``testing/machines/image.py``): built with debootstrap from this
machine's apt mirror, cached outside the repository and rebuilt only when its recipe changes,
never looking done when a build did not finish; it has systemd, cloud-init, Java 17 and the
NoCloud datasource. Every cloud-config the worker renderer can produce is checked by the real
cloud-init of that image (``cloud-init schema``).

The first run on a machine builds the image (about 100 s, network to the apt mirror only);
later runs reuse it from ``/var/cache/jupyter-spark-openstack/images``.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

from jupyter_spark_openstack.core.provisioners import cloudconfig as cc
from jupyter_spark_openstack.testing.machines import image as im
from jupyter_spark_openstack.testing.machines.cloudinit import schema_check
from tests._machines import built_image

# a cold build on a busy 2-core machine, inside the first test that asks for the image
pytestmark = pytest.mark.timeout(1800)

# ---- the mirror, read from apt sources (placeholders only: no real mirror is named here) ------

DEB822 = """\
Types: deb
# a comment line inside a stanza
URIs: http://mirror-a.invalid/debian
Suites: bookworm-updates bookworm
Components: main contrib
Signed-By: {keyring}

Types: deb
URIs: http://mirror-a.invalid/debian-security
Suites: bookworm-security
Components: main
"""


def _apt(tmp_path: Path, files: dict[str, str]) -> Path:
    etc = tmp_path / "etc-apt"
    (etc / "sources.list.d").mkdir(parents=True)
    for rel, text in files.items():
        (etc / rel).write_text(text)
    return etc


def test_deb822_source_serving_the_suite_itself_is_chosen(tmp_path):
    keyring = tmp_path / "archive.gpg"
    keyring.write_bytes(b"")
    etc = _apt(tmp_path, {"sources.list.d/debian.sources": DEB822.format(keyring=keyring)})
    m = im.configured_mirror("bookworm", etc)
    assert (m.uri, m.suite, m.keyring) == ("http://mirror-a.invalid/debian", "bookworm", str(keyring))
    assert m.origin == f"{etc}/sources.list.d/debian.sources:1"
    # not the security archive, even though it comes with 'main' too
    with pytest.raises(im.MirrorNotFound, match="bookworm-security"):
        im.configured_mirror("trixie", etc)


def test_one_line_sources_with_options_comments_and_precedence(tmp_path):
    etc = _apt(tmp_path, {
        "sources.list": ("# deb http://commented.invalid/debian bookworm main\n"
                         "deb-src http://src-only.invalid/debian bookworm main\n"
                         "deb [arch=amd64 signed-by=/nonexistent.gpg] http://mirror-b.invalid/debian/ "
                         "bookworm main non-free-firmware # trailing comment\n"),
        "sources.list.d/debian.sources": DEB822.format(keyring="/nonexistent.gpg"),
    })
    m = im.configured_mirror("bookworm", etc)
    # sources.list comes first, deb-src is no source of packages, a trailing / is dropped,
    # a keyring that is no file is not passed on
    assert (m.uri, m.keyring) == ("http://mirror-b.invalid/debian", None)
    assert m.origin == f"{etc}/sources.list:3"


def test_disabled_stanzas_other_components_and_other_file_names_are_ignored(tmp_path):
    etc = _apt(tmp_path, {
        "sources.list.d/a.sources": ("Types: deb\nURIs: http://disabled.invalid/debian\n"
                                     "Suites: bookworm\nComponents: main\nEnabled: no\n\n"
                                     "Types: deb\nURIs: http://contrib-only.invalid/debian\n"
                                     "Suites: bookworm\nComponents: contrib\n\n"
                                     "Types: deb\nURIs: mirror+file:/etc/apt/mirrors.txt\n"
                                     "Suites: bookworm\nComponents: main\n"),
        "sources.list.d/b.list.disabled": "deb http://not-read.invalid/debian bookworm main\n",
        "sources.list.d/c.list": "deb http://mirror-c.invalid/debian bookworm main\n",
    })
    assert im.configured_mirror("bookworm", etc).uri == "http://mirror-c.invalid/debian"


def test_no_usable_source_says_what_the_sources_offer(tmp_path):
    etc = _apt(tmp_path, {"sources.list.d/node.sources": (
        "Types: deb\nURIs: https://node.invalid/node_20.x\nSuites: nodistro\nComponents: main\n")})
    with pytest.raises(im.MirrorNotFound) as ei:
        im.configured_mirror("bookworm", etc)
    msg = str(ei.value)
    assert "suite 'bookworm'" in msg and "node.sources:1: suites nodistro" in msg and "--mirror" in msg


@pytest.mark.skipif(not Path("/etc/apt").is_dir(), reason="not an apt machine")
def test_this_machines_mirror_comes_from_its_apt_sources():
    try:
        m = im.configured_mirror()
    except im.MirrorNotFound as e:
        pytest.skip(str(e))
    origin_file = m.origin.rsplit(":", 1)[0]
    assert origin_file.startswith("/etc/apt/")
    assert m.uri in Path(origin_file).read_text()


# ---- the recipe and the cache (no root, no network) --------------------------------------------

def test_recipe_has_what_both_install_modes_need_and_its_hash_follows_it():
    rec = im.recipe(arch="amd64")
    for pkg in ("systemd", "systemd-sysv", "dbus", "cloud-init", "python3-cffi-backend", "iproute2",
                cc.DEFAULT_JAVA_PACKAGE, "curl", "ca-certificates", "haproxy"):
        assert pkg in rec["packages"]
    assert yaml.safe_load(rec["files"]["etc/cloud/cloud.cfg.d/90_dpkg.cfg"]) == {
        "datasource_list": ["NoCloud", "None"]}
    assert rec["disabled_cloud_init_modules"] == ["locale"]
    h = im.recipe_hash(rec)
    assert h == im.recipe_hash(im.recipe(arch="amd64", packages=tuple(reversed(im.PACKAGES))))
    assert h != im.recipe_hash(im.recipe(arch="amd64", packages=(*im.PACKAGES, "nginx-light")))
    assert h != im.recipe_hash(im.recipe(arch="arm64"))
    assert h != im.recipe_hash({**rec, "files": {**rec["files"], "etc/hostname": "x\n"}})
    with pytest.raises(ValueError):
        im.recipe(arch="amd64", packages=("curl;reboot",))


def _fake_image(cache: Path, h: str, name: str | None = None) -> Path:
    d = cache / (name or h)
    (d / "rootfs" / "tmp").mkdir(parents=True)
    (d / "image.json").write_text(json.dumps({"recipe_hash": h}))
    return d


def test_only_a_complete_renamed_build_counts_as_an_image(tmp_path):
    h = im.recipe_hash(im.recipe(arch="amd64"))
    (tmp_path / f".build-{h}-dead" / "rootfs").mkdir(parents=True)    # killed mid-debootstrap
    assert im.find_image(h, tmp_path) is None
    (tmp_path / h / "rootfs").mkdir(parents=True)                      # no image.json
    assert im.find_image(h, tmp_path) is None
    (tmp_path / h / "image.json").write_text(json.dumps({"recipe_hash": "0" * 16}))
    assert im.find_image(h, tmp_path) is None                          # another recipe's
    (tmp_path / h / "image.json").write_text("{not json")
    assert im.find_image(h, tmp_path) is None
    shutil.rmtree(tmp_path / h)
    _fake_image(tmp_path, h)
    img = im.find_image(h, tmp_path)
    assert img is not None and img.rootfs == tmp_path / h / "rootfs" and img.recipe_hash == h


def test_a_cached_image_is_reused_without_building(tmp_path, monkeypatch):
    h = im.recipe_hash(im.recipe(arch="amd64"))
    _fake_image(tmp_path, h)

    def no_build(*a, **k):
        raise AssertionError("debootstrap must not run for a cached recipe")

    monkeypatch.setattr(im, "_debootstrap", no_build)
    monkeypatch.setattr(im, "configured_mirror", no_build)
    img = im.build_image(tmp_path, arch="amd64")
    assert img.reused and img.path == tmp_path / h and img.seconds < 5


def test_a_failed_build_leaves_nothing_and_a_killed_ones_leftovers_are_removed(tmp_path, monkeypatch):
    h = im.recipe_hash(im.recipe(arch="amd64"))
    stale = tmp_path / f".build-{h}-dead"
    (stale / "rootfs" / "etc").mkdir(parents=True)
    (stale / "rootfs" / "etc" / "passwd").write_text("half\n")
    other = tmp_path / ".build-0123456789abcdef-live"    # another recipe's build: not ours to touch
    other.mkdir()
    seen = {}

    def failing_debootstrap(rec, mirror, rootfs, logfile, log, timeout):
        seen["stale_gone"] = not stale.exists()
        seen["mirror"] = mirror.uri
        rootfs.mkdir()
        raise im.ImageError("debootstrap exited 1: (test)")

    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(im, "ensure_host_tools", lambda **k: None)
    monkeypatch.setattr(im, "_debootstrap", failing_debootstrap)
    with pytest.raises(im.ImageError, match="debootstrap exited 1"):
        im.build_image(tmp_path, arch="amd64", mirror="http://mirror-d.invalid/debian/")
    assert seen == {"stale_gone": True, "mirror": "http://mirror-d.invalid/debian"}
    assert sorted(p.name for p in tmp_path.iterdir()) == [other.name, f"{h}.lock"]
    assert im.find_image(h, tmp_path) is None


def test_a_build_directory_with_a_mount_under_it_is_never_removed(tmp_path, monkeypatch):
    d = tmp_path / ".build-x-y"
    (d / "rootfs" / "proc").mkdir(parents=True)
    monkeypatch.setattr(im, "_mounts_under", lambda p: [str(d / "rootfs" / "proc")])
    with pytest.raises(im.ImageError, match="mounted under it"):
        im._remove_build_dir(d)
    assert (d / "rootfs" / "proc").is_dir()


def test_prune_removes_other_recipes_but_keeps_the_current_one(tmp_path):
    keep, old = "a" * 16, "b" * 16
    for h in (keep, old):
        _fake_image(tmp_path, h)
        (tmp_path / f"{h}.lock").touch()
    removed = im.prune_images(tmp_path, keep=[keep])
    assert removed == [tmp_path / old]
    assert im.find_image(keep, tmp_path) is not None and not (tmp_path / old).exists()


# ---- the built image (root, an apt machine, network to its mirror on the first run) ----------

@pytest.fixture(scope="module")
def machine_image() -> im.Image:
    img = built_image("building the machine image needs root on Linux (debootstrap, chroot, mount)")
    print(f"machine image {img.rootfs}: {'reused' if img.reused else 'built'} in {img.seconds:.1f} s, "
          f"{img.metadata['size_bytes'] / 2**20:.0f} MiB")
    return img


def test_image_has_systemd_cloud_init_java17_and_the_nocloud_datasource(machine_image):
    root, meta = machine_image.rootfs, machine_image.metadata
    assert machine_image.recipe_hash == im.recipe_hash(im.recipe())
    assert machine_image.path.parent == im.DEFAULT_CACHE_DIR
    # systemd is the init; dbus and cloud-init are there
    assert os.readlink(root / "sbin" / "init") == "/lib/systemd/systemd"
    assert os.access(root / "lib" / "systemd" / "systemd", os.X_OK)
    tools = ("dbus-daemon", "cloud-init", "systemctl", "ip", "hostname", "useradd", "sudo", "curl",
             "sha512sum", "tar", "haproxy")
    found = im.run_in_image(root, ["sh", "-c", 'for t; do command -v "$t" || echo "missing $t"; done',
                                   "sh", *tools], check=True)
    assert len(found.stdout.split()) == len(tools) and "missing" not in found.stdout, found.stdout
    assert meta["cloud_init_version"].endswith(" 22.4.2")
    # Java 17, where image.json says (a config's java_home can name it)
    java = im.run_in_image(root, ["java", "-version"], check=True)
    assert 'openjdk version "17.' in java.stderr, java.stderr
    assert meta["java_home"] == "/usr/lib/jvm/java-17-openjdk-amd64" or meta["recipe"]["arch"] != "amd64"
    assert os.access(root / meta["java_home"].lstrip("/") / "bin" / "java", os.X_OK)
    # cloud-init reads the NoCloud seed, and does not run the locale module
    dpkg_cfg = yaml.safe_load((root / "etc/cloud/cloud.cfg.d/90_dpkg.cfg").read_text())
    assert dpkg_cfg == {"datasource_list": ["NoCloud", "None"]}
    cfg = yaml.safe_load((root / "etc/cloud/cloud.cfg").read_text())
    modules = [m if isinstance(m, str) else m[0] for k in
               ("cloud_init_modules", "cloud_config_modules", "cloud_final_modules") for m in cfg[k]]
    assert "locale" not in modules and "runcmd" in modules and "write-files" in modules
    # a template, not a machine: no build host identity, no Spark (bind-mounted at boot)
    assert (root / "etc/machine-id").read_text() == "" and (root / "etc/resolv.conf").read_text() == ""
    assert (root / "etc/hostname").read_text() == "localhost\n"
    assert not (root / "opt" / "spark").exists() and meta["spark"]["included"] is False
    assert set(meta["packages_requested"]) <= set(meta["packages_installed"])
    assert meta["versions"]["openjdk-17-jre-headless"].startswith("17.")
    assert meta["size_bytes"] > 100 * 2**20 and meta["build_seconds"] > 0


def test_image_is_reused_from_the_cache(machine_image):
    again = im.build_image()
    assert again.reused and again.path == machine_image.path and again.seconds < 10
    assert again.metadata["built_at"] == machine_image.metadata["built_at"]


# ---- every cloud-config the renderer can produce, checked by the real cloud-init ------------

HARDENING = {"spark.network.crypto.enabled": "true", "spark.ui.killEnabled": "false",
             "spark.master.ui.decommission.allow.mode": "DENY"}
TRICKY = {"spark.executorEnv.WIN_PATH": "C:\\tmp\\new", "spark.executorEnv.PAD": "  two spaces",
          "spark.executorEnv.TEXT": "café ☕ 😀 a=b:c #!d", "spark.a": True, "spark.b": 3}
SPARK_URL = "http://10.0.0.1:8080/spark-4.0.0-bin-hadoop3.tgz"


def _configs():
    """Both install modes x with and without each optional field (secret, java_home,
    spark_conf), and two with every other knob turned (ports, spark_home, java_package,
    https, a 63-character hostname, values a properties file must escape)."""
    out = []
    for mode, secret, java_home, conf in itertools.product(("preinstalled", "download"),
                                                          (False, True), (False, True), (False, True)):
        install: dict = {"mode": mode}
        if mode == "download":
            install.update(spark_url=SPARK_URL, spark_sha512="ab" * 64)
        if java_home:
            install["java_home"] = "/usr/lib/jvm/java-17-openjdk-amd64"
        kw = dict(hostname="hub-alice-w1", master_url="spark://10.0.0.5:7077", cores=4, memory="8g",
                  secret="s3cr3t_Token-xyz" if secret else None, install=install,
                  spark_conf=HARDENING if conf else None)
        name = "-".join([mode, *(k for k, on in (("secret", secret), ("java_home", java_home),
                                                 ("spark_conf", conf)) if on)])
        out.append((name, kw))
    host63 = "w" + "-x" * 31
    out.append(("preinstalled-everything", dict(
        hostname=host63, master_url="spark://hub.tenant.internal:41234", cores=1024, memory="512m",
        secret="A" * 64, worker_port=41000, webui_port=41001, block_manager_port=41002,
        install={"mode": "preinstalled", "spark_home": "/opt/jupyter/lib/python3.11/site-packages/pyspark",
                 "java_home": "/usr/lib/jvm/java-17-openjdk-amd64"},
        spark_conf={**HARDENING, **TRICKY})))
    out.append(("download-everything", dict(
        hostname=host63, master_url="spark://10.0.0.5:7077", cores=2, memory="1g", secret="x",
        worker_port=41000, webui_port=41001, block_manager_port=41002,
        install={"mode": "download", "spark_url": "https://downloads.invalid/spark.tgz?x=1",
                 "spark_sha512": "AB" * 64, "spark_home": "/opt/spark",
                 "java_home": "/usr/lib/jvm/java-21-openjdk-amd64",
                 "java_package": "openjdk-21-jre-headless"},
        spark_conf={**HARDENING, **TRICKY})))
    return out


CONFIGS = _configs()


def _render(kw: dict) -> str:
    kw = dict(kw, install=cc.InstallConfig.parse(kw["install"]))
    return cc.render_user_data(**kw)


def test_the_configs_cover_every_shape_the_renderer_has():
    docs = {name: yaml.safe_load(_render(kw)) for name, kw in CONFIGS}
    assert len(docs) == 18
    assert {tuple(sorted(d)) for d in docs.values()} == {
        ("fqdn", "hostname", "manage_etc_hosts", "runcmd", "users", "write_files"),
        ("fqdn", "hostname", "manage_etc_hosts", "package_update", "packages", "runcmd", "users",
         "write_files")}
    env_keys = {frozenset(cc.parse_env_file(f["content"])) for d in docs.values()
                for f in d["write_files"] if f["path"] == cc.ENV_FILE}
    assert {"JAVA_HOME" in k for k in env_keys} == {True, False}
    assert {"_SPARK_AUTH_SECRET" in k for k in env_keys} == {True, False}


@pytest.mark.parametrize("kw", [kw for _, kw in CONFIGS], ids=[name for name, _ in CONFIGS])
def test_every_rendered_cloud_config_is_valid_for_the_real_cloud_init(machine_image, kw):
    text = _render(kw)
    cc.read_worker_boot(text)   # our own reader (the in-process boot) takes it too
    res = schema_check(machine_image.rootfs, text)
    # exactly what cloud-init 22.4 prints for a valid file without deprecated keys
    assert (res.returncode, res.stdout, res.stderr) == (
        0, "Valid cloud-config: /tmp/user-data.yaml\n", ""), res.output
    assert res.valid and res.deprecations == "" and res.errors == ""


def test_the_schema_check_fails_on_what_cloud_init_refuses(machine_image):
    doc = cc.build_cloud_config(hostname="hub-alice-w1", master_url="spark://10.0.0.5:7077", cores=4,
                                memory="8g", secret=None, install=cc.InstallConfig.parse({}))
    doc["write_files"][1]["permissions"] = 0o600      # an int, not the string cloud-init wants
    doc["runcmd"] = "systemctl enable --now x"         # a string, not a list
    res = schema_check(machine_image.rootfs, "#cloud-config\n" + yaml.safe_dump(doc))
    assert res.returncode == 1 and not res.valid, res.output
    assert res.stderr.startswith("Error:\nCloud config schema errors: ")
    assert "write_files.1.permissions: 384 is not of type 'string'" in res.errors
    assert "runcmd: 'systemctl enable --now x' is not of type 'array'" in res.errors
    dep = schema_check(machine_image.rootfs, "#cloud-config\napt_update: true\n")
    assert dep.valid and "apt_update: DEPRECATED" in dep.deprecations, dep.output


def test_nothing_is_left_behind(machine_image):
    cache = machine_image.path.parent
    assert not list(cache.glob(".build-*"))
    assert im._mounts_under(cache) == []
    assert list((machine_image.rootfs / "tmp").iterdir()) == []   # the checks had a private /tmp
