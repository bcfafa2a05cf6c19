"""ONNX front end: import a model, cost its ops, cluster it for P threads, generate parallel PyTorch code.

Pipeline (reflow's take on Ramiel, Das & Rauchwerger, IPDPS 2024)::

    import_model  ->  profile (or flop_costs)  ->  make_plan  ->  generate  ->  model_par.py + model_par.pt

``parallelize`` runs it all; ``reflow parallelize`` is the command line. torch and onnx are imported when this
package is, so import it only where they are needed.
"""

from reflow.onnx.importer import ImportedModel, import_model
from reflow.onnx.ops import supported_ops

__all__ = ["ImportedModel", "import_model", "supported_ops"]
