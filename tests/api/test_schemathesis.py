"""The OpenAPI document is the contract: schemathesis's own CLI runs every phase (examples,
coverage, fuzzing and the stateful phase, which chains operations through the links it
infers) with **all** checks, over real HTTP (uvicorn in a thread), with the token of each of
the four roles in turn and real Postgres. Temporal is deliberately unreachable: creation
must still never fail.

Any failure fails this test, with schemathesis's report (and a curl line to reproduce it)
in the output.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from api.tokens import Principal, mint
from config import Settings
from db import create_engine, create_sessionmaker
from domain.clock import utcnow
from mailsink import free_port
from tests.support.live import serve
from tests.support.tenants import Tenant

ST = Path(sys.executable).with_name("st")
CONFIG = Path(__file__).with_name("schemathesis.toml")
# The SSE stream never ends, so it cannot be answered-and-checked; test_events.py covers it.
ENDLESS = "/v1/events/stream"
EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "25"))


@pytest.fixture(scope="module")
def live_server(settings: Settings) -> Iterator[str]:
    dead_temporal = settings.model_copy(update={"temporal_address": f"127.0.0.1:{free_port()}"})
    with serve(dead_temporal) as url:
        yield url


MEMBERS = {"viewer": "vera", "engineer": "emil", "admin": "ada", "owner": "otto"}


@pytest.fixture(scope="module")
def tenant_for_fuzzing(settings: Settings) -> Tenant:
    async def make() -> Tenant:
        engine = create_engine(settings, owner=True)
        try:
            return await Tenant.create(create_sessionmaker(engine))
        finally:
            await engine.dispose()

    return asyncio.run(make())


@pytest.mark.parametrize("role", list(MEMBERS))
def test_every_phase_and_every_check_finds_nothing(
    live_server: str, tenant_for_fuzzing: Tenant, settings: Settings, role: str, tmp_path: Path
) -> None:
    tenant = tenant_for_fuzzing
    principal = Principal(
        user_id=tenant.user(MEMBERS[role]), account_id=tenant.account_id, role=role
    )
    token = mint(principal, settings.jwt_secret, ttl=timedelta(hours=1), now=utcnow())
    argv = [
        *(str(ST), "--config-file", str(CONFIG), "run", f"{live_server}/openapi.json"),
        *("--checks", "all"),
        *("--phases", "examples,coverage,fuzzing,stateful"),
        *("--header", f"Authorization: Bearer {token}"),
        *("--exclude-path", ENDLESS),
        *("--max-examples", str(EXAMPLES)),
        *("--seed", os.environ.get("SCHEMATHESIS_SEED", "20261122")),
        *("--workers", "1", "--no-color", "--warnings", "off"),
        *("--report", "junit", "--report-dir", str(tmp_path)),
    ]
    # In a scratch folder: the CLI keeps a crash cache in its working directory.
    run = subprocess.run(
        argv, capture_output=True, text=True, timeout=900, check=False, cwd=tmp_path
    )
    print(run.stdout[-20_000:])  # noqa: T201  (the report, shown when the test fails)
    assert run.returncode == 0, run.stdout[-6_000:] + run.stderr[-2_000:]
