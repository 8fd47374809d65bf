"""JupyterHub spawners that give each user a Spark cluster of her own.

* :class:`SparkClusterMixin` holds everything Spark; combine it with any spawner.
* :class:`SparkOpenStackSpawner` = mixin + ``LocalProcessSpawner`` (entry point
  ``spark-openstack``): the one for a real hub. It runs as root; each user's notebook server
  *and* her Spark daemons (master, Connect server, local workers, so her executors too) run
  as her own system account, with an allow-listed environment.
* :class:`SimpleSparkOpenStackSpawner` = mixin + ``SimpleLocalProcessSpawner`` (entry point
  ``spark-openstack-simple``): for single-user and demo hubs only. Everything of every user
  runs as the hub's own account, so users are not isolated from each other or from the hub.
"""

from jupyterhub.spawner import LocalProcessSpawner, SimpleLocalProcessSpawner

from .mixin import SparkClusterMixin


class SparkOpenStackSpawner(SparkClusterMixin, LocalProcessSpawner):
    """A notebook server as a local process of the user's system account, with a Spark
    cluster of its own whose daemons run as that account too (the hub runs as root)."""

    daemons_as_system_user = True


class SimpleSparkOpenStackSpawner(SparkClusterMixin, SimpleLocalProcessSpawner):
    """For single-user and demo hubs only: like :class:`SparkOpenStackSpawner` without system
    users. Every user's notebook server and Spark daemons run as the hub's own account, so
    users are not isolated from each other nor from the hub."""


__all__ = ["SparkClusterMixin", "SparkOpenStackSpawner", "SimpleSparkOpenStackSpawner"]
