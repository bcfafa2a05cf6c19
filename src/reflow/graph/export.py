"""Drawing graphs: DOT text for graphviz users, and a self-contained SVG for everyone else.

No graphviz binary is assumed. The SVG uses a small layered layout: a node's column is its level, nodes in a
column are ordered by the mean position of their predecessors (one barycentre sweep, enough to untangle most
dataflow graphs), boxes are coloured by cluster, and edges are cubic curves with arrowheads.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

from reflow.errors import GraphError
from reflow.graph.clustering import Clustering
from reflow.graph.graph import Graph
from reflow.graph.order import level_sets

PALETTE = ("#8dd3c7", "#ffffb3", "#bebada", "#fb8072", "#80b1d3", "#fdb462", "#b3de69", "#fccde5",
           "#d9d9d9", "#bc80bd", "#ccebc5", "#ffed6f")


def _q(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_dot(g: Graph, clustering: Clustering | None = None) -> str:
    """DOT text; with a clustering, each cluster is a ``subgraph cluster_i``."""
    lines = [f"digraph {_q(g.name)} {{", "  rankdir=LR;", "  node [shape=box];"]
    label = {n.name: f"{n.name}\\n{n.op}" for n in g}
    if clustering is not None:
        for i, c in enumerate(clustering.clusters):
            lines.append(f"  subgraph cluster_{i} {{ label={_q(f'worker {i}')};")
            lines += [f"    {_q(n)} [label={_q(label[n])}];" for n in c]
            lines.append("  }")
        placed = {n for c in clustering.clusters for n in c}
    else:
        placed = set()
    lines += [f"  {_q(n)} [label={_q(label[n])}];" for n in g.names if n not in placed]
    lines += [f"  {_q(e.src)} -> {_q(e.dst)} [label={_q(f'{e.src_port}->{e.dst_port}')}];" for e in g.edges]
    lines.append("}")
    return "\n".join(lines) + "\n"


def layout(g: Graph) -> dict[str, tuple[int, int]]:
    """(column, row) of each node: column = level, rows ordered by predecessor barycentre."""
    pos: dict[str, tuple[int, int]] = {}
    for col, names in enumerate(level_sets(g)):
        def bary(n: str) -> float:
            rows = [pos[p][1] for p in g.predecessors(n)]
            return sum(rows) / len(rows) if rows else 0.0
        for row, n in enumerate(sorted(names, key=bary)):  # sorted is stable: ties keep insertion order
            pos[n] = (col, row)
    return pos


def to_svg(g: Graph, clustering: Clustering | None = None, title: str | None = None) -> str:
    """A self-contained SVG drawing of ``g`` (no external tools or fonts needed)."""
    pos = layout(g)
    where = clustering.index() if clustering is not None else {}
    box_w = min(180, max([60] + [7 * max(len(n.name), len(n.op)) + 12 for n in g]))
    box_h, gap_x, gap_y, top = 34, 60, 14, 40 if title else 10
    width = (max((c for c, _ in pos.values()), default=0) + 1) * (box_w + gap_x) + 20
    height = top + (max((r for _, r in pos.values()), default=0) + 1) * (box_h + gap_y) + 20

    def xy(n: str) -> tuple[float, float]:
        c, r = pos[n]
        return 10 + c * (box_w + gap_x), top + r * (box_h + gap_y)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
           '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" markerHeight="6" '
           'orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>',
           f'<rect width="{width}" height="{height}" fill="white"/>']
    if title:
        out.append(f'<text x="10" y="24" font-size="16">{escape(title)}</text>')
    for e in g.edges:
        (x1, y1), (x2, y2) = xy(e.src), xy(e.dst)
        x1, y1, y2 = x1 + box_w, y1 + box_h / 2, y2 + box_h / 2
        mid = (x1 + x2) / 2
        out.append(f'<path d="M{x1:.1f},{y1:.1f} C{mid:.1f},{y1:.1f} {mid:.1f},{y2:.1f} {x2:.1f},{y2:.1f}" '
                   'fill="none" stroke="#555" stroke-width="1" marker-end="url(#arrow)"/>')
    chars = max(4, (box_w - 8) // 7)
    for n in g:
        x, y = xy(n.name)
        fill = PALETTE[where[n.name] % len(PALETTE)] if n.name in where else "#eeeeee"
        extra = f" cluster={where[n.name]}" if n.name in where else ""
        tip = escape(f"{n.name} ({n.op}) cost={n.cost:g}{extra}")
        out.append(f'<g><title>{tip}</title><rect x="{x}" y="{y}" width="{box_w}" height="{box_h}" rx="4" '
                   f'fill="{fill}" stroke="#333"/>'
                   f'<text x="{x + 4}" y="{y + 14}">{escape(n.name[:chars])}</text>'
                   f'<text x="{x + 4}" y="{y + 28}" fill="#555">{escape(n.op[:chars])}</text></g>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def write_graph(g: Graph, path: str | Path, clustering: Clustering | None = None) -> Path:
    """Write ``g`` as SVG or DOT, chosen by the suffix of ``path``."""
    p = Path(path)
    if p.suffix == ".svg":
        p.write_text(to_svg(g, clustering, title=g.name))
    elif p.suffix in (".dot", ".gv"):
        p.write_text(to_dot(g, clustering))
    else:
        raise GraphError(f"cannot write graph {g.name!r} to {p}: use a .svg or .dot suffix")
    return p
