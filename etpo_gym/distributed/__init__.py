"""Scale-out on a Ray cluster: sub-envs as Ray actors and leaderboard cells as Ray tasks.

::

    from etpo_gym.distributed import RayVectorEnv

    envs = RayVectorEnv("DataSci-v0", num_envs=16, address="auto", task="skill_scale")
    obs, infos = envs.reset(seed=0)

``etpo-gym bench --ray ADDRESS`` and ``etpo-gym train --ray ADDRESS`` use the same parts. This
package is the only one that imports ``ray``, an optional extra (``pip install
"etpo-gym[ray]"``); importing it without Ray raises a :class:`~etpo_gym.errors.ConfigError` that
says so. How to run on a real cluster: docs/scale-out.md.
"""

from etpo_gym.distributed.cluster import Connection, RayClusterError, alive_nodes
from etpo_gym.distributed.vector import RayVectorEnv, WorkerInfo

__all__ = ["Connection", "RayClusterError", "RayVectorEnv", "WorkerInfo", "alive_nodes"]
