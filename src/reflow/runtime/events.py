"""The event queue: future events (timers, actions, values on delayed connections) ordered by tag.

Policy. Events are ordered by ``(tag, seq)``, ``seq`` counting schedules, so events of one tag come out in
the order they were scheduled. An action or a delayed connection (its destination port) holds at most one
event per tag, as in Lingua Franca (reactor-c): a second event for a tag that is taken goes to the next
free microstep, so two schedules for one tag are delivered one after the other instead of merging. An action
with a *minimum spacing* keeps its events that far apart; one that would come too soon is deferred to the
earliest allowed time (``defer``, the default), dropped (``drop``), replaces the value of the pending
event (``replace``; deferred if that event was already delivered), or replaces the pending event itself,
keeping its own tag (``update``). Timers are not indexed: a timer has one pending event at a time.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterator
from typing import Any

from reflow.runtime.tag import Tag

TIMER, ACTION, PORT = 0, 1, 2

Event = list[Any]  # [tag, seq, kind, key, value, live]: a list, so that it can be cancelled in place


class EventQueue:
    """Future events by tag; one per (action or port, tag)."""

    def __init__(self) -> None:
        self._heap: list[Event] = []
        self._seq = itertools.count()
        self._at: dict[tuple[str, Tag], Event] = {}  # the pending event of an action/port at a tag
        self.last: dict[str, Tag] = {}  # per spaced action, the tag of its latest event (min spacing)

    def peek(self) -> Tag | None:
        """The earliest tag with an event, or None."""
        heap = self._heap
        while heap and not heap[0][5]:  # cancelled
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def push_timer(self, tag: Tag, key: str) -> None:
        heapq.heappush(self._heap, [tag, next(self._seq), TIMER, key, None, True])

    def push(self, tag: Tag, kind: int, key: str, value: Any) -> Tag:
        """Queue an action or port event at ``tag``, or at the next microstep free for ``key``; its tag."""
        at = self._at
        while (key, tag) in at:
            tag = Tag(tag.time, tag.microstep + 1)
        event = [tag, next(self._seq), kind, key, value, True]
        at[(key, tag)] = event
        heapq.heappush(self._heap, event)
        return tag

    def push_spaced(self, tag: Tag, now: Tag, key: str, value: Any, spacing: int, policy: str) -> None:
        """Schedule action ``key`` for ``tag`` keeping its events ``spacing`` ns apart (see the module
        docstring for ``policy``)."""
        last = self.last.get(key)
        if last is not None:
            earliest = last.time + spacing
            if earliest > tag.time or (earliest == tag.time and spacing == 0):
                pending = self._at.get((key, last))
                if policy == "drop":
                    return
                if policy == "replace" and pending is not None:
                    pending[4] = value
                    return
                if policy == "update" and pending is not None:
                    self.cancel(pending)
                elif policy != "update":  # defer, or replace after the last event was delivered
                    tag = Tag(earliest, 0) if spacing > 0 else Tag(last.time, last.microstep + 1)
        if tag <= now:
            tag = now.delay(0)
        self.last[key] = self.push(tag, ACTION, key, value)

    def cancel(self, event: Event) -> None:
        event[5] = False
        if event[2] != TIMER:
            self._at.pop((event[3], event[0]), None)

    def pop_tag(self, tag: Tag) -> Iterator[Event]:
        """Take out every event at ``tag``, in scheduling order."""
        heap, at = self._heap, self._at
        while heap and heap[0][0] == tag:
            event = heapq.heappop(heap)
            if not event[5]:
                continue
            if event[2] != TIMER:
                del at[(event[3], tag)]
            yield event

    def take(self, keep: Callable[[Event], bool]) -> list[Event]:
        """Remove and return (in tag order) every live event for which ``keep`` is false."""
        live = sorted(e for e in self._heap if e[5])
        out = [e for e in live if not keep(e)]
        for e in out:
            self.cancel(e)
        self._heap = [e for e in live if e[5]]
        heapq.heapify(self._heap)
        return out
