"""The reactors of the training program besides the envs: the policy (inference) and the learner.

Both hold an agent (``reflow.rl.algos``): the policy a policy-role one (acting only), the learner the full
one. Messages: the policy sends an ``Act`` (observations as the networks saw them, actions, and what the
algorithm keeps of them, e.g. PPO's log-probabilities and values) to the learner; the env reactor sends an
``EnvStep`` to both. The learner publishes ``Weights`` (a snapshot of the agent's policy state, numbered)
back to the policy whenever an update changed them, and ``done`` when the run should end.

Timing. Env step k happens at microstep k. At that tag the learner gets the step result together with the
policy's ``Act`` from microstep k-1 (that connection is delayed by one microstep), so it sees whole
transitions; if it updates, the new weights reach the policy at the same tag, before the policy acts on the
new observations. This is exactly the order of a synchronous loop ``act; step; learn; publish``, which is why
a run is bit-identical to that loop and, with the env bank's seeding, for any number of worker processes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from reflow.components import Act, Agent, Transition
from reflow.components.agent import PolicyTensors, obs_tensor
from reflow.reactor import Reactor, reaction
from reflow.rl.envs.reactors import EnvStep

Progress = Callable[[int, float | None], None]  # (env steps so far, recent mean return)


@dataclass(frozen=True)
class Weights:
    """A published policy state (a copy of the learner's policy variables, ``Agent.policy_snapshot``);
    ``version`` counts publications (1 is the first update)."""

    version: int
    snapshot: PolicyTensors

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The snapshot keyed as ``Agent.policy_state`` keys it."""
        return self.snapshot.state_dict()


def transition(step: EnvStep, agent: Agent) -> Transition:
    """The agent's view of a step: tensors, with the true last observation where an episode ended."""
    real_next = step.obs
    if "_final_obs" in step.infos:  # SAME_STEP autoreset: obs holds the reset observation there
        real_next = np.array(step.obs, copy=True)
        for i in np.flatnonzero(step.infos["_final_obs"]):
            real_next[i] = step.infos["final_obs"][i]
    return Transition(
        torch.as_tensor(np.asarray(step.rewards, dtype=np.float32)),
        torch.as_tensor(np.asarray(step.terminations, dtype=bool)),
        torch.as_tensor(np.asarray(step.truncations, dtype=bool)),
        obs_tensor(real_next, agent.obs_spec),
        obs_tensor(step.obs, agent.obs_spec),
    )


class InferenceReactor(Reactor):
    """The policy: one batched forward pass per env step, on its own policy-role agent, sampling from a
    seeded generator. Published weights are loaded before acting at the same tag; after ``done`` it stops
    sending actions, so the envs are not stepped again."""

    def __init__(self, agent: Agent, seed: int, total_steps: int, name: str = "policy") -> None:
        super().__init__(name)
        self.agent = agent
        self.total_steps = total_steps
        self.gen = torch.Generator().manual_seed(seed)
        self.obs = self.input("obs", np.ndarray)
        self.weights = self.input("weights", Weights)
        self.done = self.input("done", bool)
        self.actions = self.output("actions", np.ndarray)
        self.acted = self.output("acted", Act)
        self.version = 0  # of the weights in use
        self.steps = 0

    @reaction(triggers=("obs", "weights"), sources="done", effects=("actions", "acted"))
    def act(self) -> None:
        if self.weights.is_present:
            published = self.weights.get()
            self.agent.load_policy_snapshot(published.snapshot)
            self.version = published.version
        if self.done.is_present or not self.obs.is_present:
            return
        self.agent.progress = self.steps * self.agent.num_envs / self.total_steps
        act = self.agent.act(obs_tensor(self.obs.get(), self.agent.obs_spec), self.gen)
        self.steps += 1
        self.actions.set(act.env_actions)
        self.acted.set(act)


class Tracker:
    """Episode returns from the env infos, the learning curve, greedy evaluations, and the target test.

    Without evaluations the target is judged on the training episodes (the behaviour policy, exploration
    included). With them (``eval_every``), it is judged on the last greedy evaluation, the policy that
    ``reflow eval`` plays, and the best evaluated policy state is kept for the checkpoint."""

    def __init__(self, window: int, target_return: float | None) -> None:
        self.window = window
        self.target_return = target_return
        self.returns: list[float] = []
        self.curve: list[tuple[int, float]] = []
        self.evals: list[tuple[int, float]] = []
        self.best: tuple[float, dict[str, torch.Tensor]] | None = None

    def record_eval(self, steps: int, score: float, state: dict[str, torch.Tensor]) -> None:
        self.evals.append((steps, score))
        if self.best is None or score >= self.best[0]:
            self.best = (score, state)

    def record(self, infos: dict[str, Any], steps: int) -> None:
        if "_episode" in infos:
            self.returns.extend(float(r) for r in infos["episode"]["r"][infos["_episode"]])
            self.curve.append((steps, self.recent() or 0.0))

    def recent(self) -> float | None:
        tail = self.returns[-self.window :]
        return float(np.mean(tail)) if tail else None

    def reached(self) -> bool:
        if self.evals:
            return self.target_return is not None and self.evals[-1][1] >= self.target_return
        r = self.recent()
        return (
            self.target_return is not None
            and len(self.returns) >= self.window
            and r is not None
            and r >= self.target_return
        )


class LearnerReactor(Reactor):
    """Whole transitions in, weights and ``done`` out: feeds each step to the agent (the algorithm),
    publishes the policy state when the agent updated, keeps the episode bookkeeping and ends the run at
    the step budget or the target return."""

    def __init__(
        self,
        agent: Agent,
        total_steps: int,
        tracker: Tracker,
        progress: Progress,
        evaluate: Callable[[Agent], float] | None = None,
        eval_every: int = 0,
        name: str = "learner",
    ) -> None:
        super().__init__(name)
        self.agent = agent
        self.evaluate, self.eval_every = evaluate, eval_every
        self.total_steps = total_steps
        self.tracker = tracker
        self.progress = progress
        self.steps = 0
        self.version = 0
        self.step = self.input("step", EnvStep)
        self.acted = self.input("acted", Act)
        self.weights = self.output("weights", Weights)
        self.done = self.output("done", bool)

    @reaction(triggers=("step", "acted"), effects=("weights", "done"))
    def learn(self) -> None:
        step, act = self.step.get(), self.acted.get()
        self.agent.progress = self.steps / self.total_steps
        self.steps += self.agent.num_envs
        self.tracker.record(step.infos, self.steps)
        if self.agent.observe(act, transition(step, self.agent)):
            self.version += 1
            self.weights.set(Weights(self.version, self.agent.policy_snapshot()))
            self.progress(self.steps, self.tracker.recent())
        if (
            self.evaluate is not None
            and self.eval_every > 0
            and (self.steps // self.eval_every != (self.steps - self.agent.num_envs) // self.eval_every)
        ):
            self.tracker.record_eval(self.steps, self.evaluate(self.agent), self.agent.policy_state())
        if self.steps >= self.total_steps or self.tracker.reached():
            self.done.set(True)
            self.request_stop()
