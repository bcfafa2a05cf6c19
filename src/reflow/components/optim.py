"""The optimizer component: Adam on the parameters of the components it is given, with gradient-norm
clipping and a learning-rate schedule (``constant`` or ``linear`` decay to 0 over ``total_updates``, the
RL Zoo's ``lin_`` prefix). While building it takes no step."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from reflow.components.component import Component, api, building
from reflow.components.spaces import Spec
from reflow.errors import ComponentError

SCHEDULES = ("constant", "linear")


def schedule_value(start: float, schedule: str, progress: float) -> float:
    """``start`` scaled by the schedule at ``progress`` (0 at the start of training, 1 at the end)."""
    if schedule == "linear":
        return start * max(0.0, 1.0 - progress)
    return start


class Optimizer(Component):
    """``step(loss)``: zero the gradients, backpropagate, clip, step. Set ``progress`` (0..1) before a step
    to move the schedule."""

    def __init__(
        self,
        name: str,
        targets: Sequence[Component],
        lr: float,
        schedule: str = "constant",
        max_grad_norm: float | None = None,
        eps: float = 1e-8,
    ) -> None:
        super().__init__(name)
        if schedule not in SCHEDULES:
            raise ComponentError(f"optimizer {name!r}: unknown schedule {schedule!r}; choose {SCHEDULES}")
        self.targets = list(targets)
        self.lr, self.schedule, self.max_grad_norm, self.eps = lr, schedule, max_grad_norm, eps
        self.opt: torch.optim.Optimizer | None = None
        self.params: list[nn.Parameter] = []
        self.progress = 0.0
        self.updates = 0

    def create_variables(self, method: str, specs: Mapping[str, Spec]) -> None:
        self.params = [p for t in self.targets for p in t.parameters()]
        if not self.params:
            raise ComponentError(
                f"optimizer {self.path!r} has nothing to train: its targets "
                f"{[t.path for t in self.targets]} have no parameters (yet); call them first"
            )
        # foreach: the same arithmetic, bit for bit, as the per-tensor loop torch picks on CPU by default,
        # in a few fused calls instead of ~10 torch calls per tensor (35% less time per step, small nets).
        self.opt = torch.optim.Adam(self.params, lr=self.lr, eps=self.eps, foreach=True)

    @api
    def step(self, loss: torch.Tensor) -> torch.Tensor:
        """One gradient step on ``loss``; returns the gradient norm before clipping (0 while building)."""
        assert self.opt is not None
        if building():
            return torch.zeros(())
        lr = schedule_value(self.lr, self.schedule, self.progress)
        for group in self.opt.param_groups:
            group["lr"] = lr
        self.opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        norm = (
            nn.utils.clip_grad_norm_(self.params, self.max_grad_norm)
            if self.max_grad_norm is not None
            else torch.zeros(())
        )
        self.opt.step()
        self.updates += 1
        return norm.detach()
