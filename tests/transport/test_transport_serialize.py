"""Adaptive serialization: the encoding chosen per message, and exact round trips (numpy is the oracle)."""

from __future__ import annotations

import logging
import threading

import numpy as np
import pytest
import torch

from reflow.errors import SerializationError
from reflow.transport.serialize import Stats, decode, encode


def roundtrip(value: object, stats: Stats | None = None) -> tuple[str, object]:
    enc = encode(value, stats)
    return enc.kind, decode(enc.kind, enc.header, [bytearray(b) for b in enc.buffers])


@pytest.mark.parametrize("dtype", ["float32", "int64", "uint8", "bool", "complex128", ">i4"])
def test_contiguous_arrays_go_raw_and_round_trip(dtype: str) -> None:
    arr = (np.arange(24) % 3).astype(dtype).reshape(2, 3, 4)
    kind, back = roundtrip(arr)
    assert kind == "raw"
    assert isinstance(back, np.ndarray) and back.dtype == arr.dtype and back.shape == arr.shape
    np.testing.assert_array_equal(back, arr)


def test_structured_and_datetime_arrays_keep_their_dtype() -> None:
    rec = np.zeros(3, dtype=[("a", "<i4"), ("b", "<f8")])
    rec["a"], rec["b"] = [1, 2, 3], [0.5, 1.5, 2.5]
    days = np.array(["2020-01-01", "2021-06-30"], dtype="datetime64[D]")
    for arr in (rec, days):  # alone (raw) and in a dict (arrays)
        kind, back = roundtrip(arr)
        dict_kind, in_dict = roundtrip({"x": arr, "pad": np.zeros(2)})
        assert kind == "raw" and dict_kind == "arrays" and isinstance(in_dict, dict)
        for got in (back, in_dict["x"]):
            assert isinstance(got, np.ndarray) and got.dtype == arr.dtype  # '|V12' would lose the fields
            np.testing.assert_array_equal(got, arr)


def test_raw_decode_is_a_view_not_a_copy() -> None:
    enc = encode(np.arange(8, dtype=np.int32))
    buf = bytearray(enc.buffers[0])
    back = decode(enc.kind, enc.header, [buf])
    buf[0] = 99
    assert back[0] == 99


def test_tensor_goes_raw_and_comes_back_a_tensor() -> None:
    t = torch.arange(12, dtype=torch.float64).reshape(3, 4)
    kind, back = roundtrip(t)
    assert kind == "raw" and isinstance(back, torch.Tensor)
    assert torch.equal(back, t)


def test_structure_of_arrays_goes_out_of_band() -> None:
    value = {"obs": np.ones((50, 30), np.float32), "ids": [1, 2], "act": np.arange(400), "tiny": np.ones(3)}
    enc = encode(value)
    assert enc.kind == "oob" and len(enc.buffers) == 2  # "tiny" stays in band
    assert len(enc.header) < 1000  # the array data is not inside the pickle stream
    back = decode(enc.kind, enc.header, [bytearray(b) for b in enc.buffers])
    assert back["ids"] == [1, 2]
    np.testing.assert_array_equal(back["obs"], value["obs"])
    np.testing.assert_array_equal(back["act"], value["act"])
    np.testing.assert_array_equal(back["tiny"], value["tiny"])


def test_structure_of_small_arrays_is_one_pickle() -> None:
    kind, back = roundtrip((np.arange(4), np.zeros(2)))
    assert kind == "small"
    np.testing.assert_array_equal(back[0], np.arange(4))  # type: ignore[index]


def test_flat_dict_of_arrays_is_raw_per_entry_and_keeps_order_and_types() -> None:
    value = {"obs": np.ones((50, 30), np.float32), "act": torch.arange(6), "tiny": np.ones(3, ">i2"),
             "none": np.zeros((0, 4))}
    enc = encode(value)
    assert enc.kind == "arrays" and len(enc.buffers) == 4
    buffers = [bytearray(b) for b in enc.buffers]
    back = decode(enc.kind, enc.header, buffers)
    assert list(back) == list(value) and isinstance(back["act"], torch.Tensor)
    for k in ("obs", "tiny", "none"):
        assert back[k].dtype == value[k].dtype and back[k].shape == value[k].shape
        np.testing.assert_array_equal(back[k], value[k])
    assert torch.equal(back["act"], value["act"])
    buffers[0][:4] = np.float32(7).tobytes()  # a view of the buffers, not a copy
    assert back["obs"][0, 0] == 7


@pytest.mark.parametrize("value", [
    {"a": np.zeros(3), "b": [1]},                 # a value that is not an array
    {1: np.zeros(3)},                             # a key that is not a string
    {"a": np.array([None, 1], dtype=object)},     # object arrays need pickle
    {},                                           # nothing to send raw
    {f"k{i}": np.zeros(1) for i in range(65)},    # more entries than MAX_ARRAYS
])
def test_other_dicts_are_pickled(value: dict[object, object]) -> None:
    kind, back = roundtrip(value)
    assert kind in ("small", "oob") and isinstance(back, dict) and list(back) == list(value)


def test_arrays_headers_are_cached_without_mixing_layouts() -> None:
    a = {"x": np.zeros((2, 3), np.float32), "y": np.zeros(2, np.int64)}
    b = {"y": np.zeros((2, 3), np.float32), "x": np.zeros(2, np.int64)}  # same arrays, keys swapped
    for _ in range(2):
        for value in (a, b):
            _, back = roundtrip(value)
            assert {k: (v.dtype, v.shape) for k, v in back.items()} == {  # type: ignore[attr-defined]
                k: (v.dtype, v.shape) for k, v in value.items()}


@pytest.mark.parametrize("value", [0, "hello", {"a": [1, 2.5, None]}, (1, b"xy"), None])
def test_small_plain_data_is_one_pickle(value: object) -> None:
    kind, back = roundtrip(value)
    assert kind == "small" and back == value


def test_noncontiguous_array_is_made_contiguous_and_counted() -> None:
    stats = Stats()
    base = np.arange(40, dtype=np.float64).reshape(5, 8)
    view = base[:, ::3]
    kind, back = roundtrip(view, stats)
    assert kind == "raw" and stats.copied_noncontiguous == 1
    np.testing.assert_array_equal(back, view)


def test_stats_count_every_kind() -> None:
    stats = Stats()
    for v in [np.zeros(3), [np.zeros(3000)], {"x": np.zeros(3000)}, 5, 6]:
        encode(v, stats)
    assert dict(stats.kinds) == {"raw": 1, "oob": 1, "arrays": 1, "small": 2}


def test_choice_is_logged_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="reflow.transport"):
        encode({"x": np.zeros(3000)})
        encode([np.zeros(3000)])
    messages = [r.getMessage() for r in caplog.records]
    assert any("as arrays" in m for m in messages) and any("as oob" in m for m in messages)


def test_unpicklable_payload_names_its_type() -> None:
    with pytest.raises(SerializationError, match=r"_thread\.lock"):
        encode({"lock": threading.Lock()})


def test_object_arrays_are_pickled_not_sent_raw() -> None:
    arr = np.array([{"a": 1}, "s"], dtype=object)
    kind, back = roundtrip(arr)
    assert kind == "small" and list(back) == list(arr)  # type: ignore[call-overload]


def test_raw_headers_are_cached_per_layout_without_mixing_layouts() -> None:
    arrays = [np.zeros((2, 3), np.float32), np.zeros((3, 2), np.float32), np.zeros((2, 3), np.int32)]
    for _ in range(2):  # the second pass reads every header from the caches
        for a in arrays:
            kind, back = roundtrip(a)
            assert isinstance(back, np.ndarray) and (back.dtype, back.shape) == (a.dtype, a.shape)
        kind, back = roundtrip(torch.zeros(2, 3))  # same dtype and shape as arrays[0], but a tensor
        assert kind == "raw" and isinstance(back, torch.Tensor) and back.shape == (2, 3)
