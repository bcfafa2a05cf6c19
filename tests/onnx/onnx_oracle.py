"""Helpers shared by the ONNX tests: onnxruntime is the independent oracle."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx


def ort_run(model: onnx.ModelProto, inputs: dict[str, np.ndarray[Any, Any]]) -> list[np.ndarray[Any, Any]]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return list(sess.run(None, inputs))


def rel_err(ref: np.ndarray[Any, Any], got: np.ndarray[Any, Any]) -> float:
    """max |ref - got| / max |ref|: the relative error the issue bounds by 1e-4."""
    return float(np.abs(ref - got).max() / max(float(np.abs(ref).max()), 1e-12))


def exec_generated(source: str, name: str = "generated") -> dict[str, Any]:
    """Execute a generated module's source in a fresh namespace (not as __main__)."""
    ns: dict[str, Any] = {"__name__": f"reflow_test_{name}"}
    exec(compile(source, f"<{name}>", "exec"), ns)
    return ns
