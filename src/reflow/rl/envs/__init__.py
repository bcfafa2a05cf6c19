"""Environment banks: many gymnasium envs stepped in worker processes over shared memory.

``make_vec`` gives the gymnasium ``VectorEnv`` interface; ``EnvBank`` is the engine underneath.
"""

from reflow.rl.envs.bank import EnvBank
from reflow.rl.envs.spec import EnvSpec
from reflow.rl.envs.vector import BankVectorEnv, make_vec

__all__ = ["BankVectorEnv", "EnvBank", "EnvSpec", "make_vec"]
