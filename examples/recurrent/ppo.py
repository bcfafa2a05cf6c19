"""PPO (clipped objective, GAE) on CartPole as recurrence equations, CleanRL's algorithm.

Envs keep running across iterations: iteration i acts for T steps with the parameters at (i, 0), then takes
K full-batch Adam steps, k = 0..K-1, on the clipped loss of that rollout: parameters are recurrences over
(i, k). The compiler finds the loops: the acting loop over t, the backward recurrence of the advantages,
and the epochs over k with every step's forward and backward pass vectorized over envs and timesteps.

    reflow recurrent run examples/recurrent/ppo.py --arg iterations=150
"""

from __future__ import annotations

from reflow import recurrent as rc
from reflow.recurrent import nn, returns
from reflow.recurrent.optim import Adam
from reflow.recurrent.udf import EnvBank, log


def build(env_id: str = "CartPole-v1", gamma: float = 0.99, lam: float = 0.95, lr: float = 1e-3,
          clip: float = 0.2, ent_coef: float = 0.01, vf_coef: float = 0.5, hidden: int = 64, seed: int = 0,
          workers: int = 1, **env_kwargs: object) -> rc.Context:
    ctx = rc.Context("b i k t", name="ppo")
    b, i, k, t = ctx.dims
    B, T = ctx.bound("b"), ctx.bound("t")
    env = EnvBank(ctx, env_id, domain=(b, i, t), num_workers=workers, seed=seed, autoreset="same_step",
                  **env_kwargs)
    n_obs, n_act = env.obs_shape, env.num_actions
    actor = nn.MLP(ctx, [n_obs, hidden, hidden, n_act], (i, k), seed, "actor", out_gain=0.01)
    critic = nn.MLP(ctx, [n_obs, hidden, hidden, 1], (i, k), seed + 1, "critic")

    obs = ctx.placeholder(env.obs_shape, domain=(b, i, t), name="obs")
    behave = nn.Categorical(actor(obs, at=(i, 0)))
    act = behave.sample(seed).named("act")
    next_obs, r, term, trunc = env.step(act)
    obs[(i == 0) & (t == 0)] = env.reset(once=True)
    obs[t == 0] = next_obs[b, i - 1, T - 1]        # the rollout goes on where the last one stopped
    obs[True] = next_obs[b, i, t - 1]

    done = (term | trunc).as_float()
    value = critic(obs, at=(i, 0)).sum(-1)
    last = critic(next_obs[b, i, T - 1], at=(i, 0)).sum(-1)
    adv = returns.gae(r, value, last.detach(), 1.0 - done, t, gamma, lam)
    ret = (adv + value.detach()).named("return")
    norm = (adv - adv[0:B, i, 0:T].mean()) / (adv[0:B, i, 0:T].std() + 1e-8)

    dist = nn.Categorical(actor(obs))
    ratio = (dist.log_prob(act) - behave.log_prob(act).detach()).exp()
    pg = -(ratio * norm).minimum(ratio.clamp(1 - clip, 1 + clip) * norm)
    v_err = critic(obs).sum(-1) - ret
    loss = (pg + vf_coef * v_err * v_err - ent_coef * dist.entropy())[0:B, i, k, 0:T].mean().named("loss")
    loss.backward()
    Adam(actor.params + critic.params, lr, max_grad_norm=0.5).step()

    assert env.episode_return is not None
    ended = done[0:B, i, 0:T].sum()
    log(ctx, (i,), episode_return=env.episode_return[0:B, i, 0:T].sum() / ended.maximum(1.0),
        episodes=ended, loss=loss[i, 0])
    return ctx


def program(num_envs: int = 8, steps: int = 128, epochs: int = 8, iterations: int = 150,
            memory_budget: int | None = None, **kw: object) -> rc.Program:
    return build(**kw).compile(B=num_envs, T=steps, K=epochs, I=iterations,  # type: ignore[arg-type]
                               memory_budget=memory_budget)


def main() -> object:  # what `reflow graph FILE` draws
    return program().drawing()


if __name__ == "__main__":
    for rec in program().run(progress=True).logs[::10]:
        print(f"iteration {rec['i']:3d}  return {rec['episode_return']:6.1f}")
