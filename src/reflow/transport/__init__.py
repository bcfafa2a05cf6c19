"""Moving data between processes: shared memory, serialization, channels, pub/sub."""

from reflow.transport.shm import SharedSegment, leaked_segments

__all__ = ["SharedSegment", "leaked_segments"]
