"""A recommender: two lookups into large tables, a category choice between them, a top-k at the end.

The paper's recommender (Cloudflow's flow/pipelines/recommender.py: a user's vector, then the product set
of a category picked from the user's recent clicks, then the five best products), CPU-sized: 20,000 user
vectors (5 MB) and 100 product sets of 1,000 vectors each (25 MB), made in code from a fixed seed when the
file is imported. Both lookups are by column, so with locality on each starts a stage that the server routes
to the worker already caching the most of its keys; a worker fetches what it misses from the server's
store and caches up to 64 MB of it.

    reflow serve examples/serve/recommender.py --port 8000
    python examples/serve/recommender.py
"""

from __future__ import annotations

import numpy as np

from reflow.serve import Array, Flow, Store

USERS, CATEGORIES, PRODUCTS, DIM = 20_000, 100, 1_000, 64
VECTOR = Array("float32", (DIM,))

_rng = np.random.default_rng(30)
users = Store("users", {f"u{i}": v for i, v in enumerate(_rng.standard_normal((USERS, DIM), np.float32))},
              cache_bytes=64 << 20)
products = Store("products", {f"c{i}": _rng.standard_normal((PRODUCTS, DIM), np.float32)
                              for i in range(CATEGORIES)}, cache_bytes=64 << 20)


def category(recent: Array("int64", (5,)), user_vec: VECTOR) -> str:  # type: ignore[valid-type]
    """The category to recommend from: picked by the recent clicks, nudged by the user's taste."""
    return f"c{(int(recent.sum()) + int(user_vec[0] > 0)) % CATEGORIES}"


def top5(user_vec: VECTOR, items: Array("float32", (PRODUCTS, DIM))) -> Array("int64", (5,)):  # type: ignore[valid-type]
    """The five products of the set that score highest for the user (ties: the lower index)."""
    scores = items @ user_vec
    return np.argsort(-scores, kind="stable")[:5].astype(np.int64)  # type: ignore[no-any-return]


flow = Flow("recommender", {"user": str, "recent": Array("int64", (5,))})
(flow.lookup(users, "user", column="user_vec")
     .map(category, keep=["user_vec"])
     .lookup(products, "category", column="items")
     .map(top5))


def requests(n: int, seed: int = 0) -> list[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [(f"u{rng.integers(USERS)}", rng.integers(0, CATEGORIES, 5)) for _ in range(n)]


if __name__ == "__main__":
    for row in flow.run(flow.table(requests(4))).to_records():
        print(row)
