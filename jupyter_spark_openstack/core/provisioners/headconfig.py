"""The cloud-config (user-data) that turns a fresh VM into a user's cluster *head*: her Spark
master, her Spark Connect server (her one driver) and a TLS terminator in front of it.

Head placement ``cluster`` (see :mod:`..cluster`): the hub host runs no JVM for her. On the VM:

* the hosts script of the workers (:data:`.cloudconfig.HOSTS_SCRIPT`) gives ``SPARK_LOCAL_IP``,
  the head's tenant address, which the master and the driver bind to (the address is only known
  on the VM, so nothing here names it);
* ``spark-openstack-master.service``: the standalone master on ``SPARK_LOCAL_IP``, ports
  :data:`~..spark.ports.MASTER_PORT` (RPC, the workers) and
  :data:`~..spark.ports.MASTER_WEBUI_PORT` (UI, the hub's proxy);
* ``spark-openstack-connect.service``: the Connect server, its gRPC endpoint on the head's
  loopback only (:data:`~..spark.ports.CONNECT_LOOPBACK_PORT`), its driver on ``SPARK_LOCAL_IP``
  with fixed driver and block manager ports (a security group can name them) and its UI on
  :data:`~..spark.ports.APP_UI_PORT`; every property, the Connect token and the cluster secret
  included, is in a properties file readable by the service user only (written by cloud-init's
  deferred ``write_files``, once that user exists), nothing secret on a command line;
* ``spark-openstack-tls.service``: HAProxy from the image, TLS with ALPN ``h2`` on
  :data:`~..spark.ports.CONNECT_PORT`, passing the decrypted HTTP/2 (gRPC) stream to the Connect
  server on loopback. Its certificate and key (:mod:`..tls`, made new at every start) are in a
  root-only file; HAProxy reads it, then drops to the ``haproxy`` user.

Like the workers' user-data it never holds OpenStack credentials or a hub token. It holds the
cluster's Spark secret, its Connect token and the server key: what the head needs, which give
access to this user's cluster only, and which are new at every start.
"""

from __future__ import annotations

from collections.abc import Mapping

import yaml

from ..errors import ValidationError
from ..models import parse_abs_path, parse_memory, parse_os_name, parse_safe_token
from ..spark import daemons, ports
from ..spark.connect import CONNECT_DEFAULTS
from ..tls import ClusterTLS
from .cloudconfig import (
    CONF_DIR,
    HOSTS_SCRIPT,
    HOSTS_SCRIPT_TEXT,
    SERVICE_USER,
    Dumper,
    InstallConfig,
    env_text,
    escape_property_value,
    parse_worker_spark_conf,
    properties_text,
    service_unit,
)

HEAD_ENV_FILE = f"{CONF_DIR}/head.env"
MASTER_PROPERTIES_FILE = f"{CONF_DIR}/master.properties"
CONNECT_PROPERTIES_FILE = f"{CONF_DIR}/connect.properties"
TLS_BUNDLE_FILE = f"{CONF_DIR}/tls/connect.pem"
HAPROXY_CONFIG_FILE = f"{CONF_DIR}/haproxy.cfg"
HEAD_DIR = "/var/lib/spark-openstack"
MASTER_UNIT = "spark-openstack-master.service"
CONNECT_UNIT = "spark-openstack-connect.service"
TLS_UNIT = "spark-openstack-tls.service"
HEAD_UNITS = (MASTER_UNIT, CONNECT_UNIT, TLS_UNIT)
HAPROXY = "/usr/sbin/haproxy"
CONNECT_SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"

#: the executors' Python on the servers by default (Python UDFs and RDD lambdas run in it, with
#: the pyspark.zip of the servers' Spark; the kernels' minor version)
EXECUTOR_PYTHON = "/usr/bin/python3"

def haproxy_config(*, bundle: str = TLS_BUNDLE_FILE, bind: str = f":{ports.CONNECT_PORT}",
                   backend_port: int = ports.CONNECT_LOOPBACK_PORT, user: str | None = "haproxy") -> str:
    """HAProxy's configuration: TLS (ALPN h2) on ``bind``, the stream passed to the Connect
    server on loopback ``backend_port``. Constant on the head (:data:`HAPROXY_CONFIG_TEXT`);
    the arguments let a test run the same configuration on loopback."""
    drop = f"    user {user}\n    group {user}\n" if user else ""
    return f"""# TLS in front of the Spark Connect server (jupyter-spark-openstack). gRPC is HTTP/2: the
# client negotiates h2 by ALPN, HAProxy decrypts and passes the stream on to the server,
# which listens on this head's loopback only.
global
{drop}    maxconn 4096
    ssl-default-bind-options ssl-min-ver TLSv1.2

defaults
    mode tcp
    timeout connect 5s
    timeout client 24h
    timeout server 24h

frontend spark_connect_tls
    bind {bind} ssl crt {bundle} alpn h2
    default_backend spark_connect

backend spark_connect
    server connect 127.0.0.1:{backend_port}
"""


# Fixed text: no value from any person is inserted in it.
HAPROXY_CONFIG_TEXT = haproxy_config()


def _service(description: str, exec_start: list[str], *, after: str = "network-online.target",
             user: str | None = SERVICE_USER, env_files: tuple[str, ...] = (HEAD_ENV_FILE,),
             pre: str | None = f"+{HOSTS_SCRIPT}", environment: Mapping[str, str] | None = None) -> str:
    return service_unit(description, exec_start, env_files=env_files, after=after, user=user,
                        pre=pre, working_dir=HEAD_DIR, environment=environment)


def build_head_cloud_config(*, hostname: str, secret: str | None, token: str, tls: ClusterTLS,
                            install: InstallConfig, driver_memory: str = "1g",
                            connect_conf: Mapping[str, str] | None = None,
                            master_conf: Mapping[str, str] | None = None,
                            connect: bool = True, executor_python: str = EXECUTOR_PYTHON) -> dict:
    """The head's cloud-config as data, every value validated here. ``connect_conf``: Spark
    properties of her Connect server (executor sizes, dynamic allocation, hardening, network
    crypto; they win over ours); ``master_conf``: the master's; ``connect`` False: her master
    only (no Connect server, no TLS terminator, no token or key on the machine)."""
    hostname = parse_os_name("hostname", hostname)
    if not all(c.isalnum() or c == "-" for c in hostname) or len(hostname) > 63:
        raise ValidationError("hostname", hostname, "letters, digits and '-' only, at most 63 characters")
    if install.mode != "preinstalled":
        raise ValidationError("openstack.install.mode", install.mode,
                              "'preinstalled' for head placement 'cluster' (the head image must "
                              "hold Java, Spark and HAProxy)")
    token = parse_safe_token("connect token", token)
    env = {"SPARK_HOME": install.spark_home, "SPARK_MASTER_PORT": str(ports.MASTER_PORT),
           "SPARK_MASTER_WEBUI_PORT": str(ports.MASTER_WEBUI_PORT),
           "SPARK_DRIVER_MEMORY": parse_memory("head driver memory", driver_memory),
           "PYSPARK_PYTHON": parse_abs_path("executor_python", executor_python)}
    if install.java_home:
        env["JAVA_HOME"] = install.java_home
    if secret:
        env["_SPARK_AUTH_SECRET"] = parse_safe_token("secret", secret)
    master_props = {"spark.authenticate": "true" if secret else "false",
                    "spark.master.rest.enabled": "false", "spark.ui.killEnabled": "false",
                    **parse_worker_spark_conf(master_conf, "master_conf")}
    connect_props = {
        "spark.app.name": "spark-connect",
        "spark.driver.memory": env["SPARK_DRIVER_MEMORY"],
        "spark.driver.port": str(ports.DRIVER_PORT),
        "spark.blockManager.port": str(ports.BLOCK_MANAGER_PORT),
        "spark.ui.port": str(ports.APP_UI_PORT),
        "spark.ui.killEnabled": "false",
        "spark.sql.warehouse.dir": f"{HEAD_DIR}/spark-warehouse",
        "spark.local.dir": f"{HEAD_DIR}/tmp",
        "spark.executorEnv.PYSPARK_PYTHON": env["PYSPARK_PYTHON"],
        **CONNECT_DEFAULTS,
        **parse_worker_spark_conf(connect_conf, "connect_conf"),
        # ours, last: where the endpoint binds, the token, the cluster's authentication
        "spark.connect.grpc.binding.address": "127.0.0.1",
        "spark.connect.grpc.binding.port": str(ports.CONNECT_LOOPBACK_PORT),
        "spark.authenticate": "true" if secret else "false",
    }
    # the token and the secret are written here, in the service user's 0600 file only
    secret_lines = f"spark.connect.authenticate.token={escape_property_value(token)}\n"
    if secret:
        secret_lines += f"spark.authenticate.secret={escape_property_value(env['_SPARK_AUTH_SECRET'])}\n"
    spark_home = install.spark_home
    master = _service("Spark master", [
        f"{spark_home}/bin/spark-class", "org.apache.spark.deploy.master.Master",
        "--host", "${SPARK_LOCAL_IP}", "--port", "${SPARK_MASTER_PORT}",
        "--webui-port", "${SPARK_MASTER_WEBUI_PORT}", "--properties-file", MASTER_PROPERTIES_FILE],
        environment=daemons.DAEMON_ENV)
    connect_unit = _service("Spark Connect server", [
        f"{spark_home}/bin/spark-submit", "--class", CONNECT_SERVER_CLASS,
        "--master", "spark://${SPARK_LOCAL_IP}:${SPARK_MASTER_PORT}",
        "--conf", "spark.driver.host=${SPARK_LOCAL_IP}",
        "--conf", "spark.driver.bindAddress=${SPARK_LOCAL_IP}",
        "--properties-file", CONNECT_PROPERTIES_FILE, "spark-internal"],
        after=f"network-online.target {MASTER_UNIT}")
    tls_unit = _service("TLS for Spark Connect", [HAPROXY, "-Ws", "-f", HAPROXY_CONFIG_FILE],
                        user=None, env_files=(), pre=None)
    files = [
        {"path": HOSTS_SCRIPT, "permissions": "0755", "owner": "root:root", "content": HOSTS_SCRIPT_TEXT},
        {"path": HEAD_ENV_FILE, "permissions": "0600", "owner": "root:root", "content": env_text(env)},
        {"path": MASTER_PROPERTIES_FILE, "permissions": "0644", "owner": "root:root",
         "content": properties_text(master_props)},
        {"path": TLS_BUNDLE_FILE, "permissions": "0600", "owner": "root:root",
         "content": tls.server_bundle_pem},
        {"path": HAPROXY_CONFIG_FILE, "permissions": "0644", "owner": "root:root",
         "content": HAPROXY_CONFIG_TEXT},
        {"path": f"/etc/systemd/system/{MASTER_UNIT}", "permissions": "0644", "owner": "root:root",
         "content": master},
        {"path": f"/etc/systemd/system/{CONNECT_UNIT}", "permissions": "0644", "owner": "root:root",
         "content": connect_unit},
        {"path": f"/etc/systemd/system/{TLS_UNIT}", "permissions": "0644", "owner": "root:root",
         "content": tls_unit},
        # deferred: written in cloud-init's final stage, once the service user exists
        {"path": CONNECT_PROPERTIES_FILE, "permissions": "0600",
         "owner": f"{SERVICE_USER}:{SERVICE_USER}", "defer": True,
         "content": properties_text(connect_props) + secret_lines},
    ]
    units = list(HEAD_UNITS)
    if not connect:
        units = [MASTER_UNIT]
        dropped = (TLS_BUNDLE_FILE, HAPROXY_CONFIG_FILE, CONNECT_PROPERTIES_FILE,
                   f"/etc/systemd/system/{CONNECT_UNIT}", f"/etc/systemd/system/{TLS_UNIT}")
        files = [f for f in files if f["path"] not in dropped]
    return {
        "hostname": hostname,
        "fqdn": hostname,
        "manage_etc_hosts": False,
        "users": ["default", {"name": SERVICE_USER, "system": True,
                              "shell": "/usr/sbin/nologin", "lock_passwd": True}],
        "write_files": files,
        "runcmd": [[HOSTS_SCRIPT], ["systemctl", "daemon-reload"],
                   ["systemctl", "enable", "--now", *units]],
    }


def render_head_user_data(**kwargs) -> str:
    """``#cloud-config`` + the YAML of :func:`build_head_cloud_config`."""
    doc = build_head_cloud_config(**kwargs)
    return "#cloud-config\n" + yaml.dump(doc, Dumper=Dumper, sort_keys=False,
                                          default_flow_style=False, width=1000)
