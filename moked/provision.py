"""Point every Twilio number of every business at this deployment (`moked provision`).

The database is the source of truth: each number of each business must have

- VoiceUrl          = PUBLIC_HOST/webhook/incoming_call (POST)
- StatusCallback    = PUBLIC_HOST/webhook/call_status (POST)
- VoiceFallbackUrl  = PUBLIC_HOST/twiml/fallback/incoming_call (POST; static TwiML nginx
  serves even while the app is down)

and no VoiceApplicationSid (an application overrides the number's own URLs). Numbers that
point anywhere else, an old deployment's host above all, are listed: that is how a number
left on a dead host (the user's replit.app) causes 11200 on every call.

Twilio's IncomingPhoneNumber resource has no StatusCallbackEvent: for calls *to* a
number Twilio posts the number's StatusCallback when the call ends (status completed,
busy, no-answer, failed, canceled). The intermediate events (initiated, ringing,
answered) exist only for calls created through the API or `<Dial>`; the webhooks
service accepts them all the same, ordered by SequenceNumber.

Dry run by default; `apply=True` sends the updates.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

from sqlalchemy import select

from moked.settings import Settings
from moked.statuses import Endpoint

FALLBACK_PATH = "/twiml/fallback/incoming_call"
"""nginx answers this itself with static TwiML (nginx/nginx.conf.template)."""

VOICE_FIELDS = (
    "voice_url",
    "voice_method",
    "status_callback",
    "status_callback_method",
    "voice_fallback_url",
    "voice_fallback_method",
)
URL_FIELDS = ("voice_url", "status_callback", "voice_fallback_url")


class NumberStatus:
    OK = "ok"
    """Configured for this host."""
    UPDATE = "update"
    """In the account and in the database, configured differently: provision fixes it."""
    UPDATED = "updated"
    """Fixed by this run."""
    MISSING = "missing"
    """In the database, not in this Twilio account: calls to it never reach us."""
    ELSEWHERE = "elsewhere"
    """In the account, not in the database, pointing at another host."""
    UNUSED = "unused"
    """In the account, not in the database, with no voice URL: harmless."""


@dataclass(frozen=True, slots=True)
class Target:
    """What every number of every business must say."""

    voice_url: str
    status_callback: str
    voice_fallback_url: str
    voice_method: str = "POST"
    status_callback_method: str = "POST"
    voice_fallback_method: str = "POST"

    @classmethod
    def for_settings(cls, settings: Settings) -> Target:
        return cls(
            voice_url=settings.public_url(Endpoint.INCOMING_CALL.path),
            status_callback=settings.public_url(Endpoint.CALL_STATUS.path),
            voice_fallback_url=settings.public_url(FALLBACK_PATH),
        )

    def as_dict(self) -> dict[str, str]:
        return {name: str(getattr(self, name)) for name in VOICE_FIELDS}


@dataclass(frozen=True, slots=True)
class TwilioNumber:
    """The part of an IncomingPhoneNumber that decides where its calls go."""

    sid: str
    phone_number: str
    voice_url: str = ""
    voice_method: str = ""
    status_callback: str = ""
    status_callback_method: str = ""
    voice_fallback_url: str = ""
    voice_fallback_method: str = ""
    voice_application_sid: str = ""
    trunk_sid: str = ""

    @classmethod
    def from_resource(cls, resource: Any) -> TwilioNumber:
        def text(name: str) -> str:
            value = getattr(resource, name, None)
            return "" if value is None else str(value)

        return cls(
            sid=text("sid"),
            phone_number=text("phone_number"),
            **{name: text(name) for name in (*VOICE_FIELDS, "voice_application_sid", "trunk_sid")},
        )

    def hosts(self) -> set[str]:
        """Origins (scheme://host) its voice URLs point at."""
        found = set()
        for name in URL_FIELDS:
            value = getattr(self, name)
            if value:
                found.add(origin_of(value))
        return found


@dataclass(slots=True)
class NumberReport:
    phone_number: str
    status: str
    business: str | None = None
    sid: str | None = None
    changes: dict[str, list[str]] = field(default_factory=dict)
    """field → [current, wanted] for what differs."""
    other_hosts: list[str] = field(default_factory=list)
    """Hosts other than PUBLIC_HOST its URLs point at (an old deployment)."""
    problems: list[str] = field(default_factory=list)


@dataclass(slots=True)
class ProvisionReport:
    public_host: str
    applied: bool
    target: dict[str, str]
    numbers: list[NumberReport] = field(default_factory=list)

    def with_status(self, *statuses: str) -> list[NumberReport]:
        return [n for n in self.numbers if n.status in statuses]

    @property
    def pointing_elsewhere(self) -> list[NumberReport]:
        return [n for n in self.numbers if n.other_hosts]

    @property
    def ok(self) -> bool:
        """True when every number of every business is configured for this host."""
        return not self.with_status(NumberStatus.UPDATE, NumberStatus.MISSING) and not any(
            n.problems for n in self.numbers if n.business is not None
        )

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        return data


class NumbersApi(Protocol):
    """What provisioning needs from Twilio (the REST client, or a fake in unit tests)."""

    def list_numbers(self) -> list[TwilioNumber]: ...

    def update_number(self, sid: str, values: dict[str, str]) -> TwilioNumber: ...


class TwilioNumbersApi:
    """NumbersApi over twilio's REST client."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def list_numbers(self) -> list[TwilioNumber]:
        return [
            TwilioNumber.from_resource(r)
            for r in self.client.api.v2010.account.incoming_phone_numbers.stream(page_size=100)
        ]

    def update_number(self, sid: str, values: dict[str, str]) -> TwilioNumber:
        resource = self.client.api.v2010.account.incoming_phone_numbers(sid).update(**values)
        return TwilioNumber.from_resource(resource)


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return url
    return f"{parts.scheme}://{parts.netloc}".lower()


def database_numbers(business: str | None = None) -> list[tuple[str, str]]:
    """(business name, E.164) for every number of every business (or of one business)."""
    from moked.db.models import Business, PhoneNumber
    from moked.db.session import session_scope

    query = (
        select(Business.name, PhoneNumber.e164)
        .join(PhoneNumber, PhoneNumber.business_id == Business.id)
        .order_by(Business.id, PhoneNumber.e164)
    )
    if business is not None:
        if business.isdigit():
            query = query.where(Business.id == int(business))
        else:
            query = query.where(Business.name == business)
    with session_scope() as session:
        return [(name, e164) for name, e164 in session.execute(query).all()]


def _changes(number: TwilioNumber, target: Target) -> dict[str, list[str]]:
    wanted = target.as_dict()
    changes = {
        name: [getattr(number, name), value]
        for name, value in wanted.items()
        if getattr(number, name) != value
    }
    if number.voice_application_sid:
        changes["voice_application_sid"] = [number.voice_application_sid, ""]
    return changes


def plan(
    settings: Settings,
    api: NumbersApi,
    owned: Sequence[tuple[str, str]],
    *,
    include_unowned: bool = True,
) -> ProvisionReport:
    """Compare Twilio's numbers with the database; nothing is changed."""
    target = Target.for_settings(settings)
    ours = origin_of(settings.public_base)
    report = ProvisionReport(
        public_host=settings.public_base, applied=False, target=target.as_dict()
    )
    in_account = {n.phone_number: n for n in api.list_numbers()}
    owned_numbers = set()
    for business, e164 in owned:
        owned_numbers.add(e164)
        number = in_account.get(e164)
        if number is None:
            report.numbers.append(
                NumberReport(
                    phone_number=e164,
                    business=business,
                    status=NumberStatus.MISSING,
                    problems=[f"{e164} is not a number of Twilio account {_sid(settings)}"],
                )
            )
            continue
        entry = NumberReport(
            phone_number=e164,
            status=NumberStatus.OK,
            business=business,
            sid=number.sid,
            changes=_changes(number, target),
            other_hosts=sorted(number.hosts() - {ours}),
        )
        entry.status = NumberStatus.UPDATE if entry.changes else NumberStatus.OK
        if number.trunk_sid:
            entry.problems.append(
                f"on SIP trunk {number.trunk_sid}: calls go to the trunk, not to VoiceUrl"
            )
        report.numbers.append(entry)
    if include_unowned:
        for e164, number in sorted(in_account.items()):
            if e164 in owned_numbers:
                continue
            others = sorted(number.hosts() - {ours})
            report.numbers.append(
                NumberReport(
                    phone_number=e164,
                    sid=number.sid,
                    status=NumberStatus.ELSEWHERE if others else NumberStatus.UNUSED,
                    other_hosts=others,
                )
            )
    return report


def apply(settings: Settings, api: NumbersApi, report: ProvisionReport) -> ProvisionReport:
    """Send the updates the plan lists; each number's result replaces its entry."""
    for entry in report.with_status(NumberStatus.UPDATE):
        assert entry.sid is not None
        values = {name: wanted for name, (_, wanted) in entry.changes.items()}
        # Twilio wants the method alongside each URL; send the whole voice block at once.
        values.update(Target.for_settings(settings).as_dict())
        api.update_number(entry.sid, values)
        entry.status = NumberStatus.UPDATED
    report.applied = True
    return report


def provision(
    settings: Settings,
    api: NumbersApi,
    owned: Sequence[tuple[str, str]],
    *,
    do_apply: bool = False,
) -> ProvisionReport:
    report = plan(settings, api, owned)
    if do_apply:
        apply(settings, api, report)
    return report


def _sid(settings: Settings) -> str:
    return settings.twilio_account_sid


def format_report(report: ProvisionReport) -> str:
    lines = [
        f"Twilio numbers for {report.public_host}"
        + (" (applied)" if report.applied else " (dry run: nothing changed; --apply to change)"),
        f"  VoiceUrl          {report.target['voice_url']} (POST)",
        f"  StatusCallback    {report.target['status_callback']} (POST)",
        f"  VoiceFallbackUrl  {report.target['voice_fallback_url']} (POST)",
        "",
    ]
    for entry in report.numbers:
        owner = entry.business or "(no business)"
        lines.append(f"{entry.status.upper():10} {entry.phone_number:16} {owner}")
        for name, (current, wanted) in entry.changes.items():
            lines.append(f"{'':11}{name}: {current or '(empty)'} -> {wanted or '(empty)'}")
        for host in entry.other_hosts:
            lines.append(f"{'':11}points at another host: {host}")
        for problem in entry.problems:
            lines.append(f"{'':11}problem: {problem}")
    if not report.numbers:
        lines.append("no numbers in the database nor in the account")
    elsewhere = report.pointing_elsewhere
    lines.append("")
    lines.append(
        f"{len(elsewhere)} number(s) point at another host"
        + (": " + ", ".join(n.phone_number for n in elsewhere) if elsewhere else "")
    )
    pending = report.with_status(NumberStatus.UPDATE)
    if pending:
        lines.append(f"{len(pending)} number(s) would change: run `moked provision --apply`")
    missing = report.with_status(NumberStatus.MISSING)
    if missing:
        lines.append(f"{len(missing)} number(s) of a business are not in the Twilio account")
    return "\n".join(lines)


def iter_problems(report: ProvisionReport) -> Iterable[str]:
    """One line per number of a business that is not ready for this host."""
    for entry in report.numbers:
        if entry.business is None:
            continue
        if entry.status == NumberStatus.UPDATE:
            differing = ", ".join(entry.changes)
            yield f"{entry.phone_number} ({entry.business}): {differing} not set for this host"
        for problem in entry.problems:
            yield f"{entry.phone_number} ({entry.business}): {problem}"
