"""serverext/remote.py: kernelspecs a spawner passes in a notebook server's environment become
files of that server (0600 token and CA, kernel.json naming them), and bad input is refused."""

from __future__ import annotations

import json
import stat

import pytest

from jupyter_spark_openstack.core.errors import ValidationError
from jupyter_spark_openstack.core.kernelspec import (
    ENV_CONNECT_CA,
    ENV_CONNECT_CA_FILE,
    ENV_CONNECT_TOKEN,
    ENV_CONNECT_TOKEN_FILE,
    ENV_KERNELSPECS,
)
from jupyter_spark_openstack.core.models import KernelSettings
from jupyter_spark_openstack.core.tls import make_cluster_tls
from jupyter_spark_openstack.serverext import remote


def test_environment_kernelspecs_become_private_files(tmp_path):
    ca = make_cluster_tls("connect.head.spark-openstack.internal").ca_pem
    s = KernelSettings.parse(name="pyspark", display_name="PySpark (2 workers)",
                             connect_url="sc://10.87.0.10:15002",
                             connect_tls_name="connect.head.spark-openstack.internal",
                             connect_token_file="/hub/only/token", connect_ca_file="/hub/only/ca")
    value = remote.encode([s])
    assert "/hub/only" not in value   # no path of the hub host goes to the notebook server
    env = {ENV_KERNELSPECS: value, ENV_CONNECT_TOKEN: "tok_abc", ENV_CONNECT_CA: ca}
    kdir = remote.materialize(tmp_path / "runtime", env)
    spec = json.loads((kdir / "pyspark" / "kernel.json").read_text())
    token_file, ca_file = spec["env"][ENV_CONNECT_TOKEN_FILE], spec["env"][ENV_CONNECT_CA_FILE]
    assert open(token_file).read().strip() == "tok_abc" and open(ca_file).read() == ca
    for f in (token_file, ca_file):
        assert stat.S_IMODE((tmp_path / "runtime" / "spark-openstack" / f.rsplit("/", 1)[1]).stat().st_mode) == 0o600
    text = (kdir / "pyspark" / "kernel.json").read_text()
    assert "tok_abc" not in text and "BEGIN CERTIFICATE" not in text
    assert ENV_CONNECT_TOKEN not in env and ENV_CONNECT_CA not in env   # not inherited by kernels
    assert remote.materialize(tmp_path / "other", {}) is None


@pytest.mark.parametrize("value, field", [
    ("not json", ENV_KERNELSPECS),
    ('{"name": "x"}', ENV_KERNELSPECS),
    ('[{"name": "x", "argv": ["sh"]}]', f"{ENV_KERNELSPECS} key"),
    ('[{"name": "../x", "connect_url": "sc://h:1"}]', "name"),
])
def test_bad_environment_kernelspecs_are_refused(tmp_path, value, field):
    with pytest.raises(ValidationError) as ei:
        remote.materialize(tmp_path / "runtime", {ENV_KERNELSPECS: value, ENV_CONNECT_TOKEN: "t"})
    assert ei.value.field == field
    assert not (tmp_path / "runtime" / "spark-openstack").exists()   # nothing half-written
