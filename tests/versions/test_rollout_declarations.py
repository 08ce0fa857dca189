"""Rollout and AbortPolicy: checked when declared and when the stack is built."""

from __future__ import annotations

from typing import Any

import pytest

from setpiece import AbortPolicy, ConfigError, Rollout, Service, Stack, Stream


def pair(v2_name: str = "award", **on: Any) -> tuple[Service, Service]:
    v1, v2 = Service("loyalty"), Service("loyalty", version="2")
    v1.on({"type": ["order"]}, name="award")(lambda e: None)
    v2.on(on.pop("pattern", {"type": ["order"]}), name=v2_name, **on)(lambda e: None)
    return v1, v2


def test_a_canary_needs_a_share_in_range_and_a_shadow_none() -> None:
    _, v2 = pair()
    with pytest.raises(ConfigError, match="needs share="):
        Rollout(v2)
    for share in (-0.1, 1.5, float("nan"), True, "0.3"):
        with pytest.raises(ConfigError, match=r"share must be in \[0, 1\]"):
            Rollout(v2, share=share)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="share= is for canaries"):
        Rollout(v2, mode="shadow", share=0.5)
    with pytest.raises(ConfigError, match="mode must be"):
        Rollout(v2, mode="blue-green", share=0.5)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="expected a Service"):
        Rollout("loyalty", share=0.5)  # type: ignore[arg-type]
    assert Rollout(v2, share=1).share == 1.0
    assert (Rollout(v2, share=0.3).service, Rollout(v2, share=0.3).version) == ("loyalty", "2")


def test_an_abort_policy_is_checked() -> None:
    with pytest.raises(ConfigError, match="margin"):
        AbortPolicy(margin=1.0)
    with pytest.raises(ConfigError, match="min_deliveries"):
        AbortPolicy(min_deliveries=0)
    _, v2 = pair()
    with pytest.raises(ConfigError, match="abort must be an AbortPolicy"):
        Rollout(v2, share=0.1, abort=0.2)  # type: ignore[arg-type]


def test_the_stack_checks_a_rollout_against_its_primary() -> None:
    v1, v2 = pair()
    Stack("s", services=[v1], rollouts=[Rollout(v2, share=0.2)])
    with pytest.raises(ConfigError, match="declares no service 'loyalty'"):
        Stack("s", rollouts=[Rollout(v2, share=0.2)])
    with pytest.raises(ConfigError, match="two rollouts of service 'loyalty'"):
        Stack("s", services=[v1], rollouts=[Rollout(v2, share=0.2), Rollout(v2, share=0.3)])
    with pytest.raises(ConfigError, match="the primary itself"):
        Stack("s", services=[v1], rollouts=[Rollout(v1, share=0.2)])
    same = Service("loyalty")
    with pytest.raises(ConfigError, match="version '1' is the primary's too"):
        Stack("s", services=[v1], rollouts=[Rollout(same, share=0.2)])
    v1, v2 = pair("fresh")
    with pytest.raises(ConfigError, match="handler 'fresh' has no event or stream handler"):
        Stack("s", services=[v1], rollouts=[Rollout(v2, share=0.2)])
    v1, v2 = pair(pattern={"type": ["refund"]})
    with pytest.raises(ConfigError, match="pattern differs"):
        Stack("s", services=[v1], rollouts=[Rollout(v2, share=0.2)])
    v1 = Service("loyalty")
    v1.on({"type": ["order"]}, name="award")(lambda e: None)
    v2 = Service("loyalty", version="2")
    v2.consume("orders", name="award")(lambda e: None)
    with pytest.raises(ConfigError, match="stream 'orders', version '1' to bus 'default'"):
        Stack("s", services=[v1], streams=[Stream("orders")],
              rollouts=[Rollout(v2, share=0.2)])
    with pytest.raises(ConfigError, match="expected Rollout"):
        Stack("s", services=[v1], rollouts=[v2])  # type: ignore[list-item]


def test_a_candidate_without_a_handler_leaves_it_to_the_primary() -> None:
    v1, v2 = pair()
    v1.on({"type": ["other"]}, name="other")(lambda e: None)
    rollout = Rollout(v2, share=0.5)
    Stack("s", services=[v1], rollouts=[rollout])
    assert rollout.handler("award") is not None and rollout.handler("other") is None
