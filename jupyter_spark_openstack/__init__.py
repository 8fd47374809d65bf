"""jupyter-spark-openstack: a Spark cluster per JupyterHub user, on OpenStack or on this host.

The package is split into a *core* (``jupyter_spark_openstack.core``) that imports neither
jupyterhub nor jupyter_server, and thin adapters around it: the spawner, the server
extension, the kernel and the CLI.
"""

from ._version import __version__

__all__ = ["__version__"]


def _jupyter_server_extension_points():
    return [{"module": "jupyter_spark_openstack.serverext"}]


def _jupyter_labextension_paths():
    return [{"src": "labextension", "dest": "jupyter-spark-openstack"}]
