"""The graph IR and its passes. Imports nothing else of reflow but ``reflow.errors``."""

from reflow.graph.cloning import clone_shared_nodes
from reflow.graph.clustering import Clustering, linear_clustering, single_cluster, singleton_clusters
from reflow.graph.contract import contract, cycle_groups
from reflow.graph.cost import NO_COMM, CommModel
from reflow.graph.critical_path import bottom_levels, critical_path, top_levels
from reflow.graph.cse import common_subexpression_elimination
from reflow.graph.dce import dead_code_elimination
from reflow.graph.export import to_dot, to_svg, write_graph
from reflow.graph.fusion import fuse_chains
from reflow.graph.graph import ANY, Edge, Graph, Node, Port, ports
from reflow.graph.interp import evaluate
from reflow.graph.merge import merge_clusters
from reflow.graph.order import level_sets, levels, topo_order
from reflow.graph.simulate import Schedule, simulate
from reflow.graph.verify import run_passes, verify

__all__ = ["ANY", "NO_COMM", "Clustering", "CommModel", "Edge", "Graph", "Node", "Port", "Schedule",
           "bottom_levels", "clone_shared_nodes", "common_subexpression_elimination", "contract",
           "critical_path", "cycle_groups",
           "dead_code_elimination", "evaluate", "fuse_chains", "level_sets", "levels", "linear_clustering",
           "merge_clusters", "ports", "run_passes", "simulate", "single_cluster", "singleton_clusters",
           "to_dot", "to_svg", "top_levels", "topo_order", "verify", "write_graph"]
