"""CRM fixtures: businesses with users, calls fed through Twilio-signed webhooks, a browser."""

from __future__ import annotations

import re
import secrets
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from flask.testing import FlaskClient
from sqlalchemy import select

from moked import recordings
from moked.accounts import Role, add_user
from moked.db.models import Business, Call
from moked.db.session import session_scope
from moked.recordings import StoredMedia
from moked.statuses import CallStatus, ProcessingStatus
from tests.harness import StackUnderTest
from tests.helpers import call_params, new_call_sid, new_recording_sid, settle

ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts"
PASSWORD = "correct-horse-battery"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@dataclass(frozen=True)
class Tenant:
    business: Business
    staff_email: str
    number: str


@dataclass(frozen=True)
class FedCall:
    call_sid: str
    recording_sid: str
    transcript: str
    business_id: int


def _audio(seconds: float = 2.0) -> bytes:
    """A small real MP3 (a tone) for the recording file."""
    return subprocess.run(
        [
            "ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi",
            "-i", f"sine=frequency=440:duration={seconds}", "-ac", "1", "-ar", "8000",
            "-b:a", "32k", "-f", "mp3", "-",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    ).stdout  # fmt: skip


@pytest.fixture(scope="session")
def audio_bytes() -> bytes:
    return _audio()


@pytest.fixture(scope="session")
def admin_email(stack: StackUnderTest) -> str:
    email = f"admin-{secrets.token_hex(4)}@moked.test"
    with session_scope() as session:
        add_user(session, email, role=Role.ADMIN, password=PASSWORD, name="מנהלת המוקד")
    return email


def feed_call(
    stack: StackUnderTest,
    tenant: Tenant,
    transcript: str | None,
    audio: bytes,
    *,
    caller: str = "+972501234567",
    processing: ProcessingStatus = ProcessingStatus.READY,
) -> FedCall:
    """A call through the real webhooks; then the transcriber's part is written directly."""
    call_sid, recording_sid = new_call_sid(), new_recording_sid()
    base = call_params(call_sid, tenant.number, From=caller, Caller=caller)
    assert stack.post("/webhook/incoming_call", base).status_code == 200
    media = f"https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/{recording_sid}"
    recorded = {**base, "RecordingSid": recording_sid, "RecordingUrl": media}
    assert (
        stack.post(
            "/webhook/handle_recording", {**recorded, "RecordingDuration": "2", "Digits": "hangup"}
        ).status_code
        == 200
    )
    completed = {**base, "CallStatus": "completed", "CallDuration": "14", "SequenceNumber": "3"}
    assert stack.post("/webhook/call_status", completed).status_code == 200

    relative = f"{tenant.business.id}/{recording_sid}.mp3"
    target = stack.settings.recordings_dir / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    target.parent.chmod(0o2750)  # as the transcriber leaves it: nginx reads by the group
    target.write_bytes(audio)
    target.chmod(0o640)
    media = StoredMedia(relative, "audio/mpeg", len(audio), 2.0)
    with session_scope() as session:
        settle(session, recording_sid, processing, transcript=transcript or "", media=media)
        if processing is ProcessingStatus.AWAITING_MEDIA:
            recordings.media_stored(session, recording_sid, media)
        call = session.scalar(select(Call).where(Call.call_sid == call_sid))
        assert call is not None and call.status is CallStatus.COMPLETED
    return FedCall(call_sid, recording_sid, transcript or "", tenant.business.id)


@pytest.fixture(scope="session")
def tenants(stack: StackUnderTest, admin_email: str) -> tuple[Tenant, Tenant]:
    from moked.businesses import BusinessSpec, upsert_business
    from tests.helpers import unique_number

    made = []
    for label in ("Alpha Plumbing", "Beta Dental"):
        spec = BusinessSpec(name=f"{label} {secrets.token_hex(3)}", numbers=(unique_number(),))
        with session_scope() as session:
            business = upsert_business(session, spec, stack.settings.greetings_dir)
            session.refresh(business)
            _ = business.numbers
            session.expunge(business)
        email = f"staff-{secrets.token_hex(4)}@{label.split()[0].lower()}.test"
        with session_scope() as session:
            add_user(session, email, role=Role.STAFF, business=str(business.id), password=PASSWORD)
        made.append(Tenant(business=business, staff_email=email, number=business.numbers[0].e164))
    return made[0], made[1]


class Client:
    """A signed-in browser-less session (requests) through nginx."""

    def __init__(self, stack: StackUnderTest) -> None:
        self.base = stack.base
        self.http = requests.Session()

    def csrf(self, path: str) -> str:
        page = self.http.get(self.base + path, timeout=10)
        match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.text)
        assert match, f"no CSRF token on {path}"
        return match.group(1)

    def login(self, email: str, password: str = PASSWORD) -> requests.Response:
        token = self.csrf("/login")
        return self.http.post(
            self.base + "/login",
            data={"csrf_token": token, "email": email, "password": password},
            timeout=10,
            allow_redirects=False,
        )

    def get(self, path: str, **kwargs: object) -> requests.Response:
        return self.http.get(self.base + path, timeout=10, allow_redirects=False, **kwargs)  # type: ignore[arg-type]

    def post(self, path: str, data: dict[str, str], **kwargs: object) -> requests.Response:
        return self.http.post(
            self.base + path,
            data=data,
            timeout=10,
            allow_redirects=False,
            **kwargs,  # type: ignore[arg-type]
        )


@pytest.fixture
def client(stack: StackUnderTest) -> Iterator[Client]:
    c = Client(stack)
    yield c
    c.http.close()


@pytest.fixture(scope="session")
def browser(stack: StackUnderTest) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def signed_in_staff(
    stack: StackUnderTest, crm_client: FlaskClient, make_business: Callable[..., Business]
) -> tuple[FlaskClient, Business]:
    """A new business and one of its staff, signed in on the app's test client."""
    business = make_business(name=f"Staff's {secrets.token_hex(3)}")
    email = f"staff-{secrets.token_hex(4)}@moked.test"
    with session_scope() as session:
        add_user(session, email, role=Role.STAFF, business=business.name, password=PASSWORD)
    answer = crm_client.post("/login", data={"email": email, "password": PASSWORD})
    assert answer.status_code == 302, answer.data
    return crm_client, business
