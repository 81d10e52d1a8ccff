"""Hostile and extreme input, one class at a time. Each case asserts the status, the one error
shape (with its request id), and that nothing at all was written for the account."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import jwt
import pytest

from api.tokens import ALGORITHM
from config import Settings
from domain import limits
from domain.clock import utcnow
from domain.demo import POLICIES, stable_id
from mailsink import free_port
from tests.api.conftest import Api
from tests.support.errors import error
from tests.support.tenants import Tenant

EDGES = ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "1969-12-31T23:59:59Z"]


@pytest.fixture
def api(api_without_temporal: Api) -> Api:
    """Nothing here should get as far as a workflow."""
    return api_without_temporal


async def refused(
    api: Api, tenant: Tenant, method: str, url: str, status: int, **request: Any
) -> dict[str, Any]:
    """Send the request as Ada (admin) unless headers are given; assert it is refused with
    `status` in the error shape and that the account's rows are exactly as before."""
    before = await tenant.footprint()
    request.setdefault("headers", api.headers(tenant, "ada"))
    body = error(await api.client.request(method, url, **request), status)
    assert await tenant.footprint() == before, f"{method} {url} wrote something"
    return body


def task(tenant: Tenant, **changes: Any) -> dict[str, Any]:
    return {
        "type": "CAPA",
        "title": "Pump P-101 leaks",
        "assignee_id": str(tenant.user("erin")),
        "due_at": (utcnow() + timedelta(days=3)).isoformat(),
        **changes,
    }


def preview(tenant: Tenant, **changes: Any) -> dict[str, Any]:
    return {k: v for k, v in task(tenant, **changes).items() if k != "title"}


def nested(depth: int) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for _ in range(depth - 1):
        document = {"a": document}
    return document


async def test_deep_or_large_snapshots_are_refused_before_anything_is_written(
    api: Api, tenant: Tenant
) -> None:
    url = "/v1/sessions/acme-vpn/handoffs"
    for snapshot in (nested(256), nested(limits.MAX_JSON_DEPTH + 1), {"blob": "x" * 70_000}):
        body = {"intent": "escalate", "snapshot": snapshot}
        problem = await refused(api, tenant, "POST", url, 422, json=body)
        assert problem["code"] == "invalid_payload"
        assert problem["message"].startswith("body.snapshot")
    # The deepest allowed snapshot is stored and read back everywhere it is shown.
    deepest = {"intent": "escalate", "snapshot": nested(limits.MAX_JSON_DEPTH)}
    created = await api.client.post(url, json=deepest, headers=api.headers(tenant, "ada"))
    assert created.status_code == 201, created.text
    for read in ("/v1/items", "/v1/queue", url, f"/v1/items/{created.json()['id']}"):
        assert (await api.client.get(read, headers=api.headers(tenant, "ada"))).status_code == 200


async def test_instants_outside_the_supported_years_are_refused(api: Api, tenant: Tenant) -> None:
    item_id = await tenant.add_item(due_at=utcnow() + timedelta(days=3))
    for edge in [*EDGES, "0.5", "1700000000"]:
        for method, url, body in (
            ("POST", "/v1/tasks", task(tenant, due_at=edge)),
            ("POST", "/v1/preview", preview(tenant, due_at=edge)),
            ("PATCH", f"/v1/items/{item_id}", {"due_at": edge}),
        ):
            problem = await refused(api, tenant, method, url, 422, json=body)
            assert "due_at" in problem["message"], (edge, problem)
        for bound in ("due_from", "due_to"):
            problem = await refused(api, tenant, "GET", "/v1/items", 422, params={bound: edge})
            assert bound in problem["message"]
    # The edges themselves are fine.
    for edge in ("1970-01-01T00:00:00Z", "2199-12-31T23:59:59+14:00"):
        response = await api.client.post(
            "/v1/preview", json=preview(tenant, due_at=edge), headers=api.headers(tenant, "ada")
        )
        assert response.status_code == 200, (edge, response.text)


def cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode()


async def test_any_cursor_is_a_page_or_a_400(api: Api, tenant: Tenant) -> None:
    now = utcnow().isoformat()
    hostile = [
        cursor([now, 5]),
        cursor([now, ["x"]]),
        cursor([now, str(uuid.uuid4()), "extra"]),
        cursor({"a": 1}),
        cursor([5, str(uuid.uuid4())]),
        cursor(["0001-01-01T00:00:00+00:00", str(uuid.uuid4())]),
        cursor(["2026-11-22T10:00:00", str(uuid.uuid4())]),  # no zone
        cursor("just a string"),
        "not base64 at all!",
        "é",
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    ]
    for value in hostile:
        problem = await refused(api, tenant, "GET", "/v1/items", 400, params={"cursor": value})
        assert problem["details"] == {"field": "cursor"}, (value, problem)


async def test_policy_offsets_are_bounded(api: Api, tenant: Tenant) -> None:
    rungs = json.loads(json.dumps(POLICIES["CAPA"]["rungs"]))
    calendar = str(stable_id(tenant.slug, "calendar:berlin"))
    for offset in (
        {"business_days": 10**30},
        {"business_days": limits.MAX_OFFSET["business_days"] + 1},
        {"business_hours": 1e300},
        {"business_minutes": -1},
        {"business_days": 1, "business_hours": 2},
        {},
    ):
        rungs["escalate_1"]["offset"] = offset
        body = {"calendar_id": calendar, "rungs": rungs}
        problem = await refused(api, tenant, "PUT", "/v1/policies/CAPA", 422, json=body)
        assert problem["message"].startswith("body.rungs.escalate_1.offset"), problem
    # NaN is not JSON, but Python's parser reads it: still refused.
    raw = json.dumps({"calendar_id": calendar, "rungs": rungs}).replace(
        json.dumps(rungs["escalate_1"]["offset"]), '{"business_hours": NaN}'
    )
    headers = {**api.headers(tenant, "ada"), "Content-Type": "application/json"}
    await refused(api, tenant, "PUT", "/v1/policies/CAPA", 422, content=raw, headers=headers)


def forged(settings: Settings, tenant: Tenant, **claims: Any) -> dict[str, str]:
    """A correctly signed token whose claims are hostile."""
    payload = {
        "sub": str(tenant.user("ada")),
        "acc": str(tenant.account_id),
        "role": "admin",
        "exp": int(time.time()) + 600,
        **claims,
    }
    token = jwt.encode(payload, settings.jwt_secret, algorithm=ALGORITHM)
    return {"Authorization": f"Bearer {token}"}


async def test_tokens_with_mistyped_claims_are_401(
    api: Api, tenant: Tenant, settings: Settings
) -> None:
    for claims in (
        {"acc": [str(tenant.account_id)]},
        {"acc": 5},
        {"sub": {"id": 1}},
        {"sub": None},
        {"role": "root"},
        {"role": ["admin"]},
        {"exp": "tomorrow"},
    ):
        headers = forged(settings, tenant, **claims)
        for method, url in (("GET", "/v1/queue"), ("POST", "/v1/tasks")):
            kwargs: dict[str, Any] = {"headers": headers}
            if method == "POST":
                kwargs["json"] = task(tenant)
            problem = await refused(api, tenant, method, url, 401, **kwargs)
            assert problem["code"] == "unauthenticated", (claims, problem)


async def test_bodies_over_the_limit_are_413_announced_or_streamed(
    api: Api, tenant: Tenant
) -> None:
    big = json.dumps(task(tenant, title="x" * (api.settings.max_body_bytes + 1)))
    headers = {**api.headers(tenant, "ada"), "Content-Type": "application/json"}
    problem = await refused(api, tenant, "POST", "/v1/tasks", 413, content=big, headers=headers)
    assert problem["code"] == "too_large"

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
        for start in range(0, len(big), 16_384):
            yield big[start : start + 16_384].encode()

    problem = await refused(
        api, tenant, "POST", "/v1/tasks", 413, content=chunks(), headers=headers
    )
    assert problem["details"] == {"limit_bytes": api.settings.max_body_bytes}


async def test_an_idempotency_key_names_one_request(api: Api, tenant: Tenant) -> None:
    ada = {**api.headers(tenant, "ada"), "Idempotency-Key": "order-9"}
    body = task(tenant)
    first = await api.client.post("/v1/tasks", json=body, headers=ada)
    assert first.status_code == 201
    assert "idempotent-replayed" not in first.headers
    again = await api.client.post("/v1/tasks", json=body, headers=ada)
    assert (again.status_code, again.headers["idempotent-replayed"]) == (201, "true")
    assert again.json()["id"] == first.json()["id"]

    changed = await refused(
        api, tenant, "POST", "/v1/tasks", 422, json={**body, "title": "Other"}, headers=ada
    )
    assert changed["code"] == "idempotency_key_reused"
    assert first.json()["id"] in changed["message"]
    # Someone else in the account, same key and body: not their request to replay.
    emil = {**api.headers(tenant, "emil"), "Idempotency-Key": "order-9"}
    other = await refused(api, tenant, "POST", "/v1/tasks", 422, json=body, headers=emil)
    assert other["code"] == "idempotency_key_reused"
    # Scoped to the endpoint: the same key on the handoff endpoint is a different request.
    handoff = await api.client.post(
        "/v1/sessions/acme-vpn/handoffs", json={"intent": "park"}, headers=ada
    )
    assert handoff.status_code == 201
    assert handoff.json()["id"] != first.json()["id"]
    # And to the account: another tenant's identical key and body create their own item.
    other_tenant = await Tenant.create(tenant.owner)
    theirs = await api.client.post(
        "/v1/tasks",
        json=task(other_tenant),
        headers={**api.headers(other_tenant, "ada"), "Idempotency-Key": "order-9"},
    )
    assert theirs.status_code == 201
    assert "idempotent-replayed" not in theirs.headers


async def test_a_nul_character_is_a_400_and_writes_nothing(api: Api, tenant: Tenant) -> None:
    body = {"intent": "park", "snapshot": {"note": "a\u0000b"}}
    problem = await refused(api, tenant, "POST", "/v1/sessions/x/handoffs", 400, json=body)
    assert problem["code"] == "invalid_value"
    # A task's create is one statement whose values travel as JSON: the same answer.
    body = task(tenant, title="a\u0000b")
    problem = await refused(api, tenant, "POST", "/v1/tasks", 400, json=body)
    assert problem["code"] == "invalid_value"


async def test_request_ids_are_echoed_when_sane_and_replaced_when_not(
    api: Api, tenant: Tenant
) -> None:
    sane = await api.client.get("/v1/queue", headers={"X-Request-ID": "trace-42.a:b"})
    assert error(sane, 401)["request_id"] == "trace-42.a:b"
    for hostile in ("x" * 65, "a b", "ünï"):
        response = await api.client.get("/v1/queue", headers=[(b"X-Request-ID", hostile.encode())])
        assert error(response, 401)["request_id"] != hostile
    assert (await api.client.get("/health/live")).headers["x-request-id"]


async def test_an_unexpected_error_is_a_500_in_the_error_shape_and_logged(
    api: Api, tenant: Tenant, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from domain import items

    def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("a bug for the test")

    monkeypatch.setattr(items, "queue_query", broken)
    response = await api.client.get("/v1/queue", headers=api.headers(tenant, "vera"))
    problem = error(response, 500)
    assert problem["code"] == "internal"
    assert "a bug for the test" not in response.text  # no internals leak to the caller
    logged = capsys.readouterr().out
    assert "request.failed" in logged
    assert problem["request_id"] in logged


async def test_a_500_keeps_the_connection_usable(
    settings: Settings, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over real HTTP: after the failure the same keep-alive connection serves on."""
    from domain import items
    from tests.support.live import serve

    def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("a bug for the test")

    monkeypatch.setattr(items, "queue_query", broken)
    dead = settings.model_copy(update={"temporal_address": f"127.0.0.1:{free_port()}"})
    api = Api(app=None, client=None, settings=settings)  # type: ignore[arg-type]
    with serve(dead) as base:
        limits_one = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(base_url=base, limits=limits_one) as client:
            failed = await client.get("/v1/queue", headers=api.headers(tenant, "vera"))
            assert failed.status_code == 500
            assert failed.headers.get("connection") != "close"
            fine = await client.get("/v1/items", headers=api.headers(tenant, "vera"))
            assert fine.status_code == 200


async def test_a_resume_point_beyond_any_event_id_is_a_422(api: Api, tenant: Tenant) -> None:
    emil = api.headers(tenant, "emil")
    for headers, params in (
        ({**emil, "Last-Event-ID": str(2**64)}, {}),
        (emil, {"last_event_id": str(2**63)}),
        ({**emil, "Last-Event-ID": "-1"}, {}),
    ):
        problem = await refused(
            api, tenant, "GET", "/v1/events/stream", 422, headers=headers, params=params
        )
        assert "last" in problem["message"].lower(), problem
