"""REINFORCE on CartPole as recurrence equations: Monte-Carlo returns, or n-step returns with ``n=...``.

One iteration i runs one episode per env (at most T steps) with the policy's parameters at i, then takes
one Adam step on the policy-gradient loss. With n-step returns a step's loss needs only the next n rewards,
so the compiled schedule can learn n steps behind acting, in memory that does not grow with T.

    reflow recurrent run examples/recurrent/reinforce.py --arg n=8
"""

from __future__ import annotations

from reflow import recurrent as rc
from reflow.recurrent import nn, returns
from reflow.recurrent.optim import Adam
from reflow.recurrent.udf import EnvBank, log


def build(env_id: str = "CartPole-v1", n: int | None = None, gamma: float = 0.99, lr: float = 1e-2,
          hidden: int = 32, seed: int = 0, workers: int = 1, **env_kwargs: object) -> rc.Context:
    ctx = rc.Context("b i t")
    b, i, t = ctx.dims
    B, T = ctx.bound("b"), ctx.bound("t")
    env = EnvBank(ctx, env_id, domain=(b, i, t), num_workers=workers, seed=seed, **env_kwargs)
    policy = nn.MLP(ctx, [env.obs_shape, hidden, env.num_actions], domain=(i,), seed=seed, out_gain=0.01)

    obs = ctx.placeholder(env.obs_shape, domain=(b, i, t), name="obs")
    obs[b, i, 0] = env.reset()
    dist = nn.Categorical(policy(obs))
    act = dist.sample(seed).named("act")
    obs[b, i, t + 1], r, term, trunc = env.step(act)

    alive = returns.alive(term | trunc, t)
    reward = (r * alive).named("reward")
    if n is None:
        g = returns.discounted_returns(reward, t, gamma)
    else:
        g = returns.n_step_returns(reward, t, n, gamma)
    loss = -(dist.log_prob(act) * g.detach() * alive)[0:B, i, 0:T].sum() / B
    loss.named("loss").backward()
    Adam(policy.params, lr).step()

    log(ctx, (i,), episode_return=reward[0:B, i, 0:T].sum() / B, loss=loss)
    return ctx


def program(num_envs: int = 8, episode_len: int = 500, iterations: int = 60, memory_budget: int | None = None,
            **kw: object) -> rc.Program:
    return build(**kw).compile(B=num_envs, T=episode_len, I=iterations,  # type: ignore[arg-type]
                               memory_budget=memory_budget)


def main() -> object:  # what `reflow graph FILE` draws
    return program().drawing()


if __name__ == "__main__":
    for rec in program().run(progress=True).logs[::5]:
        print(f"iteration {rec['i']:3d}  return {rec['episode_return']:7.1f}")
