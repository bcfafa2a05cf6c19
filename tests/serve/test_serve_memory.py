"""A finished request leaves nothing behind in the server: no array of it stays referenced, so the blocks it
took in the workers' and the server's shared-memory stores come back at once, without the garbage collector
(which a busy server may not run before its stores fill)."""

from __future__ import annotations

import asyncio
import gc

import numpy as np
from serve_pipelines import relay

from reflow.serve.executor import LocalExecutor
from reflow.serve.optimize import Optimizations, optimize
from reflow.transport.store import LEASES


def test_a_finished_request_holds_no_shared_memory_in_the_server(no_leaks: None) -> None:
    size = 1 << 20
    flow = relay(size)
    rows = [np.random.default_rng(i).integers(0, 255, size, dtype=np.uint8) for i in range(3)]

    async def main() -> list[tuple[int, int]]:
        # Unfused, every map is a stage of its own: the row goes server -> worker -> server -> worker ...,
        # forwarded each time as a reference to where it lies.
        ex = LocalExecutor(optimize(flow, 2, Optimizations(fusion=False)), deadline=60.0)
        await ex.start()
        held = []
        try:
            for i in range(12):
                answer = await ex.submit(flow.table([(rows[i % 3],)]))
                assert np.array_equal(answer.column("data")[0], rows[i % 3])
                del answer
                stored = sum(slot.proc.channel.out.store.in_use() for slot in ex.slots)
                held.append((len(LEASES), stored))  # views on the workers' stores, bytes in its own
        finally:
            await ex.close()
        return held

    gc.collect()
    gc.disable()  # what a cycle would keep alive stays alive
    try:
        held = asyncio.run(main())
    finally:
        gc.enable()
    # What is still held is the last message or two on each channel, whose blocks each store reclaims at its
    # next send: a bound that does not grow with the requests served (a request kept alive by a reference
    # cycle would add 3 views and 1 MB here per request: 36 and 12 MB after 12).
    assert max(views for views, _ in held) <= 6, held
    assert max(stored for _, stored in held) <= 3 * size, held
