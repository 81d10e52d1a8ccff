"""SLA policy rungs as stored in `sla_policy.rungs`, parsed and validated.

```json
{"remind":     {"offset": {"business_days": 1}, "recipients": ["assignee"],
                "channels": ["email", "push"], "event_key": "task.reminder", "class": "normal"},
 "escalate_1": {... "recipients": ["assignee_manager", "role:quality_manager"] ...},
 "escalate_2": null}
```

`recipients` is a chain of resolvers: the first that yields at least one *valid* recipient
wins. A `null` rung (or a `null` offset) disables it, as DOC_ACK has no escalate_2.

Escalation never goes silent: a rung may say `"repeat_every": {"business_hours": 4}`, and
once it is the last to have fired, with nothing pending after it, it notifies its people
again that often until someone claims (PagerDuty's repeat). Each repeat's event key is the
rung's with `~<n>` (`task.escalated_final~2`): its own delivery rows, push and audit. And
`"claim_timeout": {"business_hours": 8}` beside the rungs reopens an item whose claim was
not resolved in that time (audited `claim_timed_out`), which tells its people again.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal, get_args

from domain.planning import Offset, RungName

Channel = Literal["email", "push", "webhook"]
CHANNELS: tuple[Channel, ...] = get_args(Channel)
NotificationClass = Literal["normal", "critical"]
RUNG_NAMES: tuple[RungName, ...] = get_args(RungName)
USER_ROLES = ("viewer", "engineer", "admin", "owner")

_RESOLVER = re.compile(
    r"^(assignee|assignee_manager|claimer|role:[a-z0-9_]+|account_roles:[a-z,]+)$"
)


class PolicyError(ValueError):
    """A policy document that cannot be planned with; the message says what is wrong."""


@dataclass(frozen=True, kw_only=True)
class RungPolicy:
    name: RungName
    offset: Offset
    recipients: tuple[str, ...]
    channels: tuple[Channel, ...]
    event_key: str
    critical: bool
    repeat_every: Offset | None = None


REPEAT_MARK = "~"


def repeat_event(event_key: str, repeat: int) -> str:
    """The event key of a rung's `repeat`th repeat: `task.escalated_final~2`."""
    return f"{event_key}{REPEAT_MARK}{repeat}" if repeat else event_key


def base_event(event_key: str) -> tuple[str, int]:
    """A (possibly repeated) event key's rung event key and repeat number (0: the first)."""
    base, _, repeat = event_key.partition(REPEAT_MARK)
    return base, int(repeat) if repeat.isdigit() else 0


def check_resolver(resolver: str) -> str:
    if not _RESOLVER.match(resolver):
        raise PolicyError(
            f"unknown recipient resolver {resolver!r}: use assignee, assignee_manager, "
            "claimer, role:<key> or account_roles:<role>,<role>"
        )
    if resolver.startswith("account_roles:"):
        roles = resolver.removeprefix("account_roles:").split(",")
        unknown = [r for r in roles if r not in USER_ROLES]
        if unknown:
            raise PolicyError(f"unknown user roles {unknown} in {resolver!r}")
    return resolver


def parse_rung(name: RungName, data: Mapping[str, Any]) -> RungPolicy | None:
    if not isinstance(data, Mapping):
        raise PolicyError(f"rung {name} must be an object or null")
    if data.get("offset") is None:
        return None
    try:
        offset = Offset.from_dict(data["offset"])
    except ValueError as error:
        raise PolicyError(f"rung {name}: {error}") from error
    recipients = data.get("recipients")
    if not isinstance(recipients, list) or not recipients:
        raise PolicyError(f"rung {name}: recipients must be a non-empty list of resolvers")
    channels = data.get("channels", ["email", "push"])
    if not isinstance(channels, list) or not all(c in CHANNELS for c in channels):
        raise PolicyError(
            f"rung {name}: channels must be a list of 'email', 'push' and/or 'webhook' "
            "(to the account's webhook endpoints whose filter matches the event key)"
        )
    event_key = data.get("event_key")
    if not isinstance(event_key, str) or not re.fullmatch(r"[a-z0-9_.]{1,100}", event_key):
        raise PolicyError(f"rung {name}: event_key must match [a-z0-9_.]{{1,100}}")
    cls = data.get("class", "normal")
    if cls not in ("normal", "critical"):
        raise PolicyError(f"rung {name}: class must be 'normal' or 'critical', not {cls!r}")
    return RungPolicy(
        name=name,
        offset=offset,
        recipients=tuple(check_resolver(str(r)) for r in recipients),
        channels=tuple(channels),
        event_key=event_key,
        critical=cls == "critical",
        repeat_every=_repeat(name, data.get("repeat_every")),
    )


def _repeat(name: RungName, data: Any) -> Offset | None:
    if data is None:
        return None
    try:
        every = Offset.from_dict(data)
    except ValueError as error:
        raise PolicyError(f"rung {name}: repeat_every: {error}") from error
    if every.business_days == 0 or every.business_time == timedelta(0):
        raise PolicyError(f"rung {name}: repeat_every must be more than no time")
    return every


def parse_rungs(data: Mapping[str, Any]) -> dict[RungName, RungPolicy | None]:
    if not isinstance(data, Mapping):
        raise PolicyError("rungs must be an object keyed by remind, escalate_1, escalate_2")
    unknown = set(data) - set(RUNG_NAMES) - {CLAIM_TIMEOUT}
    if unknown:
        raise PolicyError(f"unknown rungs {sorted(unknown)}: use {', '.join(RUNG_NAMES)}")
    claim_timeout(data)  # checked with the rungs
    parsed = {name: parse_rung(name, data[name]) if data.get(name) else None for name in RUNG_NAMES}
    keys = [rung.event_key for rung in parsed.values() if rung is not None]
    if len(keys) != len(set(keys)):
        # The delivery dedup key includes the event key: two rungs sharing one would
        # collapse the second onto the first (EasySynQ's S-remind2 lesson).
        raise PolicyError(f"each rung needs its own event_key, got {keys}")
    return parsed


CLAIM_TIMEOUT = "claim_timeout"


def claim_timeout(data: Mapping[str, Any]) -> Offset | None:
    """The policy's acknowledgement timeout (`"claim_timeout": {"business_hours": 8}` beside
    the rungs): a claim not resolved within it reopens the item and tells its people again."""
    found = data.get(CLAIM_TIMEOUT) if isinstance(data, Mapping) else None
    if found is None:
        return None
    try:
        timeout = Offset.from_dict(found)
    except ValueError as error:
        raise PolicyError(f"claim_timeout: {error}") from error
    if timeout.business_days == 0 or timeout.business_time == timedelta(0):
        raise PolicyError("claim_timeout must be more than no time")
    return timeout


def offsets(rungs: Mapping[RungName, RungPolicy | None]) -> dict[RungName, Offset | None]:
    return {name: rung.offset if rung else None for name, rung in rungs.items()}
