"""Returns and advantages as recurrence equations over the time dimension, for episodes that may end early.

An iteration runs one episode per env for at most T steps. ``alive[t]`` is 1 while the episode has not ended
before step t; rewards and losses are multiplied by it, so steps after the end count for nothing (the env bank
has already reset those envs; their transitions are ignored).
"""

from __future__ import annotations

from reflow.recurrent.symbolic import Expr, smin
from reflow.recurrent.tensor import RecurrentTensor


def _dims(x: RecurrentTensor, t: Expr) -> tuple[object, ...]:
    return tuple(d for d in x.ctx.dims if str(d) in x.domain and str(d) != str(t))


def alive(done: RecurrentTensor, t: Expr) -> RecurrentTensor:
    """1.0 at the steps of an episode, 0.0 after it ended (``done`` at step t ends it after step t): no
    ``done`` among the steps before t, a prefix sum the compiler turns into a running count."""
    ended = done.as_float()[_window(done, t, 0, t)].sum()
    return (1.0 - (ended > 0.5).as_float()).named("alive")


def _at(x: RecurrentTensor, t: Expr, e: Expr) -> tuple[Expr, ...]:
    return tuple(e if d == str(t) else x.ctx.dims[x.ctx.dim_names.index(d)] for d in x.domain)


def _window(x: RecurrentTensor, t: Expr, lo: Expr | int, hi: Expr | int) -> tuple[object, ...]:
    return tuple(slice(lo, hi) if d == str(t) else x.ctx.dims[x.ctx.dim_names.index(d)] for d in x.domain)


def discounted_returns(r: RecurrentTensor, t: Expr, gamma: float) -> RecurrentTensor:
    """Monte-Carlo returns ``G[t] = sum_k gamma^k r[t+k]`` to the end of the episode."""
    T = r.ctx.bound(str(t))
    return r[_window(r, t, t, T)].discounted_sum(gamma).named("returns")


def n_step_returns(r: RecurrentTensor, t: Expr, n: int, gamma: float) -> RecurrentTensor:
    """``sum_{k<n} gamma^k r[t+k]`` (cut at the episode's end): needs only n steps of the future."""
    T = r.ctx.bound(str(t))
    return r[_window(r, t, t, smin(t + n, T))].discounted_sum(gamma).named(f"returns_{n}")


def bootstrapped(r: RecurrentTensor, v: RecurrentTensor, t: Expr, n: int, gamma: float) -> RecurrentTensor:
    """The n-step target ``sum_{k<n} gamma^k r[t+k] + gamma^n v[t+n]`` (no bootstrap past the horizon T;
    ``v`` should be 0 after the episode ended, e.g. masked by ``alive``)."""
    ctx = r.ctx
    T = ctx.bound(str(t))
    g = n_step_returns(r, t, n, gamma)
    out = ctx.placeholder((), r.dtype, ctx.order([*r.domain, *v.domain]), name=f"target_{n}")
    out[t + n >= T] = g
    out[True] = g + (gamma ** n) * v.detach()[_at(v, t, t + n)]
    return out


def gae(r: RecurrentTensor, v: RecurrentTensor, v_last: RecurrentTensor | float, nonterminal: RecurrentTensor,
        t: Expr, gamma: float, lam: float) -> RecurrentTensor:
    """Generalized advantage estimation, ``A[t] = delta[t] + gamma * lam * nonterminal[t] * A[t + 1]`` with
    ``delta[t] = r[t] + gamma * nonterminal[t] * v[t + 1] - v[t]``: a reverse recurrence cut where an episode
    ends (``nonterminal[t] = 0``). ``v_last`` is the value after the last step (0: no bootstrap)."""
    ctx = r.ctx
    T = ctx.bound(str(t))
    v = v.detach()
    dom = ctx.order([*r.domain, *v.domain, *nonterminal.domain])
    v_next = ctx.placeholder((), r.dtype, dom, name="next_value")
    v_next[t == T - 1] = v_last
    v_next[True] = v[_at(v, t, t + 1)]
    delta = (r + gamma * v_next * nonterminal - v).named("td_error")
    adv = ctx.placeholder((), r.dtype, dom, name="advantage")
    adv[t == T - 1] = delta
    adv[True] = delta + (gamma * lam) * nonterminal * adv[_at(delta, t, t + 1)]
    return adv
