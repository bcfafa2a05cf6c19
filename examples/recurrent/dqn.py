"""Q-learning with an n-step target on CartPole, as recurrence equations.

Each iteration i plays one episode per env (at most T steps) epsilon-greedily with the Q-network at (i, 0),
then takes K Adam steps on the squared error to the n-step target
``y[t] = sum_{k<n} gamma^k r[t+k] + gamma^n max_a Q(obs[t+n], a)``, where Q is the network of this
iteration's acting (a target network refreshed every iteration). Steps after an episode ended are masked.

    reflow recurrent run examples/recurrent/dqn.py --arg n=4
"""

from __future__ import annotations

from reflow import recurrent as rc
from reflow.recurrent import nn, returns
from reflow.recurrent.optim import Adam
from reflow.recurrent.udf import EnvBank, log


def build(env_id: str = "CartPole-v1", n: int = 4, gamma: float = 0.99, lr: float = 2.5e-4, hidden: int = 64,
          eps_end: float = 0.05, explore: float = 0.3, seed: int = 0, workers: int = 1,
          **env_kwargs: object) -> rc.Context:
    ctx = rc.Context("b i k t", name="dqn")
    b, i, k, t = ctx.dims
    B, T = ctx.bound("b"), ctx.bound("t")
    env = EnvBank(ctx, env_id, domain=(b, i, t), num_workers=workers, seed=seed, **env_kwargs)
    q = nn.MLP(ctx, [env.obs_shape, hidden, hidden, env.num_actions], (i, k), seed, "q")

    obs = ctx.placeholder(env.obs_shape, domain=(b, i, t), name="obs")
    obs[b, i, 0] = env.reset()
    q_act = q(obs, at=(i, 0))
    eps = (1.0 - ctx.symval(i) / (explore * ctx.symval(ctx.bound("i")))).maximum(eps_end)  # linear decay
    act = nn.epsilon_greedy(q_act, eps, seed).named("act")
    obs[b, i, t + 1], r, term, trunc = env.step(act)

    alive = returns.alive(term | trunc, t)
    best_next = (q_act.detach().amax(-1) * alive).named("max_q")
    target = returns.bootstrapped(r * alive, best_next, t, n, gamma).named("target")
    td = q(obs).take(act) - target.detach()
    loss = (td * td * alive)[0:B, i, k, 0:T].sum() / alive[0:B, i, 0:T].sum()
    loss.named("loss").backward()
    Adam(q.params, lr, max_grad_norm=10.0).step()

    log(ctx, (i,), episode_return=(r * alive)[0:B, i, 0:T].sum() / B, loss=loss[i, 0], epsilon=eps)
    return ctx


def program(num_envs: int = 8, episode_len: int = 500, epochs: int = 4, iterations: int = 100,
            memory_budget: int | None = None, **kw: object) -> rc.Program:
    return build(**kw).compile(B=num_envs, T=episode_len, K=epochs, I=iterations,  # type: ignore[arg-type]
                               memory_budget=memory_budget)


def main() -> object:  # what `reflow graph FILE` draws
    return program().drawing()


if __name__ == "__main__":
    for rec in program().run(progress=True).logs[::10]:
        print(f"iteration {rec['i']:3d}  return {rec['episode_return']:6.1f}  epsilon {rec['epsilon']:.2f}")
