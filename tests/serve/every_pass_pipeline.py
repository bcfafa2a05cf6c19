"""A pipeline file with work for every optimizer pass, for the ``reflow serve --explain`` tests."""

from reflow.serve import Flow, Store

WEIGHTS = Store("weights", {i: float(i) for i in range(8)})


def bucket(x: int) -> int:
    return x % 8


def scaled(x: int, weight: float) -> float:
    return x * weight


def model(score: float) -> float:
    return score / 2


def hedged(model: float) -> float:
    return model + 1


flow = Flow("every_pass", {"x": int})
(flow.map(bucket, keep=["x"]).lookup(WEIGHTS, "bucket", column="weight")
 .map(scaled, name="score").map(model, batch=8, max_wait_ms=2, name="model")
 .map(hedged, high_variance=True, replicas=2, name="slow"))
