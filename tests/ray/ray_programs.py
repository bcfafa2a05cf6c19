"""Programs and helpers for the Ray executor tests (a module of its own: Ray sends it to the nodes by value).

The programs under test come from elsewhere (the examples, the process executor's and the determinism
tests' programs); this module only adds what spreads them over nodes and what compares their traces."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from reflow.reactor import Reactor

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "reactors"


def comparable(trace: list[Any]) -> list[Any]:
    """A trace with arrays replaced by (dtype, shape, bytes), so traces compare exactly."""
    def norm(v: Any) -> Any:
        return (v.dtype.str, v.shape, v.tobytes()) if isinstance(v, np.ndarray) else v
    return [(e.tag, e.reaction, tuple((k, norm(v)) for k, v in e.writes)) for e in trace]


def reactors_under(main: Reactor) -> list[Reactor]:
    """Every reactor below ``main`` (not ``main`` itself), depth first."""
    out: list[Reactor] = []
    for child in main.children:
        out += [child, *reactors_under(child)]
    return out


def round_robin(main: Reactor, nodes: int) -> dict[str, int]:
    """A pin that puts ``main``'s children (with their subtrees) on nodes 0, 1, ..., nodes-1, 0, ..."""
    return {child.path: i % nodes for i, child in enumerate(main.children)}


def scatter(main: Reactor, nodes: int) -> dict[str, int]:
    """A pin that deals every reactor below ``main`` out over the nodes, so that nearly every connection
    crosses nodes (the hardest case for keeping the trace)."""
    return {r.path: (i + 1) % nodes for i, r in enumerate(reactors_under(main))}
