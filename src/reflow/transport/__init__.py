"""Moving data between processes: shared memory, serialization, channels, pub/sub."""

from reflow.transport.channel import Channel
from reflow.transport.loan import LoanedArray
from reflow.transport.pubsub import Publisher, publisher
from reflow.transport.serialize import Encoded, Stats, decode, encode
from reflow.transport.shm import SharedSegment, leaked_segments
from reflow.transport.store import ObjectStore
from reflow.transport.subscriber import Subscriber, Subscription, subscribe

__all__ = [
    "Channel",
    "Encoded",
    "LoanedArray",
    "ObjectStore",
    "Publisher",
    "SharedSegment",
    "Stats",
    "Subscriber",
    "Subscription",
    "decode",
    "encode",
    "leaked_segments",
    "publisher",
    "subscribe",
]
