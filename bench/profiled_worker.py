"""escalator's worker with a cProfile window, for `BENCH_PROFILE=path make bench`: SIGUSR1
starts profiling, SIGUSR2 stops it and writes the stats to `path`. The bench opens the
window over exactly what it measures (a figure's burst), so start-up and the workflows'
creation stay out of the profile.

Run from the checkout being measured (its `worker.py` is the one imported).
"""

from __future__ import annotations

import asyncio
import cProfile
import os
import signal
import sys
from types import FrameType

sys.path.insert(0, os.getcwd())  # the measured checkout's worker, not this file's folder

import worker
from config import Settings
from logs import configure_logging

PROFILE = cProfile.Profile()


def _start(signum: int, frame: FrameType | None) -> None:
    PROFILE.enable()


def _stop(signum: int, frame: FrameType | None) -> None:
    PROFILE.disable()
    PROFILE.dump_stats(os.environ["BENCH_PROFILE"])


if __name__ == "__main__":
    signal.signal(signal.SIGUSR1, _start)
    signal.signal(signal.SIGUSR2, _stop)
    configure_logging()
    asyncio.run(worker.main(Settings()))
