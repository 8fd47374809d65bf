"""JupyterHub spawners that give each user a Spark cluster of her own.

* :class:`SparkClusterMixin` holds everything Spark; combine it with any spawner.
* :class:`SparkOpenStackSpawner` = mixin + ``LocalProcessSpawner`` (entry point
  ``spark-openstack``).
* :class:`SimpleSparkOpenStackSpawner` = mixin + ``SimpleLocalProcessSpawner`` (no system
  users needed; the demo and the tests use it; entry point ``spark-openstack-simple``).
"""

from jupyterhub.spawner import LocalProcessSpawner, SimpleLocalProcessSpawner

from .mixin import SparkClusterMixin


class SparkOpenStackSpawner(SparkClusterMixin, LocalProcessSpawner):
    """A notebook server as a local process of the user, with a Spark cluster of its own."""


class SimpleSparkOpenStackSpawner(SparkClusterMixin, SimpleLocalProcessSpawner):
    """Like :class:`SparkOpenStackSpawner` without system users (demos, tests)."""


__all__ = ["SparkClusterMixin", "SparkOpenStackSpawner", "SimpleSparkOpenStackSpawner"]
