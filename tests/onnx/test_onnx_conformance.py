"""The ONNX conformance node tests (onnx.backend.test) against the reflow backend, one test per op.

The cases come from ``onnx.backend.test.case.node.collect_testcases`` (the generators behind the suite's data
files, which the onnx wheel does not ship) and are compared with ``BackendTest.assert_similar_outputs``,
as the suite's own runner does. Each op's known failures are listed with the reason; a test fails on any
other failure
(and on a known failure that starts passing, so the list stays honest).
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from functools import cache
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from reflow.onnx.backend import ReflowBackend
from reflow.onnx.ops import supported_ops

UNSIGNED = "torch has no CPU kernels for this op on uint16/uint32/uint64"
KNOWN_FAILURES: dict[str, str] = {
    **{
        f"test_{op}_{t}": UNSIGNED
        for op in ("add", "sub", "div", "mod", "max", "min", "greater", "less", "greater_equal", "less_equal")
        for t in ("uint16", "uint32", "uint64")
    },
    "test_bitwise_not_3d": UNSIGNED,
    "test_top_k_uint64": UNSIGNED,
    "test_averagepool_2d_precomputed_same_upper": "auto_pad SAME with count_include_pad=0 is not implemented",
    "test_averagepool_2d_same_upper": "auto_pad SAME with count_include_pad=0 is not implemented",
    "test_averagepool_2d_same_lower": "auto_pad SAME with count_include_pad=0 is not implemented",
    "test_batchnorm_example_training_mode": "training mode is not supported (inference only)",
    "test_batchnorm_epsilon_training_mode": "training mode is not supported (inference only)",
    "test_training_dropout": "training-mode dropout is random; reflow runs inference (identity)",
    "test_training_dropout_default": "training-mode dropout is random; reflow runs inference (identity)",
    "test_training_dropout_default_mask": "training-mode dropout is random; reflow runs inference",
    "test_training_dropout_mask": "training-mode dropout is random; reflow runs inference (identity)",
    "test_averagepool_2d_ceil_last_window_starts_on_pad": "torch drops ceil-mode windows starting on padding",
    "test_maxpool_with_argmax_2d_precomputed_strides": "MaxPool indices use torch's per-plane numbering",
    "test_reduce_max_empty_set": "torch cannot reduce an empty dimension with max/min",
    "test_reduce_max_empty_set_bool": "torch cannot reduce an empty dimension with max/min",
    "test_reduce_min_empty_set": "torch cannot reduce an empty dimension with max/min",
    "test_top_k_same_values": "torch.topk breaks ties differently from ONNX (lowest index first)",
    "test_top_k_same_values_largest": "torch.topk breaks ties differently from ONNX (lowest index first)",
    "test_top_k_same_values_2d": "torch.topk breaks ties differently from ONNX (lowest index first)",
    "test_equal_string": "string tensors are not supported",
    "test_equal_string_broadcast": "string tensors are not supported",
}


def _known(name: str) -> str | None:
    if name in KNOWN_FAILURES:
        return KNOWN_FAILURES[name]
    if name.startswith("test_averagepool") and "dilations" in name:
        return "torch's avg_pool has no dilation"
    if "bfloat16" in name.lower():
        return "numpy cannot hand bfloat16 arrays to torch"
    if name.startswith(("test_cast_", "test_castlike_")) and any(
        t in name for t in ("FLOAT8", "FLOAT4", "INT4", "UINT4", "STRING", "INT2", "UINT2", "FLOAT8E")
    ):
        return "float8/float4/int4/string types have no torch CPU equivalent"
    return None


@cache
def cases_by_op() -> dict[str, list[Any]]:
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = collect_testcases()
    out: dict[str, list[Any]] = defaultdict(list)
    for tc in cases:
        if "_expanded" in tc.name:
            continue
        ops = {n.op_type for n in tc.model.graph.node}
        if len(ops) == 1:
            out[ops.pop()].append(tc)
    return dict(out)


def _array(x: Any) -> np.ndarray[Any, Any]:
    return numpy_helper.to_array(x) if isinstance(x, onnx.TensorProto) else np.asarray(x)


def run_case(tc: Any) -> None:
    from onnx.backend.test.runner import Runner

    rep = ReflowBackend.prepare(tc.model)
    for inputs, outputs in tc.data_sets:
        got = rep.run([_array(x) for x in inputs])
        Runner.assert_similar_outputs([_array(y) for y in outputs], list(got), rtol=tc.rtol, atol=tc.atol)


@pytest.mark.parametrize("op", supported_ops())
def test_node_conformance(op: str) -> None:
    cases = cases_by_op().get(op, [])
    failed: dict[str, str] = {}
    for tc in cases:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                run_case(tc)
        except Exception as e:  # a conformance failure, whatever its kind
            failed[tc.name] = f"{type(e).__name__}: {str(e)[:200]}"
    unexpected = {k: v for k, v in failed.items() if _known(k) is None}
    assert not unexpected, f"{op}: {len(unexpected)} of {len(cases)} conformance cases fail: {unexpected}"
    fixed = [tc.name for tc in cases if tc.name in KNOWN_FAILURES and tc.name not in failed]
    assert not fixed, f"{op}: known failures now pass, drop them from KNOWN_FAILURES: {fixed}"
