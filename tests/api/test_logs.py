"""JSON logs: an API request's lines carry its request id, and a request about an item (a
create included, from the moment the item exists) its item id and workflow id."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import structlog

from config import Settings
from logs import configure_logging
from mailsink import free_port
from tests.api.conftest import Api, running_app
from tests.support.tenants import Tenant


@pytest.fixture
async def json_api(settings: Settings) -> AsyncIterator[Api]:
    dead = settings.model_copy(
        update={"temporal_address": f"127.0.0.1:{free_port()}", "log_format": "json"}
    )
    try:
        async for running in running_app(dead):
            yield running
    finally:
        configure_logging(settings.log_format)  # the next tests' format


def _lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


async def test_a_create_logs_its_request_item_and_workflow_ids(
    json_api: Api, tenant: Tenant, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    created = await json_api.task(tenant)
    assert created.status_code == 201, created.text
    item_id, request_id = created.json()["id"], created.headers["x-request-id"]

    [deferred] = [
        line
        for line in _lines(capsys.readouterr().out)
        if line["event"] == "workflow.start_deferred"
    ]
    assert deferred["request_id"] == request_id
    assert (deferred["item_id"], deferred["workflow_id"]) == (item_id, f"item-{item_id}")
    assert deferred["level"] == "warning"
    assert "timestamp" in deferred


async def test_a_request_about_an_item_names_it(
    json_api: Api, tenant: Tenant, capsys: pytest.CaptureFixture[str]
) -> None:
    item_id = (await json_api.task(tenant)).json()["id"]
    capsys.readouterr()
    claimed = await json_api.client.post(
        f"/v1/items/{item_id}/claim", headers=json_api.headers(tenant, "emil")
    )
    assert claimed.status_code == 200, claimed.text

    lines = _lines(capsys.readouterr().out)
    [transition] = [line for line in lines if line["event"] == "item.transition"]
    assert transition["request_id"] == claimed.headers["x-request-id"]
    assert (transition["item_id"], transition["workflow_id"]) == (item_id, f"item-{item_id}")
    assert (transition["verb"], transition["changed"]) == ("claim", True)
    # The ids were the request's only: nothing bound outlives it (the ASGI transport runs
    # the app in this very task, so a leak would show here).
    assert not {"item_id", "workflow_id", "request_id"} & set(
        structlog.contextvars.get_contextvars()
    )
