"""What the benchmarks share: a scratch database, the dev server, and a few numbers."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from db import migrate
from devstack import embedded_postgres
from tests.support.pg import create_database, drop_database
from workflows import search_attributes


@contextlib.contextmanager
def database() -> Iterator[str]:
    """DATABASE_URL's server when set (a scratch database, dropped after), else pgserver."""
    server = os.environ.get("DATABASE_URL")
    with contextlib.ExitStack() as stack:
        if not server:
            server = stack.enter_context(embedded_postgres(Path(tempfile.mkdtemp()) / "pg"))
        url = create_database(server, prefix="escalator_bench")
        stack.callback(drop_database, url)
        migrate(url)
        yield url


async def dev_server() -> WorkflowEnvironment:
    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(Path(sys.executable).with_name("temporal")),
        search_attributes=search_attributes.ALL,
        ui=False,
    )


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]
