"""Serving: typed dataflow pipelines for inference (reflow's take on FlowServe / Cloudflow).

Build a ``Flow`` of operators over typed ``Table``s, try it with ``flow.run(table)``, and serve it with
``reflow serve pipeline.py``. See docs/serve.md.
"""

from reflow.serve.flow import Flow, Grouped, Stream
from reflow.serve.store import Store
from reflow.serve.table import Row, Schema, Table
from reflow.serve.types import ANY_TYPE, Array, ColumnType, Tensor

__all__ = ["ANY_TYPE", "Array", "ColumnType", "Flow", "Grouped", "Row", "Schema", "Store", "Stream", "Table",
           "Tensor"]
