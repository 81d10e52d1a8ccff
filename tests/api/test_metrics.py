"""The API's `/metrics`: open to the scrape by default, a bearer token when one is set,
and the open-item gauge counted from the database on each scrape."""

from __future__ import annotations

from pydantic import SecretStr

from tests.api.conftest import Api
from tests.support.tenants import Tenant


async def test_metrics_token_guards_the_scrape(api_without_temporal: Api) -> None:
    api = api_without_temporal
    api.app.state.settings = api.settings.model_copy(
        update={"metrics_token": SecretStr("s3cret-scrape")}
    )
    try:
        refused = await api.client.get("/metrics")
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "metrics_token_required"
        wrong = await api.client.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        right = await api.client.get("/metrics", headers={"Authorization": "Bearer s3cret-scrape"})
        assert right.status_code == 200
        assert "escalator_sse_subscribers" in right.text
    finally:
        api.app.state.settings = api.settings


async def test_open_items_are_counted_on_each_scrape(
    api_without_temporal: Api, tenant: Tenant
) -> None:
    api = api_without_temporal

    def open_untiered(page: str) -> float:
        prefix = 'escalator_open_items{state="open",tier="none"} '
        return next(
            (float(line[len(prefix) :]) for line in page.splitlines() if line.startswith(prefix)),
            0.0,
        )

    before = open_untiered((await api.client.get("/metrics")).text)
    assert (await api.task(tenant)).status_code == 201
    assert (await api.task(tenant, title="Second")).status_code == 201
    after = open_untiered((await api.client.get("/metrics")).text)
    assert after == before + 2


async def test_the_api_exports_only_what_it_counts(api_without_temporal: Api) -> None:
    """The worker's series (rungs, deliveries, the reconciler, webhooks) are counted in the
    worker: the API's scrape leaves them out rather than showing them frozen at zero."""
    scraped = (await api_without_temporal.client.get("/metrics")).text
    for theirs in (
        "escalator_rungs_fired",
        "escalator_deliveries",
        "escalator_reconciler_repairs",
        "escalator_webhook_endpoints_disabled",
        "escalator_rung_lateness_seconds",
    ):
        assert theirs not in scraped, theirs
    for ours in ("escalator_open_items", "escalator_sse_subscribers", "escalator_time_to_claim"):
        assert ours in scraped, ours
