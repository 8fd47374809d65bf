"""``c.SparkOpenStack.*``: the server extension's settings (jupyter_server config files or CLI)."""

from __future__ import annotations

from traitlets import Bool, Float, Unicode, validate
from traitlets.config import Configurable

from ..core.errors import ValidationError
from ..core.kernelspec import ENV_CONNECT_URL, ENV_MASTER_URL, ENV_WEBUI_URL
from ..core.models import parse_connect_url, parse_master_url, parse_webui_url


class SparkOpenStack(Configurable):
    """Which Spark master this notebook server shows, and how often it asks the master."""

    master_url = Unicode(
        "", config=True,
        help=f"spark://host:port of the user's cluster. Empty: ${ENV_MASTER_URL} "
             "(set by the spawner), else the PySpark kernelspecs' metadata.")
    master_webui_url = Unicode(
        "", config=True,
        help="http://host:port of the master's web UI (its /json/ is read). Empty: "
             f"${ENV_WEBUI_URL}, else the kernelspecs' metadata, else port 8080 "
             "on the master's host.")
    connect_url = Unicode(
        "", config=True,
        help=f"sc://host:port of the Spark Connect server, if any. Empty: ${ENV_CONNECT_URL}.")
    refresh_interval = Float(
        5.0, config=True,
        help="Seconds one read of the master's /json/ is reused for; every client shares it.")
    request_timeout = Float(
        3.0, config=True, help="Seconds before a request to the master (or a Spark UI) gives up.")
    ui_request_timeout = Float(
        30.0, config=True,
        help="Seconds the Spark UI proxy waits for a page (a driver's REST API can take seconds "
             "to answer its first request).")
    capture_kernel_output = Bool(
        True, config=True,
        help="Make 'spark-openstack-capture' the default kernel provisioner, so every PySpark "
             "kernel's stdout/stderr is kept in a per-kernel log for diagnostics.")
    proxy_ui = Bool(True, config=True,
                    help="Serve the Spark master and application UIs under spark-openstack/ui/.")

    @validate("master_url")
    def _v_master(self, proposal):
        v = proposal["value"].strip()
        return parse_master_url("SparkOpenStack.master_url", v) if v else ""

    @validate("master_webui_url")
    def _v_webui(self, proposal):
        v = proposal["value"].strip()
        return parse_webui_url("SparkOpenStack.master_webui_url", v) if v else ""

    @validate("connect_url")
    def _v_connect(self, proposal):
        v = proposal["value"].strip()
        return parse_connect_url("SparkOpenStack.connect_url", v) if v else ""

    @validate("refresh_interval")
    def _v_interval(self, proposal):
        v = proposal["value"]
        if not 0.1 <= v <= 3600:
            raise ValidationError("SparkOpenStack.refresh_interval", v, "seconds from 0.1 to 3600")
        return v

    @validate("ui_request_timeout")
    def _v_ui_timeout(self, proposal):
        v = proposal["value"]
        if not 0.1 <= v <= 600:
            raise ValidationError("SparkOpenStack.ui_request_timeout", v, "seconds from 0.1 to 600")
        return v

    @validate("request_timeout")
    def _v_timeout(self, proposal):
        v = proposal["value"]
        if not 0.1 <= v <= 120:
            raise ValidationError("SparkOpenStack.request_timeout", v, "seconds from 0.1 to 120")
        return v
