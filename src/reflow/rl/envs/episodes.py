"""Episode statistics as gymnasium's ``RecordEpisodeStatistics`` reports them, for reflow's vector envs.

The slices count each episode's return, length and wall time beside the env (``slice.py``) and leave them
in shared arrays, non-zero only on the step that ended the episode. This turns copies of those arrays into
``infos["episode"] = {"r", "l", "t"}`` (zero where the env did not finish) and ``infos["_episode"]`` (the
mask of envs that finished), and keeps the last ``QUEUE_LEN`` episodes in ``return_queue`` /
``length_queue`` / ``time_queue`` and their number in ``episode_count``.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

QUEUE_LEN = 100


class EpisodeLog:
    """The episodes a vector env has seen end (a mixin: the env reports each step to ``_record``)."""

    episode_count: int
    return_queue: deque[float]
    length_queue: deque[int]
    time_queue: deque[float]

    def _init_episode_log(self) -> None:
        self.episode_count = 0
        self.return_queue = deque(maxlen=QUEUE_LEN)
        self.length_queue = deque(maxlen=QUEUE_LEN)
        self.time_queue = deque(maxlen=QUEUE_LEN)

    def _record(self, infos: dict[str, Any] | None, ended: np.ndarray[Any, Any],
                returns: np.ndarray[Any, Any], lengths: np.ndarray[Any, Any],
                seconds: np.ndarray[Any, Any]) -> None:
        """Add the episodes that ended (``ended``) to the queues, and to ``infos`` unless that is None. The
        counts are per env and already zero where the env did not finish (the slices keep them so); they
        become the caller's."""
        if infos is not None:
            infos["episode"] = {"r": returns, "l": lengths, "t": seconds}
            infos["_episode"] = ended
        idx = ended.nonzero()[0]  # flatnonzero would ravel first: ended is 1-D
        self.episode_count += len(idx)
        self.return_queue.extend(returns[idx].tolist())
        self.length_queue.extend(lengths[idx].tolist())
        self.time_queue.extend(seconds[idx].tolist())
