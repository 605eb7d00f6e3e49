from __future__ import annotations

import pytest

from aetheris import RetryableError, RetryPolicy, crashpoints
from aetheris.crashpoints import SimulatedCrash
from aetheris.errors import ConfigurationError
from aetheris.store.port import EffectClass


def test_crash_plan_hits_the_nth_matching_point() -> None:
    crashpoints.configure("after_intent:pay@2", action="raise")
    try:
        crashpoints.reach("after_intent", "other")
        crashpoints.reach("before_intent", "pay")
        crashpoints.reach("after_intent", "pay")
        with pytest.raises(SimulatedCrash, match="after_intent:pay"):
            crashpoints.reach("after_intent", "pay")
        crashpoints.reach("after_intent", "pay")
    finally:
        crashpoints.configure(None)


def test_crash_plan_rejects_unknown_points() -> None:
    with pytest.raises(ConfigurationError, match="unknown point"):
        crashpoints.configure("during_lunch")


def test_retry_policy_backs_off_with_jitter_and_a_cap() -> None:
    policy = RetryPolicy(
        max_attempts=10, initial_interval=1.0, backoff=2.0, max_interval=5.0, jitter=0.1
    )
    assert policy.delay(1, 0.5) == 1.0
    assert policy.delay(1, 0.0) == pytest.approx(0.9)
    assert policy.delay(2, 0.999) == pytest.approx(2.2, abs=1e-3)
    assert policy.delay(6, 0.0) == pytest.approx(4.5)


def test_retry_policy_classes() -> None:
    policy = RetryPolicy(max_attempts=3, give_up_on=(KeyError,))
    assert policy.allows(ValueError(), 1, EffectClass.PURE)
    assert not policy.allows(ValueError(), 3, EffectClass.PURE)
    assert not policy.allows(KeyError(), 1, EffectClass.IDEMPOTENT)
    assert not policy.allows(ValueError(), 1, EffectClass.AT_MOST_ONCE)
    assert policy.allows(RetryableError(), 1, EffectClass.AT_MOST_ONCE)
    with pytest.raises(ConfigurationError):
        RetryPolicy(max_attempts=0)
