"""Logs: structlog key/value events, as console lines or as JSON lines
(`ESCALATOR_LOG_FORMAT=json`), with the ids that let one story be followed across the API,
the worker and Temporal:

- `request_id`: bound by `api.middleware.RequestContext` for the whole of a request;
- `item_id` and `workflow_id` (`item-<uuid>`): bound by the API where a request names an
  item, and taken from the Temporal SDK's own context on the worker's activity and workflow
  log records (`activity.logger` / `workflow.logger` put it in `temporal_activity` /
  `temporal_workflow`);
- `trace_id` and `span_id` when tracing is on and a span is current.

Standard-library records (Temporal's loggers, uvicorn's, alembic's) go through the same
processors and renderer, so one line format comes out of a process.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any, Literal

import structlog
from opentelemetry import trace
from structlog.typing import EventDict, Processor

Format = Literal["console", "json"]
WORKFLOW_PREFIX = "item-"


def item_ids(item_id: object) -> dict[str, str]:
    """The ids one item is known by: its own and its workflow's."""
    return {"item_id": str(item_id), "workflow_id": f"{WORKFLOW_PREFIX}{item_id}"}


def bind_item(item_id: object) -> None:
    """Every later line of this request (or task) names the item and its workflow."""
    structlog.contextvars.bind_contextvars(**item_ids(item_id))


@contextmanager
def unbound_items() -> Iterator[None]:
    """Whatever `bind_item` bound inside is gone after (the request's end)."""
    try:
        yield
    finally:
        structlog.contextvars.unbind_contextvars("item_id", "workflow_id")


def _temporal_ids(_: Any, __: str, event: EventDict) -> EventDict:
    """The workflow id of a Temporal SDK record, and the item id within it."""
    for key in ("temporal_activity", "temporal_workflow"):
        context = event.pop(key, None)
        if isinstance(context, MutableMapping) and "workflow_id" in context:
            workflow_id = str(context["workflow_id"])
            event.setdefault("workflow_id", workflow_id)
            if workflow_id.startswith(WORKFLOW_PREFIX):
                event.setdefault("item_id", workflow_id.removeprefix(WORKFLOW_PREFIX))
            for name in ("activity_type", "workflow_type", "attempt"):
                if name in context:
                    event.setdefault(name, context[name])
    return event


# Secrets that travel in URLs never reach a log line or a span: a full URL is cut down to
# its scheme and host (a webhook's path and query often hold the receiver's credentials),
# a secret query parameter's value and anything shaped like a JWT are replaced.
_FULL_URL = re.compile(r"\b(https?://[^/\s\"'?#]+)[^\s\"']*")
_SECRET_PARAM = re.compile(
    r"([?&](?:link|ticket|token|access_token|secret|key|password|sig|signature)=)[^&\s\"'#]*",
    re.IGNORECASE,
)
_JWT = re.compile(r"\beyJ[\w-]{5,}\.[\w-]{5,}\.[\w-]{5,}")
REDACTED = "[redacted]"


def redact(text: str) -> str:
    """`text` with URLs cut to scheme and host, secret parameters and JWTs replaced."""
    text = _FULL_URL.sub(
        lambda m: m.group(1) + ("/…" if len(m.group(0)) > len(m.group(1)) else ""), text
    )
    text = _SECRET_PARAM.sub(lambda m: m.group(1) + REDACTED, text)
    return _JWT.sub(REDACTED, text)


def _redacted(_: Any, __: str, event: EventDict) -> EventDict:
    for key, value in event.items():
        if isinstance(value, str):
            event[key] = redact(value)
    return event


def _without_formatted_copy(_: Any, __: str, event: EventDict) -> EventDict:
    """`logging.Formatter` leaves the rendered text on the record as `message`, which
    `ExtraAdder` would take for an extra: it is the event already."""
    event.pop("message", None)
    return event


def _trace_ids(_: Any, __: str, event: EventDict) -> EventDict:
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event.setdefault("trace_id", format(context.trace_id, "032x"))
        event.setdefault("span_id", format(context.span_id, "016x"))
    return event


class _Stdout:
    """Whatever `sys.stdout` is when a record is written, not when logging was configured
    (a test runner swaps it, and closes the one it swapped in)."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


def configure_logging(fmt: Format = "console") -> None:
    """structlog's events and the standard library's records, one format. The console
    renderer prints plain tracebacks: its default renders exceptions with rich and every
    frame's locals, which took seconds per error and could print secrets held in locals."""
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        _temporal_ids,
        _trace_ids,
        structlog.processors.TimeStamper(fmt="iso" if fmt == "json" else "%Y-%m-%d %H:%M:%S"),
    ]
    renderer: Processor
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
        tail: list[Processor] = [structlog.processors.dict_tracebacks]
    else:
        renderer = structlog.dev.ConsoleRenderer(
            colors=False, exception_formatter=structlog.dev.plain_traceback
        )
        tail = [structlog.dev.set_exc_info]
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            *tail,
            _redacted,
            renderer,
        ],
        cache_logger_on_first_use=False,
    )
    pre: list[Processor] = [
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        _without_formatted_copy,
    ]
    handler = logging.StreamHandler(_Stdout())
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*pre, *shared],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                *(tail if fmt == "json" else []),
                _redacted,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers = [h for h in root.handlers if not getattr(h, "_escalator", False)]
    handler._escalator = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.INFO:
        root.setLevel(logging.INFO)
    if fmt == "json":  # uvicorn's own lines (access, errors) become JSON lines too
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
            logging.getLogger(name).handlers = []
            logging.getLogger(name).propagate = True
            logging.getLogger(name).disabled = False  # a dictConfig may have switched it off
