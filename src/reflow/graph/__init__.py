"""The graph IR and its passes. Imports nothing else of reflow but ``reflow.errors``."""

from reflow.graph.graph import ANY, Edge, Graph, Node, Port, ports
from reflow.graph.order import level_sets, levels, topo_order

__all__ = ["ANY", "Edge", "Graph", "Node", "Port", "level_sets", "levels", "ports", "topo_order"]
