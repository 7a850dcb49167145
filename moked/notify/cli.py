"""`moked notify add|list|remove|test`: a business's notification rules from the shell."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import uuid

from moked.businesses import require_business
from moked.db.models import NotificationRule
from moked.settings import Settings
from moked.statuses import Channel, NotifyWhen


def cmd_add(args: argparse.Namespace, settings: Settings) -> int:
    from moked.db.session import session_scope
    from moked.notify import rules

    channel = Channel(args.channel)
    target = args.url if channel is Channel.WEBHOOK else args.to
    if channel is Channel.WEBHOOK and args.to:
        raise ValueError("a webhook rule takes --url, not --to")
    if channel is not Channel.WEBHOOK and args.url:
        raise ValueError(f"a {channel.value} rule takes --to, not --url")
    hold = None if args.hold is None else args.hold == "yes"
    with session_scope() as session:
        business = require_business(session, args.business)
        rule = rules.add(
            session,
            settings,
            business,
            rules.NewRule(
                channel=channel,
                target=target or "",
                when=NotifyWhen(args.when),
                secret=args.secret,
                quiet_hours=args.quiet_hours,
                hold_in_quiet_hours=hold,
                attach_audio=not args.no_attachment,
            ),
        )
        print(json.dumps(rules.to_dict(rule), ensure_ascii=False))
    return 0


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    from moked.db.session import session_scope
    from moked.notify import rules

    with session_scope() as session:
        business = require_business(session, args.business)
        listed = [rules.to_dict(rule) for rule in rules.rules_of(session, business.id)]
    print(json.dumps(listed, ensure_ascii=False, indent=2))
    return 0


def cmd_remove(args: argparse.Namespace, settings: Settings) -> int:
    from moked.db.session import session_scope
    from moked.notify import rules

    with session_scope() as session:
        business = require_business(session, args.business)
        if not rules.remove(session, business.id, args.rule_id):
            raise ValueError(f"{business.name} has no rule {args.rule_id}")
    print(f"removed rule {args.rule_id}")
    return 0


def _label(rule: NotificationRule) -> str:
    return f"rule {rule.id} {rule.channel.value} {rule.target}"


def cmd_test(args: argparse.Namespace, settings: Settings) -> int:
    """Send a sample alert through each rule now (quiet hours ignored, nothing stored)."""
    from moked.db.session import session_scope
    from moked.notify import alerts, rules
    from moked.notify.channels import DeliveryFailed, Envelope
    from moked.notify.dispatch import sender

    now = dt.datetime.now(dt.UTC)
    failures = 0
    with session_scope() as session:
        business = require_business(session, args.business)
        chosen = [r for r in rules.rules_of(session, business.id) if args.rule in (None, r.id)]
        if not chosen:
            raise ValueError(f"{business.name} has no rule to test")
        number = business.numbers[0].e164 if business.numbers else None
        sample = alerts.sample(settings, business, now)
        for rule in chosen:
            envelope = Envelope(
                channel=rule.channel,
                recipient=rule.target,
                alerts=(sample,),
                message_id=f"msg_test_{uuid.uuid4().hex}",
                attempt=1,
                sent_at=now,
                secret=rule.secret,
                attach_audio=False,
                sender=number,
            )
            try:
                receipt = sender(rule.channel)(settings, envelope)
            except DeliveryFailed as exc:
                failures += 1
                kind = "permanent" if exc.permanent else "transient"
                print(f"{_label(rule)}: failed ({kind}): {exc.reason}")
            else:
                print(f"{_label(rule)}: sent ({receipt.provider_id})")
    return 1 if failures else 0


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    notify = commands.add_parser(
        "notify", help="who hears about a business's calls"
    ).add_subparsers(dest="notify_command", required=True)
    add = notify.add_parser("add", help="add a notification rule")
    add.add_argument("--business", required=True, help="business name or id")
    add.add_argument("--channel", required=True, choices=[c.value for c in Channel])
    add.add_argument("--to", help="email address (email) or E.164 number (sms, whatsapp)")
    add.add_argument("--url", help="the receiver's URL (webhook; https in production)")
    add.add_argument("--secret", help="the webhook's signing secret, whsec_… (Standard Webhooks)")
    add.add_argument(
        "--when",
        default=NotifyWhen.MESSAGE.value,
        choices=[w.value for w in NotifyWhen],
        help="message: a voicemail was left (default); missed: the caller left nothing; all",
    )
    add.add_argument("--quiet-hours", help="e.g. 22:00-07:00, in the business's time zone")
    add.add_argument(
        "--hold",
        choices=("yes", "no"),
        help="hold alerts inside quiet hours for a digest (default: yes for sms/whatsapp)",
    )
    add.add_argument("--no-attachment", action="store_true", help="email: do not attach the MP3")
    add.set_defaults(handler=cmd_add)
    listing = notify.add_parser("list", help="a business's rules")
    listing.add_argument("--business", required=True)
    listing.set_defaults(handler=cmd_list)
    remove = notify.add_parser("remove", help="remove a rule (its past deliveries stay)")
    remove.add_argument("--business", required=True)
    remove.add_argument("rule_id", type=int)
    remove.set_defaults(handler=cmd_remove)
    test = notify.add_parser("test", help="send a sample alert through the rules now")
    test.add_argument("--business", required=True)
    test.add_argument("--rule", type=int, help="only this rule")
    test.set_defaults(handler=cmd_test)
