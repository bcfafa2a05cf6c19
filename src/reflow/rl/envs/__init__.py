"""Environment banks: many gymnasium envs stepped in worker processes over shared memory.

``make_vec`` gives the gymnasium ``VectorEnv`` interface (lock-step); ``make_async`` gives EnvPool's
asynchronous ``send`` / ``recv``; ``EnvBank`` is the engine underneath both.
"""

from reflow.rl.envs.async_env import AsyncBankEnv, make_async
from reflow.rl.envs.bank import EnvBank
from reflow.rl.envs.spec import EnvSpec
from reflow.rl.envs.vector import BankVectorEnv, make_vec

__all__ = ["AsyncBankEnv", "BankVectorEnv", "EnvBank", "EnvSpec", "make_async", "make_vec"]
