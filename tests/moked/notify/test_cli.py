"""`moked notify add|list|remove|test`: the real console script against the test stack;
bad input is one line on stderr, never a traceback."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest

from moked.db.models import Business
from moked.notify.channels.webhook import new_secret
from tests.harness import StackUnderTest
from tests.moked.notify.receivers import WebhookReceiver
from tests.moked.test_cli import moked


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    running = WebhookReceiver().start()
    yield running
    running.stop()


def test_add_list_test_remove(
    stack: StackUnderTest, make_business: Callable[..., Business], receiver: WebhookReceiver
) -> None:
    business = make_business()
    added = moked(
        stack, "notify", "add", "--business", str(business.id), "--channel", "email",
        "--to", "Owner@Example.ORG", "--quiet-hours", "22:00-07:00",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    email_rule = json.loads(added.stdout)
    assert email_rule["to"] == "Owner@example.org"
    assert (email_rule["when"], email_rule["quiet_hours"]) == ("message", "22:00-07:00")
    assert email_rule["hold_in_quiet_hours"] is False  # email is not held unless asked

    secret = new_secret()
    hook = moked(
        stack, "notify", "add", "--business", business.name, "--channel", "webhook",
        "--url", receiver.url, "--secret", secret, "--when", "all",
    )  # fmt: skip
    assert hook.returncode == 0, hook.stderr
    webhook_rule = json.loads(hook.stdout)
    assert secret not in hook.stdout  # the secret is never printed back

    listed = json.loads(moked(stack, "notify", "list", "--business", business.name).stdout)
    assert [r["id"] for r in listed] == [email_rule["id"], webhook_rule["id"]]

    tested = moked(
        stack, "notify", "test", "--business", business.name, "--rule", str(webhook_rule["id"])
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "sent (HTTP 200)" in tested.stdout
    assert len(receiver.requests) == 1
    assert json.loads(receiver.requests[0].body)["type"] == "call.message_ready"

    removed = moked(stack, "notify", "remove", "--business", business.name, str(email_rule["id"]))
    assert removed.returncode == 0, removed.stderr
    listed = json.loads(moked(stack, "notify", "list", "--business", business.name).stdout)
    assert [r["id"] for r in listed] == [webhook_rule["id"]]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--channel", "email", "--to", "not-an-address"), "not an email address"),
        (("--channel", "sms", "--to", "12"), "not a phone number"),
        (("--channel", "webhook", "--url", "ftp://example.org/x", "--secret", "whsec_x"), "URL"),
        (("--channel", "webhook", "--url", "http://127.0.0.1:9/x"), "needs --secret"),
        (("--channel", "email", "--to", "a@b.org", "--quiet-hours", "late"), "quiet hours"),
        (("--channel", "email", "--to", "a@b.org", "--secret", "whsec_abc"), "only webhook"),
    ],
)
def test_bad_rules_are_one_line(
    stack: StackUnderTest,
    make_business: Callable[..., Business],
    args: tuple[str, ...],
    message: str,
) -> None:
    business = make_business()
    result = moked(stack, "notify", "add", "--business", business.name, *args)
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_an_unknown_business_is_one_line(stack: StackUnderTest) -> None:
    result = moked(stack, "notify", "list", "--business", "no such business 0")
    assert result.returncode == 1
    assert result.stderr.strip() == "moked: no business 'no such business 0'"
