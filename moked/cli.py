"""The `moked` command: run the stack, manage businesses, inspect calls, reconcile."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from moked.settings import ConfigurationError, Settings, get_settings

DEMO_BUSINESS = "עסק לדוגמה"
DEMO_NUMBER = "+97235550100"
DEMO_GREETING_TEXT = "שלום, הגעתם לעסק לדוגמה. אנא השאירו הודעה אחרי הצליל."
DEMO_ADMIN_EMAIL = "admin@moked.local"
DEMO_ADMIN_FILE = "demo-admin.txt"
"""Under STATE_DIR (mode 0600): the demo admin's generated login, so `make up` shows it again."""
DEMO_ADMIN_PHONE = "+972545550199"
"""The demo admin's phone: in development the simulator rings it (and it answers) when
they call a caller back from the CRM."""

Handler = Callable[[argparse.Namespace, Settings], int]


def _print_json(data: object) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2, default=str))


# --- stack ------------------------------------------------------------------------------


def _layout(settings: Settings) -> object:
    from moked.stack.config import REPO_ROOT, StackLayout
    from moked.stack.native import resolve_paths

    settings = resolve_paths(settings, REPO_ROOT)
    return StackLayout(settings=settings, state_dir=settings.state_dir)


def cmd_stack_up(args: argparse.Namespace, settings: Settings) -> int:
    from moked.stack import native
    from moked.stack.config import StackLayout

    layout = _layout(settings)
    assert isinstance(layout, StackLayout)
    native.start(layout)
    login: list[str] = []
    if not args.no_seed:
        seed_demo(layout.settings)
        login = seed_demo_admin(layout.settings)
    native.wait_healthy(layout)
    print(f"Moked is up (state in {layout.state_dir})")
    print(f"  webhooks (Twilio) : {layout.settings.public_base}/webhook/incoming_call")
    print(f"  greetings         : {layout.settings.public_base}/server/static/voice_responses/")
    print(f"  CRM               : {layout.http_url}/")
    print(f"  Prometheus        : http://127.0.0.1:{layout.settings.prometheus_port}/alerts")
    print(f"  Alertmanager      : http://127.0.0.1:{layout.settings.alertmanager_port}/")
    for line in login:
        print(f"  CRM login         : {line}")
    print(f"  mail              : {_mail_destination(layout.settings)}")
    print(f"  transcription     : {transcription_summary(layout.settings)}")
    print(f"  logs              : {layout.log_dir}")
    print("  stop              : make down")
    return 0


def transcription_summary(settings: Settings) -> str:
    """Where Hebrew goes, and the one command to fix base-quality Hebrew transcripts."""
    from moked.models import ModelError, hebrew_warning, route_for

    try:
        route = route_for(settings, "he")
    except ModelError as exc:
        return f"PROBLEM: {exc}"
    return hebrew_warning(settings) or f"Hebrew → {route.backend.value}/{route.model}"


def _mail_destination(settings: Settings) -> str:
    """Where alert emails go: the development sink's directory, or the SMTP server."""
    from urllib.parse import urlsplit

    from moked.mail_sink import sink_address

    address = sink_address(settings)
    if address is None:
        parts = urlsplit(settings.smtp_url)
        server = parts.netloc.rpartition("@")[2]  # never the credentials
        return f"{parts.scheme}://{server} (SMTP_URL)"
    host, port = address
    return f"{settings.mail_dir}/ (development sink on {host}:{port})"


def cmd_stack_down(args: argparse.Namespace, settings: Settings) -> int:
    from moked.stack import native
    from moked.stack.config import StackLayout

    layout = _layout(settings)
    assert isinstance(layout, StackLayout)
    native.stop(layout)
    print("Moked is down")
    return 0


def cmd_stack_status(args: argparse.Namespace, settings: Settings) -> int:
    from moked.stack import native
    from moked.stack.config import StackLayout

    layout = _layout(settings)
    assert isinstance(layout, StackLayout)
    if not native.supervisor_running(layout):
        print("Moked is not running")
        return 1
    print(native.supervisorctl(layout, "status", check=False), end="")
    return 0


def seed_demo(settings: Settings) -> None:
    """The demo business with a synthesised Hebrew greeting (idempotent)."""
    from moked.businesses import BusinessSpec, business_named, upsert_business
    from moked.db.session import session_scope
    from moked.greetings import is_playable, synthesize_mp3

    with session_scope() as session:
        existing = business_named(session, DEMO_BUSINESS)
        needs_audio = existing is None or not is_playable(
            settings.greetings_dir, existing.greeting_file
        )
    spec = BusinessSpec(
        name=DEMO_BUSINESS,
        numbers=(DEMO_NUMBER,),
        greeting_mp3=synthesize_mp3(DEMO_GREETING_TEXT, "he") if needs_audio else None,
        greeting_text=DEMO_GREETING_TEXT,
    )
    with session_scope() as session:
        upsert_business(session, spec, settings.greetings_dir)


def seed_demo_admin(settings: Settings) -> list[str]:
    """The demo admin (idempotent); its generated password is kept in STATE_DIR."""
    from werkzeug.security import check_password_hash

    from moked.accounts import Role, add_user, find_user
    from moked.db.session import session_scope

    path = settings.state_dir / DEMO_ADMIN_FILE
    with session_scope() as session:
        user = find_user(session, DEMO_ADMIN_EMAIL)
        if user is None:
            created = add_user(
                session,
                DEMO_ADMIN_EMAIL,
                role=Role.ADMIN,
                business=DEMO_BUSINESS,
                phone=DEMO_ADMIN_PHONE,
            )
            assert created.password is not None
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"{DEMO_ADMIN_EMAIL}\n{created.password}\n", encoding="utf-8")
            path.chmod(0o600)
            return [f"{DEMO_ADMIN_EMAIL} / {created.password}  (kept in {path})"]
        lines = path.read_text(encoding="utf-8").split() if path.exists() else []
        if len(lines) == 2 and check_password_hash(user.password_hash, lines[1]):
            return [f"{DEMO_ADMIN_EMAIL} / {lines[1]}  (kept in {path})"]
    return [
        f"{DEMO_ADMIN_EMAIL} (password changed since it was generated; to reset:"
        f" moked user add --email {DEMO_ADMIN_EMAIL} --role admin --password NEW)"
    ]


# --- data -------------------------------------------------------------------------------


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from moked.db.migrate import upgrade

    upgrade(settings.database_url)
    print("database is at the latest migration")
    return 0


def cmd_business_add(args: argparse.Namespace, settings: Settings) -> int:
    from moked.businesses import (
        BusinessSpec,
        check_expected_languages,
        describe,
        upsert_business,
    )
    from moked.db.session import session_scope
    from moked.greetings import MAX_GREETING_BYTES, prune_versions

    greeting = None
    if args.greeting:
        try:
            with Path(args.greeting).open("rb") as handle:
                greeting = handle.read(MAX_GREETING_BYTES + 1)  # inspect_mp3 says if too big
        except OSError as exc:
            print(f"moked: cannot read {args.greeting}: {exc.strerror or exc}", file=sys.stderr)
            return 1
    spec = BusinessSpec(
        name=args.name,
        numbers=tuple(args.number or ()),
        greeting_mp3=greeting,
        greeting_text=args.greeting_text,
        language=args.language,
        timezone=args.timezone,
        expected_languages=(
            check_expected_languages(args.expected_languages)
            if args.expected_languages is not None
            else None
        ),
    )
    with session_scope() as session:
        business = upsert_business(session, spec, settings.greetings_dir)
        session.refresh(business)
        described = describe(business)
    if greeting is not None:  # committed: the business plays the new file
        prune_versions(
            settings.greetings_dir,
            described["id"],
            current=described["greeting_file"],
            keep=settings.greeting_versions_kept,
        )
    _print_json(described)
    return 0


def cmd_business_list(args: argparse.Namespace, settings: Settings) -> int:
    from sqlalchemy import select
    from sqlalchemy.orm import selectinload

    from moked.businesses import describe
    from moked.db.models import Business
    from moked.db.session import session_scope

    with session_scope() as session:
        businesses = session.scalars(
            select(Business).options(selectinload(Business.numbers)).order_by(Business.id)
        ).all()
        _print_json([describe(b) for b in businesses])
    return 0


def cmd_business_hours(args: argparse.Namespace, settings: Settings) -> int:
    from moked.businesses import require_business
    from moked.callback_wait import HoursError, set_hours
    from moked.db.session import session_scope

    with session_scope() as session:
        business = require_business(session, args.business)
        try:
            set_hours(
                session,
                business,
                hours=args.hours,
                days=args.days,
                limit_minutes=args.callback_limit,
            )
        except HoursError as exc:
            print(str(exc), file=sys.stderr)
            return 2
        print(
            f"{business.name}: {business.hours_start:%H:%M}-{business.hours_end:%H:%M}"
            f" {business.work_days}, callbacks within {business.callback_limit_minutes} minutes"
        )
    return 0


def cmd_call_show(args: argparse.Namespace, settings: Settings) -> int:
    from sqlalchemy import select

    from moked.calls import call_loading, describe_call
    from moked.db.models import Call
    from moked.db.session import session_scope

    with session_scope() as session:
        call = session.scalar(
            select(Call).options(*call_loading()).where(Call.call_sid == args.call_sid)
        )
        if call is None:
            print(f"no call {args.call_sid}", file=sys.stderr)
            return 1
        data = describe_call(call, settings.recordings_dir)
    if args.json:
        print(json.dumps(data, ensure_ascii=False))
    else:
        for key, value in data.items():
            if key == "notifications":
                for item in value:  # one line per alert, not a dict's repr
                    sent = item["sent_at"] or "-"
                    line = f"{item['channel']} {item['recipient']} {item['status']} {sent}"
                    if item["provider_status"]:
                        line += f" ({item['provider_status']})"
                    print(f"{'notification':28} {line}")
                continue
            if key == "transcript_segments":  # one line per timed sentence
                for segment in value:
                    at = f"{segment['start']:.1f}-{segment['end']:.1f} s"
                    print(f"{'segment':28} {at:>13}  {segment['text']}")
                continue
            if key == "caller" and value is not None:  # one line, not a dict's repr
                name = f" {value['name']!r}" if value["name"] else ""
                blocked = " blocked" if value["blocked"] else ""
                line = f"{value['number']}{name} {value['calls']} call(s) since"
                print(f"{'caller':28} {line} {value['first_seen']}{blocked}")
                continue
            if key == "callback":  # the follow-up, then one line per attempt
                print(f"{'callback':28} {value['status']}")
                for attempt in value["attempts"]:
                    line = f"{attempt['at']} {attempt['by'] or '-'} {attempt['status']}"
                    if attempt["duration_seconds"]:
                        line += f" {attempt['duration_seconds']} s"
                    if attempt["manual"]:
                        line += " (by hand)"
                    print(f"{'callback attempt':28} {line}")
                continue
            print(f"{key:28} {value if value is not None else '-'}")
    return 0


def cmd_user_add(args: argparse.Namespace, settings: Settings) -> int:
    from moked.accounts import Role, add_user
    from moked.db.session import session_scope

    with session_scope() as session:
        result = add_user(
            session,
            args.email,
            role=Role(args.role) if args.role else None,
            business=args.business,
            password=args.password,
            name=args.name,
            owner=args.owner,
            phone=args.phone,
        )
    verb = "created" if result.created else "updated"
    where = f", business {args.business}" if args.business else ""
    if args.owner:
        where += " (owner)"
    print(f"{verb} {result.role} {result.email}{where}")
    if result.password is not None:
        print(f"password: {result.password}")
    return 0


def cmd_user_signout(args: argparse.Namespace, settings: Settings) -> int:
    from moked.accounts import end_sessions, find_user
    from moked.db.session import session_scope

    with session_scope() as session:
        user = find_user(session, args.email)
        if user is None:
            print(f"moked: no user {args.email!r}", file=sys.stderr)
            return 1
        end_sessions(session, user.id)
        email = user.email
    print(f"signed out {email} on every device")
    return 0


def cmd_token_create(args: argparse.Namespace, settings: Settings) -> int:
    from moked.accounts import create_token
    from moked.db.session import session_scope

    with session_scope() as session:
        token = create_token(session, args.email, label=args.label)
    print(token)
    return 0


def cmd_recording_retry(args: argparse.Namespace, settings: Settings) -> int:
    from moked import recordings
    from moked.db.session import session_scope
    from moked.queue import redis_client

    sid = args.recording_sid
    with session_scope() as session:
        queued = recordings.retry_and_queue(
            session, redis_client(settings.redis_url), sid, args.language
        )
    if queued:
        print(f"{sid} queued again")
    else:
        print(f"{sid} waits for a transcript; Redis is unavailable, the reconciler queues it")
    return 0


def cmd_reconcile(args: argparse.Namespace, settings: Settings) -> int:
    from moked.queue import redis_client
    from moked.reconcile import run_forever, run_once

    redis = redis_client(settings.redis_url)
    if args.loop:
        from prometheus_client import start_http_server

        from moked.reconcile import initialise_metrics

        initialise_metrics()
        # The reconciler's /metrics: fallback answers, replays, re-queues, the backlog.
        start_http_server(settings.reconciler_metrics_port, addr=settings.metrics_bind_host)
        run_forever(settings, redis, interval=args.interval)
        return 0
    report = run_once(settings, redis)
    _print_json(report.__dict__)
    return 1 if report.errors else 0


# --- wiring -----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="moked", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    commands = parser.add_subparsers(dest="command", required=True)

    stack = commands.add_parser("stack", help="run the native stack").add_subparsers(
        dest="stack_command", required=True
    )
    up = stack.add_parser("up", help="start everything (idempotent)")
    up.add_argument("--no-seed", action="store_true", help="skip the demo business")
    up.set_defaults(handler=cmd_stack_up)
    stack.add_parser("down", help="stop everything").set_defaults(handler=cmd_stack_down)
    stack.add_parser("status", help="show the services").set_defaults(handler=cmd_stack_status)

    commands.add_parser("migrate", help="apply database migrations").set_defaults(
        handler=cmd_migrate
    )

    business = commands.add_parser("business", help="businesses").add_subparsers(
        dest="business_command", required=True
    )
    add = business.add_parser("add", help="add or update a business")
    add.add_argument("--name", required=True)
    add.add_argument("--number", action="append", help="E.164 number (repeatable)")
    add.add_argument("--greeting", help="greeting MP3 file")
    add.add_argument("--greeting-text", help="spoken with <Say> when there is no MP3")
    add.add_argument("--language", help="a <Say> language, he-IL when new; omitted: left as it is")
    add.add_argument(
        "--timezone", help="an IANA zone, Asia/Jerusalem when new; omitted: left as it is"
    )
    add.add_argument(
        "--expected-languages",
        metavar="he,en",
        help="languages callers may speak (language detection picks among them);"
        ' omitted: left as it is; "": EXPECTED_LANGUAGES',
    )
    add.set_defaults(handler=cmd_business_add)
    business.add_parser("list", help="list businesses").set_defaults(handler=cmd_business_list)
    hours = business.add_parser(
        "hours", help="business hours and the callback limit (the CallbacksOverdue alert)"
    )
    hours.add_argument("--business", required=True, help="business name or id")
    hours.add_argument("--hours", metavar="08:00-18:00", help="opening hours, in its time zone")
    hours.add_argument("--days", metavar="sun-thu", help="working days: sun,mon,… or sun-thu")
    hours.add_argument(
        "--callback-limit", type=int, metavar="MINUTES", help="a voicemail is overdue after this"
    )
    hours.set_defaults(handler=cmd_business_hours)

    call = commands.add_parser("call", help="calls").add_subparsers(
        dest="call_command", required=True
    )
    show = call.add_parser("show", help="show one call")
    show.add_argument("call_sid")
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=cmd_call_show)

    user = commands.add_parser("user", help="CRM users").add_subparsers(
        dest="user_command", required=True
    )
    user_add = user.add_parser("add", help="add a user or give one access to a business")
    user_add.add_argument("--email", required=True)
    user_add.add_argument("--business", help="business name or id (required for staff)")
    user_add.add_argument(
        "--role", choices=("staff", "admin"), help="staff when new; omitted: left as it is"
    )
    user_add.add_argument("--password", help="omit to print a generated one")
    user_add.add_argument("--name")
    user_add.add_argument(
        "--owner",
        action="store_true",
        help="an owner of --business: also manages its notification rules in the CRM",
    )
    user_add.add_argument(
        "--phone", help="their phone (E.164), which a callback from the CRM rings; '' clears it"
    )
    user_add.set_defaults(handler=cmd_user_add)
    user_signout = user.add_parser("signout", help="end every CRM session of a user")
    user_signout.add_argument("email")
    user_signout.set_defaults(handler=cmd_user_signout)

    token = commands.add_parser("token", help="API tokens").add_subparsers(
        dest="token_command", required=True
    )
    token_create = token.add_parser("create", help="create a bearer token (printed once)")
    token_create.add_argument("--email", required=True)
    token_create.add_argument("--label")
    token_create.set_defaults(handler=cmd_token_create)

    recording = commands.add_parser("recording", help="recordings").add_subparsers(
        dest="recording_command", required=True
    )
    retry = recording.add_parser(
        "retry", help="transcribe a failed or empty recording again (after fixing the cause)"
    )
    retry.add_argument("recording_sid")
    retry.add_argument(
        "--language",
        metavar="CODE",
        help="in this language (he, en, ar…): also redoes a ready transcript, no detection",
    )
    retry.set_defaults(handler=cmd_recording_retry)

    reconcile = commands.add_parser("reconcile", help="replay and re-queue what was left")
    reconcile.add_argument("--loop", action="store_true", help="run forever")
    reconcile.add_argument("--interval", type=float, default=None)
    reconcile.set_defaults(handler=cmd_reconcile)

    from moked.models_cli import add_parser as add_model_commands

    add_model_commands(commands)
    from moked.notify.cli import add_parser as add_notify_commands

    add_notify_commands(commands)
    from moked.callers_cli import add_parser as add_caller_commands

    add_caller_commands(commands)
    from moked.deploy_cli import add_parsers as add_deploy_commands

    add_deploy_commands(commands)

    from moked.simulator.cli import add_parser as add_simulate_call

    add_simulate_call(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        settings = get_settings()
    except ConfigurationError as exc:
        print(f"moked: {exc}", file=sys.stderr)
        return 2
    handler: Handler = args.handler
    try:
        return handler(args, settings)
    except (ValueError, RuntimeError) as exc:
        print(f"moked: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
