"""`python -m api.tokens --user <id> --ttl 8h` mints a token the API accepts."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from config import Settings
from tests.api.conftest import Api
from tests.support.tenants import Tenant

ROOT = Path(__file__).resolve().parents[2]


async def test_the_cli_mints_a_working_token_from_the_user_id(
    api: Api, tenant: Tenant, settings: Settings
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "api.tokens",
        "--user",
        str(tenant.user("vera")),
        "--ttl",
        "8h",
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": settings.database_url or ""},
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await process.communicate()
    assert process.returncode == 0
    headers = {"Authorization": f"Bearer {out.decode().strip()}"}
    assert (await api.client.get("/v1/queue", headers=headers)).status_code == 200
    refused = await api.client.post("/v1/tasks", json={}, headers=headers)
    assert refused.status_code == 403  # the looked-up role is viewer
