"""An image cascade: a small CNN answers; only when it is unsure does a large CNN look too.

The paper's first pipeline (Cloudflow's flow/pipelines/cascade.py: ResNet, then Inception-v3 when ResNet's
confidence is low), CPU-sized: 32x32 images, two CNNs built in code with fixed seeds. The small model's
answer is joined (left join, on the row) with the large model's, which exists only for the unsure rows; the
last stage keeps the more confident of the two. Both models run on padded batches of 8, so a request's
answer does not depend on its batch-mates.

    reflow serve examples/serve/cascade.py --port 8000
    python examples/serve/cascade.py          # runs the flow in-process on a few random images
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from reflow.serve import Array, Flow

IMAGE = Array("float32", (3, 32, 32))
CLASSES = 10
THRESHOLD = 0.3  # the small model's confidence below which the large one is asked


def _cnn(widths: tuple[int, ...], seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    layers: list[torch.nn.Module] = []
    c = 3
    for w in widths:
        layers += [torch.nn.Conv2d(c, w, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2)]
        c = w
    side = 32 >> len(widths)
    layers += [torch.nn.Flatten(), torch.nn.Linear(c * side * side, CLASSES)]
    return torch.nn.Sequential(*layers).eval()


class Guess(NamedTuple):
    label: int
    conf: float


class Model:
    """A CNN classifier, built once per worker (fixed seed): a batch of images -> labels and confidences."""

    widths: tuple[int, ...] = ()
    seed = 0

    def __init__(self) -> None:
        self.net = _cnn(self.widths, self.seed)

    def __call__(self, img: IMAGE) -> Guess:  # type: ignore[valid-type]
        with torch.no_grad():
            p = torch.softmax(self.net(torch.from_numpy(img)) * 8, dim=1)  # (batch, classes)
            conf, label = p.max(dim=1)
        return Guess(label.numpy(), conf.numpy())  # type: ignore[arg-type]


class Small(Model):
    widths, seed = (8, 16), 0


class Large(Model):
    widths, seed = (24, 48, 96), 1


def unsure(conf: float) -> bool:
    return conf < THRESHOLD


class Answer(NamedTuple):
    label: int
    conf: float
    model: str


def choose(label: int, conf: float, big_label: int | None, big_conf: float | None) -> Answer:
    if big_conf is None or conf >= big_conf:
        return Answer(label, conf, "small")
    return Answer(big_label, big_conf, "large")  # type: ignore[arg-type]


flow = Flow("cascade", {"img": IMAGE})
small = flow.map(Small, batch=8, max_wait_ms=2, keep=True, name="small")
large = small.filter(unsure).map(Large, names=["big_label", "big_conf"], batch=8, max_wait_ms=2, name="large")
small.join(large, how="left").map(choose)


def images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, 32, 32)).astype(np.float32)


if __name__ == "__main__":
    out = flow.run(flow.table(img=list(images(6))))
    for row in out.to_records():
        print(row)
