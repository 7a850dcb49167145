"""moked.login_throttle on the test run's Postgres, with the clock given explicitly."""

from __future__ import annotations

import datetime as dt
import secrets

from moked import login_throttle
from moked.db.models import LoginThrottle
from moked.db.session import session_scope
from moked.login_throttle import (
    FORGET_AFTER,
    FREE_ACCOUNT_FAILURES,
    FREE_ADDRESS_FAILURES,
    MAX_DELAY,
    Attempt,
    delay_after,
)
from tests.harness import StackUnderTest


def names() -> tuple[str, str, str]:
    tag = secrets.token_hex(4)
    return f"10.{tag}.1", f"10.{tag}.2", f"owner-{tag}@alpha.test"


def attempt(address: str, account: str, at: dt.datetime) -> Attempt:
    with session_scope() as session:
        return login_throttle.begin(session, address=address, account=account, now=at)


def test_delays_double_up_to_the_ceiling() -> None:
    assert [delay_after(n, 5).total_seconds() for n in range(1, 10)] == [
        0, 0, 0, 0, 1, 2, 4, 8, 16,
    ]  # fmt: skip
    assert delay_after(15, 5) == MAX_DELAY
    assert delay_after(10**6, 5) == MAX_DELAY


def test_account_blocks_failing_addresses_only(stack: StackUnderTest) -> None:
    attacker, owner, account = names()
    now = dt.datetime.now(dt.UTC)
    for _ in range(FREE_ACCOUNT_FAILURES):
        assert attempt(attacker, account, now).allowed  # each booked as a failure
        now += dt.timedelta(milliseconds=10)
    refused = attempt(attacker, account, now)
    assert not refused.allowed
    assert refused.retry_at is not None
    assert 0.9 < (refused.retry_at - now).total_seconds() <= 1
    # The owner's address has not failed: let through, and a right password gives its
    # booking back, leaving the attack's block in place.
    mine = attempt(owner, account, now)
    assert mine.allowed
    with session_scope() as session:
        login_throttle.succeeded(session, mine)
    with session_scope() as session:
        row = session.get(LoginThrottle, ("account", account))
        assert row is not None
        assert row.failures == FREE_ACCOUNT_FAILURES
        assert row.blocked_until == refused.retry_at
        owner_row = session.get(LoginThrottle, ("address", owner))
        assert owner_row is not None and owner_row.failures == 0
    # After the block: one more guess, then a block twice as long.
    assert refused.retry_at is not None
    now = refused.retry_at
    assert attempt(attacker, account, now).allowed
    again = attempt(attacker, account, now)
    assert not again.allowed and again.retry_at == now + dt.timedelta(seconds=2)
    assert again.retry_after(now) == 2
    # Forgotten an hour after the last failure.
    assert attempt(attacker, account, now + FORGET_AFTER + dt.timedelta(seconds=1)).allowed


def test_an_address_is_blocked_whatever_the_account(stack: StackUnderTest) -> None:
    address, _, _ = names()
    now = dt.datetime.now(dt.UTC)
    for i in range(FREE_ADDRESS_FAILURES):
        assert attempt(address, f"spray-{i}-{secrets.token_hex(3)}@x.test", now).allowed
    refused = attempt(address, f"another-{secrets.token_hex(3)}@x.test", now)
    assert not refused.allowed and refused.retry_at == now + dt.timedelta(seconds=1)


def test_a_success_never_clears_earlier_failures(stack: StackUnderTest) -> None:
    """An attacker with an account of their own cannot reset their address by using it."""
    address, _, account = names()
    own = f"own-{secrets.token_hex(3)}@x.test"
    now = dt.datetime.now(dt.UTC)
    for _ in range(3):
        assert attempt(address, account, now).allowed
    mine = attempt(address, own, now)
    with session_scope() as session:
        login_throttle.succeeded(session, mine)
    with session_scope() as session:
        row = session.get(LoginThrottle, ("address", address))
        assert row is not None and row.failures == 3


def test_old_counters_are_deleted(stack: StackUnderTest) -> None:
    old_address, address, account = names()
    now = dt.datetime.now(dt.UTC)
    assert attempt(old_address, f"old-{account}", now - 2 * FORGET_AFTER).allowed
    assert attempt(address, account, now).allowed
    with session_scope() as session:
        assert session.get(LoginThrottle, ("address", old_address)) is None
        assert session.get(LoginThrottle, ("account", f"old-{account}")) is None
        assert session.get(LoginThrottle, ("address", address)) is not None
