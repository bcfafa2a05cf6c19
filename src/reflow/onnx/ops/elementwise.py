"""Elementwise ops: unary math and activations, broadcasting binary ops, variadic ops, casts."""

from __future__ import annotations

from collections.abc import Callable

from reflow.errors import UnsupportedOpError
from reflow.onnx.ops import Call, lit, no_flops, per_output_element, register

# --- unary: ONNX op -> torch function applied to input 0 (one line each) ------------------------------------
UNARY: dict[str, str] = {
    "Abs": "torch.abs",
    "Neg": "torch.neg",
    "Exp": "torch.exp",
    "Log": "torch.log",
    "Sqrt": "torch.sqrt",
    "Reciprocal": "torch.reciprocal",
    "Floor": "torch.floor",
    "Ceil": "torch.ceil",
    "Round": "torch.round",
    "Sign": "torch.sign",
    "Sin": "torch.sin",
    "Cos": "torch.cos",
    "Tan": "torch.tan",
    "Asin": "torch.asin",
    "Acos": "torch.acos",
    "Atan": "torch.atan",
    "Sinh": "torch.sinh",
    "Cosh": "torch.cosh",
    "Asinh": "torch.asinh",
    "Acosh": "torch.acosh",
    "Atanh": "torch.atanh",
    "Tanh": "torch.tanh",
    "Sigmoid": "torch.sigmoid",
    "Relu": "torch.relu",
    "Erf": "torch.erf",
    "Not": "torch.logical_not",
    "IsNaN": "torch.isnan",
    "Softsign": "F.softsign",
    "HardSwish": "F.hardswish",
    "Mish": "F.mish",
}


def _unary(fn: str) -> Callable[[Call], str]:
    def lower(c: Call) -> str:
        return f"{fn}({c.arg(0)})"

    return lower


def _binary(template: str) -> Callable[[Call], str]:
    def lower(c: Call) -> str:
        return template.format(a=c.arg(0), b=c.arg(1))

    return lower


for _op, _fn in UNARY.items():
    register(_op, _unary(_fn), per_output_element(4.0 if "." in _fn else 1.0))

register("Identity", lambda c: c.arg(0), no_flops)
register("LeakyRelu", lambda c: f"F.leaky_relu({c.arg(0)}, {lit(c.attrs.get('alpha', 0.01))})")
register("Elu", lambda c: f"F.elu({c.arg(0)}, {lit(c.attrs.get('alpha', 1.0))})")
register("Celu", lambda c: f"F.celu({c.arg(0)}, {lit(c.attrs.get('alpha', 1.0))})")
register(
    "Selu",
    lambda c: (
        f"{lit(c.attrs.get('gamma', 1.0507009873554805))} * torch.where({c.arg(0)} > 0, {c.arg(0)}, "
        f"{lit(c.attrs.get('alpha', 1.6732632423543772))} * torch.expm1({c.arg(0)}))"
    ),
)
register("Softplus", lambda c: f"torch.log1p(torch.exp({c.arg(0)}))")
register(
    "HardSigmoid",
    lambda c: (
        f"torch.clamp({lit(c.attrs.get('alpha', 0.2))} * {c.arg(0)} + {lit(c.attrs.get('beta', 0.5))}, 0, 1)"
    ),
)
register(
    "ThresholdedRelu",
    lambda c: (
        f"torch.where({c.arg(0)} > {lit(c.attrs.get('alpha', 1.0))}, {c.arg(0)}, "
        f"torch.zeros_like({c.arg(0)}))"
    ),
)
register("PRelu", lambda c: f"torch.where({c.arg(0)} < 0, {c.arg(0)} * {c.arg(1)}, {c.arg(0)})")
register("Gelu", lambda c: f"F.gelu({c.arg(0)}, approximate={c.attrs.get('approximate', 'none')!r})")
register(
    "IsInf",
    lambda c: (
        f"onnx_isinf({c.arg(0)}, {c.attrs.get('detect_negative', 1)}, {c.attrs.get('detect_positive', 1)})"
    ),
)
register(
    "Clip",
    lambda c: (
        f"onnx_clip({c.arg(0)}, {lit(c.attrs.get('min', -3.4028234663852886e38))}, "
        f"{lit(c.attrs.get('max', 3.4028234663852886e38))})"
        if c.opset < 11
        else f"onnx_clip({c.arg(0)}, {c.arg(1)}, {c.arg(2)})"
    ),
)

# --- binary, broadcasting ----------------------------------------------------------------------------------
BINARY: dict[str, str] = {
    "Add": "{a} + {b}",
    "Sub": "{a} - {b}",
    "Mul": "{a} * {b}",
    "Div": "onnx_div({a}, {b})",
    "Pow": "torch.pow({a}, {b}).to({a}.dtype)",
    "Equal": "torch.eq({a}, {b})",
    "Less": "torch.lt({a}, {b})",
    "Greater": "torch.gt({a}, {b})",
    "LessOrEqual": "torch.le({a}, {b})",
    "GreaterOrEqual": "torch.ge({a}, {b})",
    "And": "torch.logical_and({a}, {b})",
    "Or": "torch.logical_or({a}, {b})",
    "Xor": "torch.logical_xor({a}, {b})",
    "BitwiseAnd": "torch.bitwise_and({a}, {b})",
    "BitwiseOr": "torch.bitwise_or({a}, {b})",
    "BitwiseXor": "torch.bitwise_xor({a}, {b})",
}
for _op, _tmpl in BINARY.items():
    register(_op, _binary(_tmpl))
register("BitwiseNot", lambda c: f"torch.bitwise_not({c.arg(0)})")
register("Mod", lambda c: f"onnx_mod({c.arg(0)}, {c.arg(1)}, {c.attrs.get('fmod', 0)})")
register("Where", lambda c: f"torch.where({c.arg(0)}, {c.arg(1)}, {c.arg(2)})")


# --- variadic ----------------------------------------------------------------------------------------------
def _fold(fn: str, args: tuple[str, ...]) -> str:
    expr = args[0]
    for a in args[1:]:
        expr = f"{fn}({expr}, {a})"
    return expr


register("Sum", lambda c: " + ".join(c.args))
register("Mean", lambda c: f"({' + '.join(c.args)}) / {len(c.args)}")
register("Max", lambda c: _fold("torch.maximum", c.args))
register("Min", lambda c: _fold("torch.minimum", c.args))

# --- casts -------------------------------------------------------------------------------------------------
TORCH_DTYPES: dict[int, str] = {
    1: "torch.float32",
    2: "torch.uint8",
    3: "torch.int8",
    4: "torch.uint16",
    5: "torch.int16",
    6: "torch.int32",
    7: "torch.int64",
    9: "torch.bool",
    10: "torch.float16",
    11: "torch.float64",
    12: "torch.uint32",
    13: "torch.uint64",
    16: "torch.bfloat16",
}


def _cast(c: Call) -> str:
    to = int(c.attrs["to"])
    if to not in TORCH_DTYPES:
        raise UnsupportedOpError(f"Cast to ONNX data type {to} is not supported: torch has no such dtype")
    return f"{c.arg(0)}.to({TORCH_DTYPES[to]})"


register("Cast", _cast, no_flops)
register("CastLike", lambda c: f"{c.arg(0)}.to({c.arg(1)}.dtype)", no_flops)
