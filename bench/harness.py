"""What every figure of `make bench` shares: the stack, one worker process at a time, and
the rows of the table."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from mailsink import MailSink, ReceivedMail

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Row:
    number: int
    figure: str
    escalator: str
    floor: str
    ratio: str
    target: str
    met: bool | None
    raw: dict[str, float] = field(default_factory=dict)


@dataclass
class Bench:
    url: str
    address: str
    sink: MailSink
    escalator_root: Path = ROOT  # another checkout's worker.py, to measure a change against
    rows: list[Row] = field(default_factory=list)

    @asynccontextmanager
    async def worker(
        self, kind: str, queue: str, **extra: str
    ) -> AsyncIterator[subprocess.Popen[bytes]]:
        """One worker process, `floor` or `escalator`, for the length of a measurement."""
        argv = (
            [
                *(sys.executable, "-m", "bench.floor", "--address", self.address),
                *("--task-queue", queue, "--smtp-port", str(self.sink.port)),
            ]
            if kind == "floor"
            else [sys.executable, *self._profiled()]
        )
        env = {
            **os.environ,
            "DATABASE_URL": self.url,
            "ESCALATOR_TEMPORAL_ADDRESS": self.address,
            "ESCALATOR_TASK_QUEUE": queue,
            "ESCALATOR_SMTP_PORT": str(self.sink.port),
            **extra,
        }
        process = subprocess.Popen(  # noqa: ASYNC220 (started before anything is timed)
            argv,
            cwd=ROOT if kind == "floor" else self.escalator_root,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            await asyncio.sleep(3)  # connected and polling before anything is timed
            yield process
        finally:
            process.terminate()
            process.wait(timeout=60)

    def _profiled(self) -> list[str]:
        """BENCH_PROFILE=path: escalator's worker with a cProfile window (`profile_window`)."""
        if os.environ.get("BENCH_PROFILE"):
            return [str(ROOT / "bench" / "profiled_worker.py")]
        return ["worker.py"]

    @staticmethod
    def profile_window(worker: subprocess.Popen[bytes], *, start: bool) -> None:
        """Open (or close and write) the worker's profile window, when BENCH_PROFILE is set."""
        floor = "bench.floor" in list(worker.args)  # type: ignore[arg-type]
        if os.environ.get("BENCH_PROFILE") and not floor:
            worker.send_signal(signal.SIGUSR1 if start else signal.SIGUSR2)

    async def mails(self, tags: set[str], within: float) -> list[ReceivedMail]:
        """Until a mail for every tag (its X-Escalator-Item) arrived, or `within` seconds."""
        deadline = time.monotonic() + within
        while True:
            found = [m for m in self.sink.mails if m.message["X-Escalator-Item"] in tags]
            if len({m.message["X-Escalator-Item"] for m in found}) >= len(tags):
                return found
            if time.monotonic() > deadline:
                print(f"  (only {len(found)} of {len(tags)} mails within {within:.0f} s)")
                return found
            await asyncio.sleep(0.2)


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ratio(ours: float, floor: float) -> str:
    return f"{ours / floor:.2f}x" if floor > 0 else "-"
