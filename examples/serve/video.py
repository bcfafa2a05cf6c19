"""Video analytics: a detector looks at every frame, then each kind of object goes to its own classifier.

The paper's video pipeline (Cloudflow's flow/pipelines/video.py: YOLOv3 per frame, then ResNet-101 on the
people and on the cars), CPU-sized: 64x64 frames, a small detector CNN that says person / car / nothing and
crops the strongest 32x32 region, then one classifier per class on the crop. The two branches are joined
back (outer join, on the row): a row has a person's kind or a car's make, frames with nothing are dropped.
Every model is built in code with a fixed seed and runs on padded batches of 8.

    reflow serve examples/serve/video.py --port 8000
    python examples/serve/video.py
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from reflow.serve import Array, Flow

FRAME = Array("float32", (3, 64, 64))
CROP = Array("float32", (3, 32, 32))
KINDS = ("person", "car", "nothing")


def _convs(widths: tuple[int, ...]) -> list[torch.nn.Module]:
    layers: list[torch.nn.Module] = []
    c = 3
    for w in widths:
        layers += [torch.nn.Conv2d(c, w, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2)]
        c = w
    return layers


class Detection(NamedTuple):
    cls: str
    crop: CROP  # type: ignore[valid-type]


class Detector:
    """Frame -> the kind of its most salient object and the 32x32 crop around it."""

    def __init__(self) -> None:
        torch.manual_seed(13)  # a seed whose untrained detector sees all three kinds in random frames
        self.features = torch.nn.Sequential(*_convs((8, 16))).eval()  # 64x64 -> 16 maps of 16x16
        self.head = torch.nn.Linear(16 * 16 * 16, len(KINDS)).eval()

    def __call__(self, frame: FRAME) -> Detection:  # type: ignore[valid-type]
        with torch.no_grad():
            x = torch.from_numpy(frame)
            maps = self.features(x)  # (batch, 16, 16, 16)
            kind = self.head(maps.flatten(1)).argmax(dim=1).numpy()
            where = maps.sum(dim=1).flatten(1).argmax(dim=1).numpy()  # strongest cell of the 16x16 grid
        crops = np.empty((len(frame), 3, 32, 32), np.float32)
        for i, cell in enumerate(where):
            r, c = min(32, 4 * (cell // 16)), min(32, 4 * (cell % 16))
            crops[i] = frame[i, :, r:r + 32, c:c + 32]
        return Detection([KINDS[k] for k in kind], crops)  # type: ignore[arg-type]


class Classifier:
    """A crop -> one of ``labels`` labels (built with its own seed)."""

    seed, labels = 0, 4

    def __init__(self) -> None:
        torch.manual_seed(self.seed)
        self.net = torch.nn.Sequential(*_convs((16, 32)), torch.nn.Flatten(),
                                       torch.nn.Linear(32 * 8 * 8, self.labels)).eval()

    def __call__(self, crop: CROP) -> int:  # type: ignore[valid-type]
        with torch.no_grad():
            return self.net(torch.from_numpy(crop)).argmax(dim=1).numpy()  # type: ignore[no-any-return]


class PersonKind(Classifier):
    seed, labels = 11, 5


class CarMake(Classifier):
    seed, labels = 12, 8


def is_person(cls: str) -> bool:
    return cls == "person"


def is_car(cls: str) -> bool:
    return cls == "car"


flow = Flow("video", {"frame": FRAME})
detected = flow.map(Detector, batch=8, max_wait_ms=2, name="detect")
people = detected.filter(is_person).map(PersonKind, keep=["cls"], batch=8, max_wait_ms=2, name="person_kind")
cars = detected.filter(is_car).map(CarMake, keep=["cls"], batch=8, max_wait_ms=2, name="car_make")
people.join(cars, how="outer")


def frames(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, 64, 64)).astype(np.float32)


if __name__ == "__main__":
    for row in flow.run(flow.table(frame=list(frames(8)))).to_records():
        print(row)
