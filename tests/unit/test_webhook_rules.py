"""The pure rules of webhooks: the policy channel, event filters, URLs and the signing
secrets of a rotation."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from domain.errors import Invalid
from domain.policy import PolicyError, parse_rung
from domain.webhooks import check_url, matches, new_secret, signing_secrets

RUNG = {"offset": {"business_days": 1}, "recipients": ["assignee"], "event_key": "task.late"}


def test_a_rung_may_notify_webhooks_and_nothing_unknown() -> None:
    rung = parse_rung("escalate_1", {**RUNG, "channels": ["email", "webhook"]})
    assert rung is not None
    assert rung.channels == ("email", "webhook")
    with pytest.raises(PolicyError, match="'email', 'push' and/or 'webhook'"):
        parse_rung("escalate_1", {**RUNG, "channels": ["sms"]})


@pytest.mark.parametrize(
    ("event_filter", "event_key", "expected"),
    [
        ([], "task.reminder", True),
        (["task.*"], "task.reminder", True),
        (["task.*"], "handoff.escalated", False),
        (["handoff.*", "task.escalated"], "task.escalated", True),
        (["task.escalated"], "task.escalated_final", False),
        (["task.escalated*"], "task.escalated_final", True),
        (["TASK.*"], "task.reminder", False),  # case matters, as event keys are lower-case
        (["task.?eminder"], "task.reminder", True),
    ],
)
def test_event_filters_are_fnmatch_patterns(
    event_filter: list[str], event_key: str, expected: bool
) -> None:
    assert matches(event_filter, event_key) is expected


@pytest.mark.parametrize(
    "url", ["https://hooks.example.com/x?y=1", "http://127.0.0.1:8080/hook", "HTTPS://[::1]/h"]
)
def test_http_and_https_urls_with_a_host_are_accepted(url: str) -> None:
    assert check_url(url) == url


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/x", "http:// or https://"),
        ("javascript:alert(1)", "http:// or https://"),
        ("https://", "host"),
        ("http://:80/x", "host"),
        ("https://example.com:70000/", "not a valid URL"),
        ("https://[::1/x", "not a valid URL"),
        ("https://example.com/\nx", "control characters"),
        ("https://example.com/" + "x" * 2000, "longer than 2000"),
    ],
)
def test_other_urls_are_refused_with_the_reason(url: str, reason: str) -> None:
    with pytest.raises(Invalid, match=reason):
        check_url(url)


@dataclass
class Endpoint:
    secret: str
    previous_secret: str | None
    previous_secret_until: datetime | None


def test_the_old_secret_signs_alongside_only_until_its_grace_ends() -> None:
    now = datetime(2026, 12, 6, 12, tzinfo=UTC)
    new, old = new_secret(), new_secret()
    rotating = Endpoint(new, old, now + timedelta(hours=24))
    assert signing_secrets(rotating, now) == [new, old]
    assert signing_secrets(rotating, now + timedelta(hours=24)) == [new]
    assert signing_secrets(Endpoint(new, None, None), now) == [new]
    assert new.startswith("whsec_")
    assert new != old
