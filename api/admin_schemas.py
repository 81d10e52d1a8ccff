"""Admin request and response bodies: users, named roles, calendars and SLA policies.

Shape is checked here (422); meaning (a real time zone, hours that do not overlap, a rungs
document that plans) is checked by `domain.admin` (400) with the reason.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StringConstraints,
    model_serializer,
    model_validator,
)
from pydantic.config import JsonDict
from pydantic.json_schema import SkipJsonSchema

from domain import limits
from domain.calendar_preview import DayOff, WorkingDay
from domain.demo import stable_id
from domain.models import BusinessCalendarRow, BusinessCalendarVersion, Role, SlaPolicy, User
from domain.policy import USER_ROLES

HHMM = r"^([01]\d|2[0-3]):[0-5]\d$"
HHMM_OR_24 = r"^(([01]\d|2[0-3]):[0-5]\d|24:00)$"
# Ids of the demo account (`make run`), so examples work when pasted there.
_EXAMPLE_MANAGER = str(stable_id("demo", "user:ada"))
_EXAMPLE_CALENDAR = str(stable_id("demo", "calendar:berlin"))
# No silent trimming: what the schema bounds is exactly what is stored.
# No blank ends and no line breaks, spelled out: `\S` and `.` mean different things in
# JSON Schema's (ECMA) regexes and in pydantic's (Rust), at U+0085, U+FEFF, CR and U+2028/9.
_EDGE = r"[^\s\x85\uFEFF]"
Name = Annotated[
    str,
    StringConstraints(
        min_length=1, max_length=200, pattern=rf"^{_EDGE}([^\n\r\u2028\u2029]*{_EDGE})?$"
    ),
]
_ADDRESS_PART = r"[^@\s\x85\uFEFF]+"  # the same exclusions, for the same reason
Email = Annotated[
    str,
    StringConstraints(
        max_length=320, pattern=rf"^{_ADDRESS_PART}@{_ADDRESS_PART}\.{_ADDRESS_PART}$"
    ),
]
UserRole = Literal["viewer", "engineer", "admin", "owner"]
Timezone = Annotated[str, Field(min_length=1, max_length=64, examples=["Europe/Berlin"])]
QuietTime = Annotated[str, Field(pattern=HHMM, description='local wall time, "HH:MM"')]
_EXAMPLE_HOURS: JsonDict = {str(day): [["09:00", "17:00"]] for day in range(5)}
_EXAMPLE_RUNGS: JsonDict = {
    "remind": {
        "offset": {"business_days": 1},
        "recipients": ["assignee"],
        "channels": ["email", "push"],
        "event_key": "task.reminder",
        "class": "normal",
    },
    "escalate_1": {
        "offset": {"business_days": 1},
        "recipients": ["assignee_manager", "role:quality_manager"],
        "event_key": "task.escalated",
    },
    "escalate_2": None,
}


class UserCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "email": "nora@example.com",
                    "name": "Nora Engineer",
                    "role": "engineer",
                    "manager_id": _EXAMPLE_MANAGER,
                    "timezone": "Europe/Berlin",
                    "quiet_start": "19:00",
                    "quiet_end": "07:00",
                }
            ]
        },
    )

    email: Email
    name: Name
    role: UserRole
    manager_id: uuid.UUID | None = None
    timezone: Timezone = "UTC"
    quiet_start: QuietTime | None = Field(default=None, description="with quiet_end, or neither")
    quiet_end: QuietTime | None = None


def _no_default(schema: JsonDict) -> None:
    schema.pop("default", None)


# A field that may be left out but not sent as null: its schema shows no null default.
_ABSENT: Any = Field(default=None, json_schema_extra=_no_default)


class UserPatch(BaseModel):
    """Only the fields sent change; `null` clears manager_id or the quiet hours."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"role": "admin"}, {"is_active": False}]},
    )

    # Absent means "unchanged"; only the clearable fields may be sent as null.
    email: Email | SkipJsonSchema[None] = _ABSENT
    name: Name | SkipJsonSchema[None] = _ABSENT
    role: UserRole | SkipJsonSchema[None] = _ABSENT
    manager_id: uuid.UUID | None = None
    timezone: Timezone | SkipJsonSchema[None] = _ABSENT
    quiet_start: QuietTime | None = None
    quiet_end: QuietTime | None = None
    is_active: bool | SkipJsonSchema[None] = _ABSENT

    @model_validator(mode="after")
    def _required_fields_stay_set(self) -> UserPatch:
        nulls = [
            key
            for key in ("email", "name", "role", "timezone", "is_active")
            if key in self.model_fields_set and getattr(self, key) is None
        ]
        if nulls:
            raise ValueError(f"{', '.join(nulls)} cannot be null")
        return self


class UserOut(BaseModel):
    id: uuid.UUID
    email: str | None = Field(description="where mail and sign-in links go")
    pending_email: str | None = Field(
        description="a new address asked for and not yet confirmed from it (until then, "
        "`email` stays in use)"
    )
    name: str
    role: str
    manager_id: uuid.UUID | None
    timezone: str
    quiet_start: str | None = Field(description='"HH:MM" local, or null for no quiet hours')
    quiet_end: str | None
    is_active: bool
    deleted_at: datetime | None = Field(description="set once the user is (soft) deleted")
    created_at: datetime

    @classmethod
    def of(cls, user: User) -> UserOut:
        return cls(
            id=user.id,
            email=user.email,
            pending_email=user.pending_email,
            name=user.name,
            role=user.role,
            manager_id=user.manager_id,
            timezone=user.timezone,
            quiet_start=user.quiet_start.strftime("%H:%M") if user.quiet_start else None,
            quiet_end=user.quiet_end.strftime("%H:%M") if user.quiet_end else None,
            is_active=user.is_active,
            deleted_at=user.deleted_at,
            created_at=user.created_at,
        )


class RoleCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"key": "night_shift", "name": "Night shift"}]},
    )

    key: str = Field(pattern=r"^[a-z0-9_]{1,64}$", description='policies name it "role:<key>"')
    name: Name


class RoleOut(BaseModel):
    id: uuid.UUID
    key: str
    name: str
    member_ids: list[uuid.UUID]
    created_at: datetime

    @classmethod
    def of(cls, role: Role, member_ids: list[uuid.UUID]) -> RoleOut:
        return cls(
            id=role.id,
            key=role.key,
            name=role.name,
            member_ids=member_ids,
            created_at=role.created_at,
        )


Weekday = Literal["0", "1", "2", "3", "4", "5", "6"]
WallTime = Annotated[str, Field(pattern=HHMM_OR_24)]


def _in_calendar_years(day: date) -> date:
    limits.check_year(day.year)
    return day


HolidayDate = Annotated[
    date,
    AfterValidator(_in_calendar_years),
    Field(json_schema_extra={"pattern": limits.YEAR_PATTERN}, examples=["2026-12-24"]),
]


class CalendarIn(BaseModel):
    """A whole calendar: POST creates one, PUT replaces one."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "Berlin office",
                    "tz": "Europe/Berlin",
                    "hours": _EXAMPLE_HOURS,
                    "holiday_country": "DE",
                    "holiday_subdivision": "BE",
                    "custom_holidays": ["2026-12-24", "2026-12-31"],
                }
            ]
        },
    )

    name: Name
    tz: Timezone
    hours: dict[Weekday, list[tuple[WallTime, WallTime]]] = Field(
        min_length=1,
        description='weekday (0 = Monday) -> local [start, end) intervals; "24:00" ends a day',
    )
    holiday_country: str | None = Field(default=None, pattern=r"^[A-Z]{2,3}$", examples=["DE"])
    holiday_subdivision: str | None = Field(
        default=None, pattern=r"^[A-Z0-9]{1,6}$", examples=["BE"]
    )
    custom_holidays: list[HolidayDate] = Field(default_factory=list, max_length=1000)


class CalendarCreate(CalendarIn):
    """A new calendar (its example names one the demo does not have yet)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "Munich office",
                    "tz": "Europe/Berlin",
                    "hours": _EXAMPLE_HOURS,
                    "holiday_country": "DE",
                    "holiday_subdivision": "BY",
                }
            ]
        },
    )


class CalendarOut(BaseModel):
    id: uuid.UUID
    name: str
    version: int = Field(description="the newest version; items pin theirs until replanned")
    tz: str
    hours: dict[str, list[list[str]]]
    holiday_country: str | None
    holiday_subdivision: str | None
    custom_holidays: list[str]
    created_at: datetime

    @classmethod
    def of(
        cls, row: BusinessCalendarRow, version: BusinessCalendarVersion | None = None
    ) -> CalendarOut:
        """The calendar as it is now, or as it was at `version`."""
        source = version or row
        return cls(
            id=row.id,
            name=row.name,
            version=row.version if version is None else version.version,
            tz=source.tz,
            hours=source.hours,
            holiday_country=source.holiday_country,
            holiday_subdivision=source.holiday_subdivision,
            custom_holidays=source.custom_holidays,
            created_at=source.created_at,
        )


class CalendarDayOut(BaseModel):
    date: date
    hours: list[tuple[str, str]] = Field(
        description='working intervals in local wall time; "24:00" ends the day',
        examples=[[["09:00", "12:00"], ["13:00", "17:00"]]],
    )
    off: DayOff | None = Field(description="why the day has no working time (null: a working day)")
    reason: str | None = Field(examples=["weekend", "Christmas Day", "custom holiday"])


class CalendarPreviewOut(BaseModel):
    calendar_id: uuid.UUID
    version: int
    tz: str
    days: list[CalendarDayOut] = Field(
        description="local dates, today in the calendar's zone first"
    )

    @classmethod
    def of(cls, row: BusinessCalendarRow, days: list[WorkingDay]) -> CalendarPreviewOut:
        return cls(
            calendar_id=row.id,
            version=row.version,
            tz=row.tz,
            days=[
                CalendarDayOut(date=d.day, hours=list(d.hours), off=d.off, reason=d.reason)
                for d in days
            ],
        )


class _Offset(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_serializer(mode="wrap")
    def _whole_numbers_stay_whole(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        return {
            k: int(v) if isinstance(v, float) and v.is_integer() else v for k, v in data.items()
        }


class DaysOffset(_Offset):
    business_days: int = Field(ge=0, le=limits.MAX_OFFSET["business_days"])


class HoursOffset(_Offset):
    business_hours: float = Field(ge=0, le=limits.MAX_OFFSET["business_hours"], allow_inf_nan=False)


class MinutesOffset(_Offset):
    business_minutes: float = Field(
        ge=0, le=limits.MAX_OFFSET["business_minutes"], allow_inf_nan=False
    )


class SecondsOffset(_Offset):
    business_seconds: float = Field(
        ge=0, le=limits.MAX_OFFSET["business_seconds"], allow_inf_nan=False
    )


# Exactly one unit, at most a year of it.
OffsetIn = DaysOffset | HoursOffset | MinutesOffset | SecondsOffset
_ROLE = "(" + "|".join(USER_ROLES) + ")"
Resolver = Annotated[
    str,
    Field(
        pattern=rf"^(assignee|assignee_manager|claimer|role:[a-z0-9_]{{1,64}}"
        rf"|account_roles:{_ROLE}(,{_ROLE}){{0,3}})$",
        examples=["assignee_manager"],
    ),
]


class RungIn(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    offset: OffsetIn | None = Field(description="null disables the rung")
    recipients: list[Resolver] = Field(
        min_length=1,
        max_length=10,
        description="a chain: the first resolver with a valid recipient wins",
    )
    channels: list[Literal["email", "push", "webhook"]] = Field(
        default=["email", "push"],
        max_length=3,
        description="`webhook` posts to the account's endpoints whose filter matches the event",
    )
    event_key: str = Field(pattern=r"^[a-z0-9_.]{1,100}$", examples=["task.escalated"])
    notification_class: Literal["normal", "critical"] = Field(default="normal", alias="class")
    repeat_every: OffsetIn | None = Field(
        default=None,
        description="once this is the last rung to have fired, tell its people again this "
        "often (business time) until someone claims; null: once",
    )


class RungsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    remind: RungIn | None = None
    escalate_1: RungIn | None = None
    escalate_2: RungIn | None = None
    claim_timeout: OffsetIn | None = Field(
        default=None,
        description="a claim not resolved within this (business time) reopens the item, "
        "and the last tier that fired is told again",
    )


class PolicyVersionIn(BaseModel):
    """The whole of a new version: nothing is carried over from the previous one."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"calendar_id": _EXAMPLE_CALENDAR, "rungs": _EXAMPLE_RUNGS}]
        },
    )

    calendar_id: uuid.UUID
    rungs: RungsIn = Field(description="remind, escalate_1, escalate_2: each a rung or null")
    response_target: OffsetIn | None = Field(
        default=None,
        description='handoff only: how long to respond, e.g. {"business_minutes": 30}',
    )

    def documents(self) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """The rungs and response target as stored: what was sent, nothing filled in."""
        target = self.response_target
        return (
            self.rungs.model_dump(mode="json", by_alias=True, exclude_unset=True),
            None if target is None else target.model_dump(mode="json"),
        )


class PolicyCreate(PolicyVersionIn):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"item_type": "NCR", "calendar_id": _EXAMPLE_CALENDAR, "rungs": _EXAMPLE_RUNGS}
            ]
        },
    )

    item_type: str = Field(pattern=r"^[A-Za-z0-9_]{1,64}$")


class PolicyOut(BaseModel):
    id: uuid.UUID
    item_type: str
    version: int
    calendar_id: uuid.UUID
    response_target: dict[str, Any] | None
    rungs: dict[str, Any]
    created_at: datetime

    @classmethod
    def of(cls, policy: SlaPolicy) -> PolicyOut:
        return cls(
            id=policy.id,
            item_type=policy.item_type,
            version=policy.version,
            calendar_id=policy.calendar_id,
            response_target=policy.response_target,
            rungs=policy.rungs,
            created_at=policy.created_at,
        )
