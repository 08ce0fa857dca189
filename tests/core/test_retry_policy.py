"""RetryPolicy: the one backoff arithmetic (bounds, cap, jitter, overflow) and its pauses."""

from __future__ import annotations

import asyncio
import math
import random

import pytest

from setpiece import RetryPolicy
from setpiece.errors import ConfigError

NO_JITTER = RetryPolicy(initial_delay=0.1, max_delay=1.0, multiplier=2.0, jitter=0)


def test_delays_double_from_the_initial_delay_up_to_the_cap() -> None:
    assert [NO_JITTER.delay(n) for n in range(1, 7)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]


def test_the_default_keeps_its_documented_values() -> None:
    policy = RetryPolicy()
    assert (policy.max_attempts, policy.initial_delay, policy.max_delay) == (4, 0.1, 1.0)
    assert (policy.multiplier, policy.jitter) == (2.0, 0.5)


@pytest.mark.parametrize("retry", [64, 1_100, 10**6, 10**30])
def test_huge_retry_numbers_give_the_cap_without_overflow(retry: int) -> None:
    assert NO_JITTER.delay(retry) == 1.0
    assert 0.5 <= RetryPolicy().delay(retry) <= 1.0
    uncapped = RetryPolicy(initial_delay=0.02, max_delay=math.inf, jitter=0)
    if retry > 1_025:  # past what a float holds
        assert uncapped.delay(retry) == math.inf  # the limit, not an OverflowError
    assert RetryPolicy(initial_delay=0, jitter=0).delay(retry) == 0.0


def test_a_multiplier_of_one_keeps_the_delay_constant() -> None:
    flat = RetryPolicy(initial_delay=0.3, multiplier=1, jitter=0)
    assert {flat.delay(n) for n in (1, 2, 50, 10**9)} == {0.3}


@pytest.mark.parametrize(("jitter", "low"), [(1.0, 0.0), (0.5, 0.5), (0.25, 0.75)])
def test_jitter_takes_off_at_most_its_share_of_the_delay(jitter: float, low: float) -> None:
    policy = RetryPolicy(initial_delay=0.1, max_delay=1.0, jitter=jitter)
    rng = random.Random(7)
    for retry in range(1, 12):
        full = NO_JITTER.delay(retry)
        seen = [policy.delay(retry, rng) for _ in range(200)]
        assert all(full * low <= d <= full for d in seen)
        assert max(seen) - min(seen) > full * jitter * 0.5  # actually spread, not constant


def test_jitter_ends_of_the_range() -> None:
    class Fixed(random.Random):
        def __init__(self, value: float) -> None:
            super().__init__()
            self.value = value

        def random(self) -> float:
            return self.value

    equal = RetryPolicy(initial_delay=0.4, max_delay=1.0, jitter=0.5)
    assert equal.delay(1, Fixed(0.0)) == 0.4
    assert equal.delay(1, Fixed(0.999999)) == pytest.approx(0.2, abs=1e-6)
    full = RetryPolicy(initial_delay=0.4, max_delay=1.0, jitter=1.0)
    assert full.delay(1, Fixed(0.999999)) == pytest.approx(0.0, abs=1e-6)


def test_a_seeded_random_gives_the_same_delays() -> None:
    policy = RetryPolicy(jitter=1.0)
    first = [policy.delay(n, random.Random(42)) for n in range(1, 9)]
    again = [policy.delay(n, random.Random(42)) for n in range(1, 9)]
    assert first == again


def test_retry_numbers_start_at_one() -> None:
    with pytest.raises(ValueError, match="retry must be at least 1, got 0"):
        RetryPolicy().delay(0)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"initial_delay": -1}, "initial_delay"),
        ({"max_delay": -0.5}, "max_delay"),
        ({"max_delay": math.nan}, "max_delay"),
        ({"multiplier": 0.5}, "multiplier"),
        ({"jitter": 1.5}, "jitter"),
    ],
)
def test_bad_values_name_the_field(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ConfigError, match=f"RetryPolicy.{field}"):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_backoff_pauses_until_the_attempts_run_out(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []

    async def sleep(delay: float) -> None:
        slept.append(delay)

    monkeypatch.setattr(asyncio, "sleep", sleep)

    async def main() -> list[bool]:
        backoff = RetryPolicy(max_attempts=4, jitter=0).backoff()
        return [await backoff.pause() for _ in range(5)]

    assert asyncio.run(main()) == [True, True, True, False, False]
    assert slept == [0.1, 0.2, 0.4]  # three retries after the first attempt: four in all


def test_backoff_stops_before_a_pause_would_pass_the_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [100.0]
    monkeypatch.setattr("setpiece.policy.time.monotonic", lambda: clock[0])

    async def sleep(delay: float) -> None:
        clock[0] += delay

    monkeypatch.setattr(asyncio, "sleep", sleep)
    unbounded = RetryPolicy(max_attempts=10**9, initial_delay=0.02, max_delay=0.5, jitter=0)

    async def main() -> int:
        backoff = unbounded.backoff(budget=1.0)
        while await backoff.pause():
            pass
        return backoff.retries

    # 0.02 + 0.04 + 0.08 + 0.16 + 0.32 = 0.62; a 0.5 s pause more would end at 1.12 > 1.0
    assert asyncio.run(main()) == 5
    assert clock[0] == pytest.approx(100.62)


# -- the backoffs of setpiece itself, each a RetryPolicy named for its purpose ---------------


def test_the_supervisor_restarts_after_a_tenth_doubling_to_thirty_seconds() -> None:
    from setpiece.runtime.runtime import _RESTART

    assert [_RESTART.delay(n) for n in (1, 2, 3, 9, 10)] == [0.1, 0.2, 0.4, 25.6, 30.0]
    assert _RESTART.delay(5_000) == 30.0  # a task that keeps crashing for days


def test_a_consumer_reconnects_after_four_tenths_doubling_to_five_seconds() -> None:
    from setpiece.runtime.consumer import _RECONNECT

    assert [_RECONNECT.delay(n) for n in (1, 2, 3, 4, 5, 10**6)] == [0.4, 0.8, 1.6, 3.2, 5, 5]


def test_the_engine_retries_an_unreachable_server_from_20ms_to_half_a_second() -> None:
    from setpiece.engine.retry import UNREACHABLE

    assert [UNREACHABLE.delay(n) for n in (1, 2, 5, 6, 10**6)] == [0.02, 0.04, 0.32, 0.5, 0.5]


def test_waiting_for_an_execution_looks_from_2ms_to_a_tenth() -> None:
    from setpiece.workflows._api import _EXECUTION_POLL

    assert [_EXECUTION_POLL.delay(n) for n in (1, 2, 6, 7, 10**6)] == [
        0.002, 0.004, 0.064, 0.1, 0.1
    ]


def test_the_gateway_retries_a_call_after_its_backoff_doubled() -> None:
    from setpiece.http import CallPolicy

    policy = CallPolicy(retries=3, backoff=0.02).retry_policy
    assert policy.max_attempts == 4
    assert [policy.delay(n) for n in (1, 2, 3)] == [0.02, 0.04, 0.08]
    assert CallPolicy(retries=2_000).retry_policy.delay(2_000) == math.inf  # no OverflowError
