"""The op table: every rule lowers to valid Python; unknown ops are clear errors."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from reflow.errors import UnsupportedOpError
from reflow.onnx import import_model
from reflow.onnx.eager import compile_call, lower_call
from reflow.onnx.ops import rule, supported_ops


def test_light_model_ops_are_all_supported() -> None:
    needed = {
        "Conv",
        "BatchNormalization",
        "Relu",
        "MaxPool",
        "AveragePool",
        "GlobalAveragePool",
        "LRN",
        "Concat",
        "Sum",
        "Add",
        "Mul",
        "Gemm",
        "MatMul",
        "Reshape",
        "Flatten",
        "Transpose",
        "Softmax",
        "Dropout",
        "Unsqueeze",
        "ConstantOfShape",
    }
    assert needed <= set(supported_ops())
    assert len(supported_ops()) > 100


def test_unknown_op_names_op_and_node() -> None:
    with pytest.raises(UnsupportedOpError, match=r"'FancyOp'.*'my_node'"):
        rule("FancyOp", "my_node")


def test_import_of_unsupported_op_fails_naming_it() -> None:
    node = helper.make_node("NonMaxSuppression", ["x", "s"], ["y"], name="nms")
    g = helper.make_graph(
        [node],
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 4]),
            helper.make_tensor_value_info("s", TensorProto.FLOAT, [1, 1, 4]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.INT64, None)],
    )
    with pytest.raises(UnsupportedOpError, match=r"NonMaxSuppression.*nms"):
        import_model(helper.make_model(g))


def test_lowering_matches_numpy_for_a_broadcasting_binary_op() -> None:
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.array([1.0, 2.0, 4.0], dtype=np.float32)
    fn = compile_call("Div", [True, True], {}, 1, 17)
    (y,) = fn(torch.from_numpy(a), torch.from_numpy(b))
    np.testing.assert_allclose(y.numpy(), a / b)


def test_integer_div_truncates_like_onnx() -> None:
    fn = compile_call("Div", [True, True], {}, 1, 17)
    (y,) = fn(torch.tensor([-7, 7]), torch.tensor([2, 2]))
    assert y.tolist() == [-3, 3]


def max_pool_model(attrs: dict[str, object]) -> onnx.ModelProto:
    """One MaxPool node with ``attrs`` on a float input of any shape."""
    graph = helper.make_graph(
        [helper.make_node("MaxPool", ["x"], ["y"], **attrs)],
        "pool",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "pads", "ceil"),
    [
        (112, 3, 2, (0, 0, 1, 1), 0),  # the light inception models: pad only the end
        (13, 3, 2, (0, 0, 1, 1), 0),
        (12, 3, 2, (1, 1, 0, 0), 0),
        (11, 2, 2, (0, 0, 1, 1), 0),
        (10, 3, 1, (0, 1, 2, 1), 0),
        (9, 3, 2, (0, 0, 1, 1), 1),
        (14, 5, 3, (2, 0, 2, 1), 1),
    ],
)
def test_max_pool_with_asymmetric_pads_matches_onnxruntime(
    size: int, kernel: int, stride: int, pads: tuple[int, ...], ceil: int
) -> None:
    from onnx_oracle import ort_run

    attrs: dict[str, object] = {
        "kernel_shape": [kernel, kernel],
        "strides": [stride, stride],
        "pads": list(pads),
        "ceil_mode": ceil,
    }
    x = np.random.default_rng(size).standard_normal((1, 3, size, size)).astype(np.float32)
    (ref,) = ort_run(max_pool_model(attrs), {"x": x})
    (got,) = compile_call("MaxPool", [True], attrs, 1, 17)(torch.from_numpy(x))
    np.testing.assert_array_equal(got.numpy(), ref)


@pytest.mark.parametrize(
    ("shape", "kernel"),
    [
        ((2, 5, 28, 28), (3, 3)),  # GoogLeNet's branch pools
        ((1, 3, 9, 7), (5, 3)),
        ((1, 2, 2, 3), (5, 5)),  # the window wider than the input
        ((2, 4, 11), (3,)),
        ((1, 2, 5, 6, 7), (3, 3, 3)),
    ],
)
@pytest.mark.parametrize("channels_last", [False, True])
def test_centred_stride_one_max_pools_run_as_running_maxima_and_match_onnxruntime(
    shape: tuple[int, ...], kernel: tuple[int, ...], channels_last: bool
) -> None:
    from onnx_oracle import ort_run

    radius = [k // 2 for k in kernel]
    attrs: dict[str, object] = {"kernel_shape": list(kernel), "pads": radius + radius, "ceil_mode": 1}
    assert "onnx_window_max" in lower_call("MaxPool", ["x"], attrs, 1, 17)
    x = np.random.default_rng(len(shape)).standard_normal(shape).astype(np.float32)
    (ref,) = ort_run(max_pool_model(attrs), {"x": x})
    tx = torch.from_numpy(x)
    if channels_last and tx.dim() == 4:
        tx = tx.contiguous(memory_format=torch.channels_last)
    (got,) = compile_call("MaxPool", [True], attrs, 1, 17)(tx)
    assert got.shape == ref.shape
    np.testing.assert_array_equal(got.numpy(), ref)
    assert torch.equal(tx, torch.from_numpy(x))  # the input is not written


def test_other_pools_keep_torchs_kernels() -> None:
    def lowered(op: str, attrs: dict[str, object], n_out: int = 1) -> str:
        return lower_call(op, ["x"], attrs, n_out, 17)

    assert "onnx_window_max" not in lowered("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2]})
    assert "onnx_window_max" not in lowered("MaxPool", {"kernel_shape": [3, 3], "pads": [0, 0, 2, 2]})
    assert "onnx_window_max" not in lowered("MaxPool", {"kernel_shape": [2, 2]})
    centred = {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}
    assert "onnx_window_max" not in lowered("MaxPool", centred, n_out=2)  # the indices are wanted
    # a running sum was slower than torch's average pooling at batch 8 (benchmarks/onnx_conv_kernels.py)
    assert lowered("AveragePool", centred).startswith("F.avg_pool2d(")
