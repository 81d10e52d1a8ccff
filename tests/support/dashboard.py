"""Reads the Grafana dashboard (ops/grafana/dashboards/escalator.json) the way a test needs it:
which Prometheus series its PromQL queries name.

Deliberately not a PromQL parser: every metric this project charts starts with `escalator_` or
`temporal_`, and nothing else in an expression does (functions, `by` labels, `le`, `$__`
variables), so one regex over identifiers finds them. Quoted strings are blanked first so a
label value such as `job="temporal_worker"` is not mistaken for a series.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# The lookbehind keeps `foo_temporal_x` (or a `$escalator_var` variable) from yielding a name.
_METRIC = re.compile(r"(?<![A-Za-z0-9_:$])(?:escalator|temporal)_[A-Za-z0-9_:]*")
_QUOTED = re.compile(r""""(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`""")


def load(path: Path) -> dict[str, Any]:
    """The dashboard JSON as a dict."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a dashboard is a JSON object, got {type(data).__name__}")
    return data


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in (collapsed) rows."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panels(panel)


def exprs(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL expression of every panel's targets."""
    return [
        target["expr"]
        for panel in panels(dashboard)
        for target in panel.get("targets", [])
        if isinstance(target.get("expr"), str)
    ]


def names_in(expr: str) -> set[str]:
    """The series names one PromQL expression mentions, as written (`x_bucket`, `x_total`)."""
    return set(_METRIC.findall(_QUOTED.sub('""', expr)))


def metric_names(path: Path) -> set[str]:
    """Every series name the dashboard's queries mention, as it appears in a /metrics scrape:
    `escalator_rung_lateness_seconds_bucket`, `escalator_rungs_fired_total`,
    `temporal_worker_task_slots_used`."""
    return {name for expr in exprs(load(path)) for name in names_in(expr)}
