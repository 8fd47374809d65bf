"""The core: typed models, Spark knowledge, cluster lifecycle, provisioners, diagnostics.

Nothing under this package may import ``jupyterhub`` or ``jupyter_server``
(``tests/test_architecture.py`` checks it).
"""
