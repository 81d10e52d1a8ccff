"""The operator dashboard and its compose wiring: the JSON is a dashboard whose every panel
queries the provisioned Prometheus datasource, it charts every application metric family (and
the Temporal worker metrics), and docker-compose.yml mounts files that exist where Grafana and
Prometheus look for them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from tests.support.dashboard import exprs, load, metric_names, names_in, panels

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DASHBOARD = ROOT / "ops" / "grafana" / "dashboards" / "escalator.json"
DATASOURCE_UID = "prometheus"

# What a /metrics scrape shows for each application metric: histograms are charted through
# their `_bucket` series (histogram_quantile), counters through `_total`, gauges as they are.
HISTOGRAMS = {
    "escalator_rung_lateness_seconds",
    "escalator_time_to_claim_seconds",
    "escalator_outbox_lag_seconds",
}
COUNTERS = {
    "escalator_rungs_fired",
    "escalator_deliveries",
    "escalator_reconciler_repairs",
    "escalator_webhook_endpoints_disabled",
}
GAUGES = {"escalator_open_items", "escalator_sse_subscribers"}
APPLICATION_SERIES = {f"{h}_bucket" for h in HISTOGRAMS} | {f"{c}_total" for c in COUNTERS} | GAUGES

# Names seen in a scrape of temporalio 1.35's Prometheus exporter (PrometheusConfig with
# durations_as_seconds=True) after a worker ran a workflow and an activity. The SDK's own
# counters carry no `_total` suffix, and its latency histograms no `_seconds` one.
TEMPORAL_HISTOGRAMS = {
    "temporal_activity_execution_latency",
    "temporal_activity_schedule_to_start_latency",
    "temporal_activity_succeed_endtoend_latency",
    "temporal_long_request_latency",
    "temporal_request_latency",
    "temporal_workflow_endtoend_latency",
    "temporal_workflow_task_execution_latency",
    "temporal_workflow_task_replay_latency",
    "temporal_workflow_task_schedule_to_start_latency",
}
TEMPORAL_SERIES = {
    f"{h}{suffix}" for h in TEMPORAL_HISTOGRAMS for suffix in ("_bucket", "_sum", "_count")
} | {
    "temporal_activity_task_received",
    "temporal_long_request",
    "temporal_num_pollers",
    "temporal_request",
    "temporal_sticky_cache_hit",
    "temporal_sticky_cache_size",
    "temporal_worker_start",
    "temporal_worker_task_slots_available",
    "temporal_worker_task_slots_used",
    "temporal_workflow_completed",
    "temporal_workflow_task_queue_poll_succeed",
}
TEMPORAL_CHARTED = {
    "temporal_worker_task_slots_available",
    "temporal_worker_task_slots_used",
    "temporal_workflow_task_schedule_to_start_latency_bucket",
    "temporal_activity_schedule_to_start_latency_bucket",
    "temporal_sticky_cache_size",
    "temporal_sticky_cache_hit",
}
KNOWN_SERIES = (
    {f"{h}{suffix}" for h in HISTOGRAMS for suffix in ("_bucket", "_sum", "_count")}
    | {f"{c}_total" for c in COUNTERS}
    | GAUGES
    | TEMPORAL_SERIES
)


def _compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), path
    return data


def _bind_mounts(service: str) -> dict[str, Path]:
    """Container path -> host path, for each `./host:/container[:ro]` volume of a service."""
    mounts: dict[str, Path] = {}
    for volume in _compose()["services"][service].get("volumes", []):
        host, container, *_ = str(volume).split(":")
        if host.startswith("."):
            mounts[container] = (ROOT / host).resolve()
    return mounts


def _host_path(service: str, container_path: str) -> Path:
    """Where a path inside a service's container comes from on the host."""
    for target, source in _bind_mounts(service).items():
        if container_path == target or container_path.startswith(target.rstrip("/") + "/"):
            return source / Path(container_path).relative_to(target)
    raise AssertionError(f"{service}: nothing mounted at {container_path}")


# --- the parser ------------------------------------------------------------------------


def test_the_parser_keeps_series_names_as_written_and_nothing_else() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, tier) (rate(escalator_rung_lateness_seconds_bucket{job="temporal_worker", tier=~"1|2"}[$__rate_interval])))'  # noqa: E501
        " / on() group_left sum(increase(temporal_sticky_cache_hit[1h]))"
        " + count(my_escalator_thing) + $escalator_var"
    )
    assert names_in(expr) == {
        "escalator_rung_lateness_seconds_bucket",
        "temporal_sticky_cache_hit",
    }


def test_the_parser_reads_panels_nested_in_collapsed_rows(tmp_path: Path) -> None:
    path = tmp_path / "d.json"
    path.write_text(
        '{"panels": [{"type": "row", "panels": [{"targets": [{"expr": "escalator_open_items"}]}]},'
        ' {"targets": [{"expr": "sum(rate(escalator_deliveries_total[5m]))"}, {"refId": "B"}]}]}'
    )
    assert metric_names(path) == {"escalator_open_items", "escalator_deliveries_total"}


# --- the dashboard ---------------------------------------------------------------------


def test_the_dashboard_is_a_grafana_dashboard_with_queries() -> None:
    dashboard = load(DASHBOARD)
    assert dashboard["uid"] == "escalator"
    assert isinstance(dashboard["schemaVersion"], int)
    assert exprs(dashboard), "no panel has a PromQL target"
    ids = [panel["id"] for panel in panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"


def test_every_panel_and_target_queries_the_provisioned_prometheus() -> None:
    queried = [panel for panel in panels(load(DASHBOARD)) if panel["type"] != "row"]
    assert queried
    for panel in queried:
        assert panel.get("datasource", {}).get("uid") == DATASOURCE_UID, panel["title"]
        assert panel["targets"], f"{panel['title']}: no targets"
        for target in panel["targets"]:
            assert target.get("datasource", {}).get("uid") == DATASOURCE_UID, panel["title"]
            assert target["expr"].strip(), panel["title"]


@pytest.mark.parametrize("series", sorted(APPLICATION_SERIES | TEMPORAL_CHARTED))
def test_the_dashboard_charts(series: str) -> None:
    assert series in metric_names(DASHBOARD)


def test_the_dashboard_names_only_series_that_exist() -> None:
    # A typo (`escalator_rung_fired_total`) would chart an empty panel forever.
    assert metric_names(DASHBOARD) - KNOWN_SERIES == set()


# --- compose wiring --------------------------------------------------------------------


def test_grafana_provisions_the_prometheus_datasource() -> None:
    provisioning = _host_path("grafana", "/etc/grafana/provisioning")
    datasources = _yaml(provisioning / "datasources" / "prometheus.yml")["datasources"]
    (prometheus,) = [ds for ds in datasources if ds["uid"] == DATASOURCE_UID]
    assert prometheus["type"] == "prometheus"
    assert prometheus["url"] == "http://prometheus:9090"
    assert "prometheus" in _compose()["services"]


def test_grafana_loads_the_dashboard_file() -> None:
    provisioning = _host_path("grafana", "/etc/grafana/provisioning")
    (provider,) = _yaml(provisioning / "dashboards" / "escalator.yml")["providers"]
    assert provider["type"] == "file"
    folder = _host_path("grafana", provider["options"]["path"])
    assert folder / "escalator.json" == DASHBOARD.resolve()
    assert DASHBOARD.is_file()
    home = _compose()["services"]["grafana"]["environment"]
    assert _host_path("grafana", home["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]).is_file()


def test_prometheus_scrapes_the_api_and_the_worker_metrics_port() -> None:
    config = _yaml(_host_path("prometheus", "/etc/prometheus/prometheus.yml"))
    targets = {
        (job.get("metrics_path", "/metrics"), target)
        for job in config["scrape_configs"]
        for static in job["static_configs"]
        for target in static["targets"]
    }
    worker = _compose()["services"]["worker"]
    port = str(worker["environment"]["ESCALATOR_WORKER_METRICS_PORT"])
    assert worker["environment"]["ESCALATOR_WORKER_METRICS_HOST"] == "0.0.0.0"
    assert port in [str(p) for p in worker["expose"]]
    api = _compose()["services"]["api"]
    api_port = str(api["environment"]["ESCALATOR_API_METRICS_PORT"])
    assert api["environment"]["ESCALATOR_API_METRICS_HOST"] == "0.0.0.0"
    assert api_port in [str(p) for p in api["expose"]]
    assert {("/metrics", f"api:{api_port}"), ("/metrics", f"worker:{port}")} <= targets
