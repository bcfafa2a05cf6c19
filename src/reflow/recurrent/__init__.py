"""Recurrent tensors: RL programs as recurrence equations, compiled through a dependence graph."""

from reflow.recurrent.context import Context
from reflow.recurrent.program import Program, Result
from reflow.recurrent.symbolic import smax, smin
from reflow.recurrent.tensor import RecurrentTensor

__all__ = ["Context", "Program", "RecurrentTensor", "Result", "smax", "smin"]
