"""Wield: repeatable, comparable RL evaluation (Schaarschmidt 2020), and RL applied to a systems problem.

``suite`` runs an agent over seeds and envs in worker processes into the sqlite experiment ``store``;
``stats`` aggregates (IQM, stratified bootstrap CIs, probability of improvement, a permutation test,
performance profiles); ``report`` writes Markdown and PNG plots; ``placement`` is a gymnasium env for
placing a ``reflow.graph`` dataflow graph on P workers, rewarded by its simulated makespan.
"""

from reflow.wield.stats import Comparison, Estimate, compare, iqm, performance_profile, stratified_bootstrap
from reflow.wield.store import Run, Store

__all__ = [
    "Comparison",
    "Estimate",
    "Run",
    "Store",
    "compare",
    "iqm",
    "performance_profile",
    "stratified_bootstrap",
]
