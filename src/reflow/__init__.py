"""reflow: a deterministic dataflow system for machine learning.

One graph IR (``reflow.graph``), one set of passes, several front ends (reactors, ONNX, RL, serving, recurrent
tensors) and executors (threads, processes over shared memory, generated code, Ray).
"""

from reflow.errors import ReflowError
from reflow.graph import Graph, Node

__version__ = "0.1.0"
__all__ = ["Graph", "Node", "ReflowError", "__version__"]
