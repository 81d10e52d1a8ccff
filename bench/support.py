"""What the benchmarks share: a scratch database, the dev server, and a few numbers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
from temporalio.testing import WorkflowEnvironment

from db import migrate
from devstack import embedded_postgres
from tests.support.pg import create_database, drop_database
from workflows import search_attributes

ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def database(root: Path = ROOT) -> Iterator[str]:
    """DATABASE_URL's server when set (a scratch database, dropped after), else pgserver;
    migrated by `root`'s checkout (another's, to measure a change to the schema too)."""
    server = os.environ.get("DATABASE_URL")
    with contextlib.ExitStack() as stack:
        if not server:
            server = stack.enter_context(embedded_postgres(Path(tempfile.mkdtemp()) / "pg"))
        url = create_database(server, prefix="escalator_bench")
        stack.callback(drop_database, url)
        if root == ROOT:
            migrate(url)
        else:
            program = f"import db; db.migrate({url!r})"
            subprocess.run([sys.executable, "-c", program], cwd=root, check=True)
        yield url


async def dev_server() -> WorkflowEnvironment:
    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(Path(sys.executable).with_name("temporal")),
        search_attributes=search_attributes.ALL,
        ui=False,
    )


def start_worker(url: str, address: str, queue: str, **env: str) -> subprocess.Popen[bytes]:
    """One `worker.py` process on `queue`, against this database and Temporal (`env`: more
    settings, e.g. `ESCALATOR_SMTP_PORT`)."""
    return subprocess.Popen(
        [sys.executable, "worker.py"],
        cwd=ROOT,
        env={
            **os.environ,
            "DATABASE_URL": url,
            "ESCALATOR_TEMPORAL_ADDRESS": address,
            "ESCALATOR_TASK_QUEUE": queue,
            **env,
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def start_api(
    port: int, env: dict[str, str], *options: str, root: Path = ROOT
) -> subprocess.Popen[bytes]:
    """One API process (uvicorn), as production runs it, with these settings (`root`:
    another checkout's API, to measure a change against)."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "api.app:create_app",
            "--port",
            str(port),
            *options,
        ],
        cwd=root,
        env={**os.environ, **env},
        stderr=subprocess.DEVNULL,
    )


async def wait_healthy(client: httpx.AsyncClient, *, temporal: bool) -> None:
    """Until `/health/ready` answers 200 (and, if asked, Temporal is connected too)."""
    for _ in range(150):
        with contextlib.suppress(httpx.TransportError):
            health = await client.get("/health/ready")
            if health.status_code == 200 and (not temporal or health.json()["temporal"] == "ok"):
                return
        await asyncio.sleep(0.2)
    raise TimeoutError("the API process did not become healthy in 30 s")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]
