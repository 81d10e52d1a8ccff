"""The floor workflow's input, outside the sandboxed workflow module (a dataclass with a
datetime defined inside one fails to decode)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, kw_only=True)
class FloorInput:
    tag: str  # the X-Escalator-Item header of its mail, to match it at the sink
    fire_at: datetime
    to: str
