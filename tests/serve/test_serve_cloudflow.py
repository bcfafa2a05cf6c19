"""Cloudflow's own example flows (hydro-project/cloudflow), translated into reflow's API as a user would, each
with a note naming its source file. Cloudflow's operators take ``(self, row)``; here a function names the
columns it reads. Where Cloudflow needs a cluster (Anna, Cloudburst, GPUs, downloaded models), the
translation keeps the flow's shape with small functions of the same meaning."""

from __future__ import annotations

import json
import os
import urllib.request
from typing import NamedTuple

import numpy as np

from reflow.serve import Array, Flow, Row, Store
from reflow.serve.optimize import optimize
from reflow.serve.server import Server


def test_readme_example() -> None:
    """README.md: map a + b into 'sum', keep the even sums."""
    def map_fn(row: Row) -> int:
        return int(row["a"] + row["b"])

    def filter_fn(row: Row) -> bool:
        return bool(row["sum"] % 2 == 0)

    flow = Flow("example-flow", {"a": int, "b": int})
    flow.map(map_fn, names=["sum"]).filter(filter_fn)
    assert flow.run([(1, 2), (1, 3), (1, 4)]).column("sum") == [4]
    with Server(flow, workers=1) as srv:  # and served, as `flow.deploy(); flow.run(table)` would
        req = urllib.request.Request(srv.url + "/", data=json.dumps(
            {"rows": [{"a": 1, "b": 2}, {"a": 1, "b": 3}, {"a": 1, "b": 4}]}).encode(),
            headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            assert json.loads(r.read())["rows"] == [{"sum": 4}]


def test_fusion_benchmark_flow() -> None:
    """flow/benchmarks/fusion.py: a chain of maps passing a bytes column through; fused into one stage."""
    def fusion_op(data: bytes) -> bytes:
        return data

    flow = Flow("fusion-benchmark", {"data": bytes})
    marker = flow
    for _ in range(5):
        marker = marker.map(fusion_op, names=["data"])
    payload = os.urandom(10 * 1024)
    assert flow.run([(payload,)]).rows == [(payload,)]
    assert [sp.members for sp in optimize(flow, 2).stages.values()] == \
        [("fusion_op", "fusion_op_2", "fusion_op_3", "fusion_op_4", "fusion_op_5")]


def test_compete_benchmark_flow() -> None:
    """flow/benchmarks/compete.py: stage1 maps column val, stage2 is a high-variance straggler (a gamma
    sleep; Cloudflow's returns the delay it slept, which makes its answer random: here it returns val),
    stage3 passes val on. Compete races replicas of stage2."""
    def stage1(val: int) -> int:
        return val + 1

    def stage2(val: int, scale: float) -> float:
        return float(val)  # the straggling (a sleep) is what the benchmark measures; see serve_compete.py

    def stage3(val: float) -> float:
        return val

    flow = Flow("compete-benchmark", {"val": int, "scale": float})
    (flow.map(stage1, names=["val"], keep=["scale"])
         .map(stage2, names=["val"], high_variance=True, replicas=3)
         .map(stage3, names=["val"]))
    assert flow.run([(1, 2.0)]).rows == [(2.0,)]
    plan = optimize(flow, 2)
    assert plan.stages["stage2"].in_server and [f"stage2#{i}" in plan.stages for i in (1, 2, 3)] == [True] * 3


def test_locality_benchmark_flow() -> None:
    """flow/benchmarks/locality.py: stage1 names the key of the data a request needs, a dynamic lookup
    fetches it, stage2 sums it. With locality the lookup starts a stage (Cloudflow's breakpoint)."""
    data = Store("data", {f"data-{i}": np.random.default_rng(i).random(1024) for i in range(1, 11)})

    class Keyed(NamedTuple):
        index: int
        key: str

    def stage1(req_num: int) -> Keyed:
        idx = req_num // 10 + 1
        return Keyed(idx, f"data-{idx}")

    def stage2(arr: np.ndarray) -> float:
        return float(np.sum(arr))

    flow = Flow("locality-benchmark", {"req_num": int})
    flow.map(stage1).lookup(data, "key", column="arr").map(stage2, names=["sum"])
    got = flow.run([(i,) for i in range(0, 100, 7)]).column("sum")
    assert got == [float(np.sum(np.random.default_rng(i // 10 + 1).random(1024))) for i in range(0, 100, 7)]
    plan = optimize(flow, 2)
    assert [sp.members for sp in plan.stages.values()] == [("stage1",), ("lookup_data", "stage2")]
    assert plan.stages["lookup_data"].locality is not None


def test_cascade_pipeline_flow() -> None:
    """flow/pipelines/cascade.py: resnet, then inception on the rows resnet is unsure of (filter low_prob),
    left-joined back on the row, then cascade_predict picks the more confident model's class."""
    classes = [f"class-{i}" for i in range(10)]

    class Resnet(NamedTuple):
        img: np.ndarray
        resnet_index: int
        resnet_max_prob: float

    def resnet_model(img: Array("float32", (8,))) -> Resnet:  # type: ignore[valid-type]
        p = np.exp(img) / np.exp(img).sum() * 100
        return Resnet(img, int(p.argmax()), float(p.max()))

    class Incept(NamedTuple):
        incept_index: int
        incept_max_prob: float

    def inceptionv3_model(img: np.ndarray) -> Incept:
        p = np.exp(2 * img) / np.exp(2 * img).sum() * 100
        return Incept(int(p.argmin()), float(p.max()))

    def low_prob(resnet_max_prob: float) -> bool:
        return resnet_max_prob < 85

    def cascade_predict(row: Row) -> str:
        if row["incept_max_prob"] is None:
            return classes[row["resnet_index"]]
        if row["resnet_max_prob"] > row["incept_max_prob"]:
            return classes[row["resnet_index"]]
        return classes[row["incept_index"]]

    flow = Flow("cascade-flow", {"img": Array("float32", (8,))})
    rnet = flow.map(resnet_model, names=["img", "resnet_index", "resnet_max_prob"])
    incept = rnet.filter(low_prob).map(inceptionv3_model, names=["incept_index", "incept_max_prob"])
    rnet.join(incept, how="left").map(cascade_predict, names=["class"])
    sure = np.array([9, 0, 0, 0, 0, 0, 0, 0], np.float32)  # resnet is sure: class-0
    unsure = np.array([0.3, 0.2, 0, 0, 0, 0, 0, 0.1], np.float32)  # inception is surer: its argmin
    assert flow.run([(sure,), (unsure,)]).column("class") == ["class-0", "class-2"]


def test_nmt_pipeline_flow() -> None:
    """flow/pipelines/nmt.py: classify_language, then a french and a german branch (high variance), each
    ending in true_filter, outer-joined."""
    class Lang(NamedTuple):
        language: str
        translate: str

    def classify_language(classify: str, translate: str) -> Lang:
        return Lang("fr" if "Je" in classify or "est" in classify else "de", translate)

    def filter_french(language: str) -> bool:
        return language == "fr"

    def filter_german(language: str) -> bool:
        return language == "de"

    def english_to_french(translate: str) -> str:
        return f"fr({translate})"

    def english_to_german(translate: str) -> str:
        return f"de({translate})"

    def true_filter(row: Row) -> bool:
        return True

    flow = Flow("nmt-flow", {"classify": str, "translate": str})
    classified = flow.map(classify_language)
    french = classified.filter(filter_french).map(english_to_french, names=["french"],
                                                   high_variance=True).filter(true_filter)
    german = classified.filter(filter_german).map(english_to_german, names=["german"],
                                                   high_variance=True).filter(true_filter)
    french.join(german, how="outer")
    got = flow.run([("Je m'appelle Pierre.", "How are you?"), ("Ich bin ein Berliner.", "Hi")])
    assert got.to_records() == [{"french": "fr(How are you?)", "german": None},
                                {"french": None, "german": "de(Hi)"}]


def test_video_pipeline_flow() -> None:
    """flow/pipelines/video.py: yolov3 tags each frame's class, transform, then the people and the cars go
    to resnet each, outer-joined."""
    class Tagged(NamedTuple):
        frame: np.ndarray
        cls: str

    def yolov3(frame: np.ndarray) -> Tagged:
        return Tagged(frame, ("person", "car", "NONE")[int(frame.sum()) % 3])

    def transform(frame: np.ndarray, cls: str) -> Tagged:
        return Tagged(frame / 255.0, cls)

    def people_filter(cls: str) -> bool:
        return cls == "person"

    def cars_filter(cls: str) -> bool:
        return cls == "car"

    def resnet_model(frame: np.ndarray) -> str:
        return f"kind-{round(frame.sum() * 255) % 4}"

    flow = Flow("video-flow", {"frame": np.ndarray})
    imgs = flow.map(yolov3).map(transform)
    people = imgs.filter(people_filter).map(resnet_model, names=["people-class"])
    cars = imgs.filter(cars_filter).map(resnet_model, names=["vehicle-class"])
    people.join(cars, how="outer")
    frames = [np.array([s, 0.0, 0.0]) for s in range(5)]  # person, car, NONE, person, car
    got = flow.run([(f,) for f in frames])
    assert got.to_records() == [{"people-class": "kind-0", "vehicle-class": None},
                                {"people-class": "kind-3", "vehicle-class": None},
                                {"people-class": None, "vehicle-class": "kind-1"},
                                {"people-class": None, "vehicle-class": "kind-0"}]
    assert got.keys == [0, 3, 1, 4]


def test_recommender_pipeline_flow() -> None:
    """flow/pipelines/recommender.py: lookup the user, pick_category from the recent clicks, lookup the
    category's products, get_topk by score."""
    rng = np.random.default_rng(0)
    users = Store("users", {str(i): rng.standard_normal(16) for i in range(20)})
    sets = Store("sets", {f"category-{i}": rng.standard_normal((50, 16)) for i in range(10)})

    class Pick(NamedTuple):
        weights: np.ndarray
        category: str

    def pick_category(recent: np.ndarray, user_vec: np.ndarray) -> Pick:
        return Pick(user_vec, "category-" + str(int(np.sum(recent)) % 10))

    class Top(NamedTuple):
        first: int
        second: int
        third: int

    def get_topk(weights: np.ndarray, products: np.ndarray) -> Top:
        scores = (products @ weights).argsort()[-3:][::-1]
        return Top(int(scores[0]), int(scores[1]), int(scores[2]))

    flow = Flow("recsys-flow", {"user": str, "recent": np.ndarray})
    (flow.lookup(users, "user", column="user_vec").map(pick_category)
         .lookup(sets, "category", column="products").map(get_topk))
    recent = np.array([1, 2, 3, 4, 5])
    got = flow.run([("7", recent)]).rows[0]
    want = (sets.get_many(["category-5"], "t")[0] @ users.get_many(["7"], "t")[0]).argsort()[-3:][::-1]
    assert got == tuple(int(v) for v in want)
