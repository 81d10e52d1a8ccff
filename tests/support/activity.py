"""Running an activity method in Temporal's `ActivityEnvironment` with the timeout the
workflow gives it (the engine budgets its sends by that timeout; the environment's own
default is one second)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import timedelta
from typing import TypeVar

from temporalio.testing import ActivityEnvironment

Arg = TypeVar("Arg")
Result = TypeVar("Result")


def environment(timeout: timedelta = timedelta(minutes=1)) -> ActivityEnvironment:
    env = ActivityEnvironment()
    env.info = replace(env.info, start_to_close_timeout=timeout)
    return env


async def run(
    method: Callable[[Arg], Awaitable[Result]],
    arg: Arg,
    allowed: timedelta = timedelta(minutes=1),
) -> Result:
    return await environment(allowed).run(method, arg)
