"""Map jobs on a Ray cluster (optional): the dashboard's :class:`RayMaps`, a gateway child process that is the Ray
driver, and the :class:`~sensmap.serving.remote.actor.MapActor` actors that keep networks loaded.

Importing this package does not import Ray: only the gateway process (:mod:`.gateway`) and the cluster's workers
(:mod:`.actor`) do. The cluster's workers must import the same sensmap as the dashboard (install it on every node).
"""

from .client import RayMaps

__all__ = ["RayMaps"]
