"""A suite's worker pool dies with the process that made it, even when that process is SIGKILLed."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from reflow.transport.shm import process_alive

CODE = """
import os, time
from reflow.wield.suite import worker_pool

def pid(_):
    time.sleep(0.2)
    return os.getpid()

if __name__ == "__main__":
    pool = worker_pool(2)
    print(*sorted(set(pool.map(pid, range(8)))), flush=True)
    time.sleep(600)
"""


def test_pool_workers_die_when_the_suite_is_killed(tmp_path: Path) -> None:
    script = tmp_path / "suite_child.py"
    script.write_text(CODE)
    child = subprocess.Popen([sys.executable, script], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        workers = [int(p) for p in child.stdout.readline().split()]
        assert workers and all(process_alive(w) for w in workers)
        child.send_signal(signal.SIGKILL)  # no shutdown, no atexit: only the kernel can tell the workers
        child.wait(30)
        deadline = time.monotonic() + 30
        while any(process_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [w for w in workers if process_alive(w)]
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
