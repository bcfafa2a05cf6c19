"""Loading a pipeline file: a Python file that defines ``flow`` (a ``Flow``, or a function returning one).

The file is imported as a module (``reflow.runtime.loading.import_file``). Its functions and classes reach
the worker processes *by value* (cloudpickle), so a worker does not import the file again: a table or model
the file builds at import time is built once, in the server.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reflow.errors import PipelineLoadError
from reflow.runtime.loading import import_file
from reflow.serve.flow import Flow


def load_pipeline(path: str | Path) -> Flow:
    """The flow defined by pipeline file ``path``."""
    import cloudpickle

    file = Path(path)
    module = import_file(file, "reflow_pipeline", "pipeline file", PipelineLoadError)
    cloudpickle.register_pickle_by_value(module)
    flow: Any = getattr(module, "flow", None)
    if callable(flow) and not isinstance(flow, Flow):
        flow = flow()
    if not isinstance(flow, Flow):
        raise PipelineLoadError(f"{file} defines no flow: give it a top-level `flow = Flow(...)` (or a "
                                f"function `flow()` returning one); found {type(flow).__name__}")
    return flow
