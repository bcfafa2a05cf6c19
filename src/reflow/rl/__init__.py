"""Reinforcement learning on reflow: env banks, a gymnasium vector env, batched inference, training.

Importing this package is light (no torch): ``make_vec`` (lock-step, gymnasium's VectorEnv) or
``make_async`` (EnvPool's send / recv) is all most training code needs.
"""

from reflow.rl.envs import make_async, make_vec

__all__ = ["make_async", "make_vec"]
