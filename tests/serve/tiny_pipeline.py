"""A pipeline file for the ``reflow serve`` command tests: words in, their lengths, grouped, out."""

from reflow.serve import Flow

LENGTHS = {}  # built at import time, in the server only (functions travel to workers by value)


def length(word: str) -> int:
    return len(word)


flow = Flow("tiny", {"word": str})
flow.map(length, keep=True).groupby("length").agg(n="count")
