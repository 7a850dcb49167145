"""Fetching media against a loopback host: auth, 404 retries, redirects, caps, audio check."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import new_recording_sid
from tests.services.transcriber.audio import NOT_AUDIO, VOICEMAIL_TEXT, telephone_mp3
from tests.services.transcriber.doubles import Listener, TwilioDouble
from transcriber import media
from transcriber.errors import MediaNotReady, MediaRejected, MediaUnavailable

ACCOUNT = "AC" + "ab" * 16
TOKEN = "secret-token"


@pytest.fixture
def host() -> Iterator[TwilioDouble]:
    double = TwilioDouble(account_sid=ACCOUNT, auth_token=TOKEN).start()
    yield double
    double.stop()


@pytest.fixture
def listener() -> Iterator[Listener]:
    heard = Listener()
    server = heard.start()
    yield heard
    server.shutdown()
    server.server_close()


def policy(**changes: object) -> media.FetchPolicy:
    values: dict[str, object] = {
        "allowed_hosts": frozenset({"127.0.0.1"}),
        "auth": (ACCOUNT, TOKEN),
        "max_bytes": 1024 * 1024,
        "timeout_seconds": 5.0,
        "require_https": False,
        "retry_delays": (0.01, 0.01, 0.01),
    }
    values.update(changes)
    return media.FetchPolicy(**values)  # type: ignore[arg-type]


def test_stores_verified_audio_privately_readable_by_nginx(host: TwilioDouble, tmp_path: Path):
    sid = new_recording_sid()
    url = host.publish(sid, telephone_mp3(VOICEMAIL_TEXT), not_ready=2)

    stored = media.store(url, sid, tmp_path / "recordings", policy())

    path = tmp_path / "recordings" / stored.local_path
    assert path.read_bytes() == telephone_mp3(VOICEMAIL_TEXT)
    assert stored.local_path.endswith(f"/{sid}.mp3")
    assert stored.content_type == "audio/mpeg"
    assert stored.audio_seconds > 5
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o2750
    assert [s.status for s in host.gets_of(sid)] == [404, 404, 200]
    assert not list((tmp_path / "recordings").glob(".*.part")), "no partial file left"


def test_still_404_after_the_retries_is_not_ready_yet(host: TwilioDouble, tmp_path: Path):
    sid = new_recording_sid()
    url = host.publish(sid, telephone_mp3(VOICEMAIL_TEXT), not_ready=10)

    with pytest.raises(MediaNotReady) as caught:
        media.store(url, sid, tmp_path, policy())

    assert not caught.value.permanent
    assert len(host.gets_of(sid)) == 4


def test_wrong_credentials_are_retried_later_with_a_clear_reason(
    host: TwilioDouble, tmp_path: Path
):
    sid = new_recording_sid()
    url = host.publish(sid, telephone_mp3(VOICEMAIL_TEXT))

    with pytest.raises(MediaUnavailable) as caught:
        media.store(url, sid, tmp_path, policy(auth=(ACCOUNT, "wrong")))

    assert "TWILIO_AUTH_TOKEN" in caught.value.message
    assert not caught.value.permanent
    assert len(host.gets_of(sid)) == 1, "no hammering with bad credentials"


def test_host_not_allowed_is_refused_before_any_request(host: TwilioDouble, tmp_path: Path):
    sid = new_recording_sid()
    url = host.publish(sid, telephone_mp3(VOICEMAIL_TEXT))

    with pytest.raises(MediaRejected, match="MEDIA_ALLOWED_HOSTS"):
        media.store(url, sid, tmp_path, policy(allowed_hosts=frozenset({"api.twilio.com"})))

    assert host.gets_of(sid) == []


def test_redirect_is_followed_without_the_credentials(host: TwilioDouble, tmp_path: Path):
    sid = new_recording_sid()
    url = host.publish(sid, telephone_mp3(VOICEMAIL_TEXT))
    host.media[sid].redirect_host = "localhost"

    stored = media.store(
        url, sid, tmp_path, policy(allowed_hosts=frozenset({"127.0.0.1", "localhost"}))
    )

    assert (tmp_path / stored.local_path).read_bytes() == telephone_mp3(VOICEMAIL_TEXT)
    first, second = host.gets_of(sid)
    assert (first.status, first.authorized) == (302, True)
    assert second.path.startswith("/cdn/") and second.status == 200
    assert not second.sent_credentials, "credentials never leave the allow-listed first host"


def test_redirect_to_a_host_not_allowed_is_refused(host: TwilioDouble, tmp_path: Path):
    sid = new_recording_sid()
    url = host.publish(sid, telephone_mp3(VOICEMAIL_TEXT))
    host.media[sid].redirect_host = "localhost"

    with pytest.raises(MediaRejected, match="'localhost' is not in MEDIA_ALLOWED_HOSTS"):
        media.store(url, sid, tmp_path, policy())

    assert [s.status for s in host.gets_of(sid)] == [302]


def test_a_url_read_two_ways_is_refused_and_the_credentials_stay_home(
    listener: Listener, tmp_path: Path
):
    """Issue 13 item 5: urllib.parse's hostname of this URL is api.twilio.com, while
    requests (urllib3's parse_url) connects to 127.0.0.1 and would send it Twilio's
    credentials."""
    sid = new_recording_sid()
    url = (
        f"http://127.0.0.1:{listener.port}\\@api.twilio.com"
        f"/2010-04-01/Accounts/{ACCOUNT}/Recordings/{sid}"
    )

    with pytest.raises(MediaRejected, match="backslash"):
        media.store(url, sid, tmp_path, policy(allowed_hosts=frozenset({"api.twilio.com"})))

    assert listener.heard == [], "the listener was never contacted"


@pytest.mark.parametrize(
    "userinfo", ["api.twilio.com@", f"{ACCOUNT}:{TOKEN}@", "x%40y@", "@"], ids=repr
)
def test_a_url_with_user_info_is_refused(listener: Listener, tmp_path: Path, userinfo: str):
    sid = new_recording_sid()
    url = (
        f"http://{userinfo}127.0.0.1:{listener.port}/2010-04-01/Accounts/{ACCOUNT}/Recordings/{sid}"
    )

    with pytest.raises(MediaRejected, match="user-info"):
        media.store(url, sid, tmp_path, policy())

    assert listener.heard == []


@pytest.mark.parametrize(
    "location",
    [
        "http://localhost:{port}/cdn/elsewhere.mp3",
        "http://localhost:{port}\\@127.0.0.1:{port}/cdn/read-two-ways.mp3",
        "http://127.0.0.1@localhost:{port}/cdn/user-info.mp3",
        "//localhost:{port}/cdn/scheme-relative.mp3",
    ],
    ids=["other-host", "backslash", "user-info", "scheme-relative"],
)
def test_a_redirect_is_checked_like_the_first_url(
    listener: Listener, tmp_path: Path, location: str
):
    """Only 127.0.0.1 is allowed: no redirect reaches another host, however it is spelled,
    and no redirect is followed with the credentials."""
    sid = new_recording_sid()
    listener.redirect_to = location.format(port=listener.port)
    url = f"http://127.0.0.1:{listener.port}/2010-04-01/Accounts/{ACCOUNT}/Recordings/{sid}"

    with pytest.raises(MediaRejected):
        media.store(url, sid, tmp_path, policy())

    hosts = [host for host, _, _ in listener.heard]
    assert hosts == [f"127.0.0.1:{listener.port}"], "only the first, allowed URL was fetched"
    assert listener.heard[0][2] is not None and listener.heard[0][2].startswith("Basic ")


def test_plain_http_is_refused_in_production(host: TwilioDouble, tmp_path: Path):
    sid = new_recording_sid()
    url = host.publish(sid, telephone_mp3(VOICEMAIL_TEXT))

    with pytest.raises(MediaRejected, match="plain-HTTP"):
        media.store(url, sid, tmp_path, policy(require_https=True))


def test_size_cap(host: TwilioDouble, tmp_path: Path):
    sid = new_recording_sid()
    url = host.publish(sid, telephone_mp3(VOICEMAIL_TEXT))

    with pytest.raises(MediaRejected, match="MEDIA_MAX_BYTES"):
        media.store(url, sid, tmp_path, policy(max_bytes=1000))

    assert not list(tmp_path.rglob("*RE*")), "nothing kept"


def test_a_body_that_is_not_audio_is_rejected(host: TwilioDouble, tmp_path: Path):
    sid = new_recording_sid()
    url = host.publish(sid, NOT_AUDIO)

    with pytest.raises(MediaRejected, match="not audio"):
        media.store(url, sid, tmp_path, policy())

    assert not list(tmp_path.rglob("*RE*"))


@pytest.mark.parametrize(
    ("host_name", "allowed", "ok"),
    [
        ("api.twilio.com", {"api.twilio.com"}, True),
        ("API.Twilio.com.", {"api.twilio.com"}, True),
        ("evil-api.twilio.com", {"api.twilio.com"}, False),
        ("media.twiliocdn.com", {".twiliocdn.com"}, True),
        ("twiliocdn.com", {".twiliocdn.com"}, True),
        ("twiliocdn.com.evil.net", {".twiliocdn.com"}, False),
    ],
)
def test_host_allowlist(host_name: str, allowed: set[str], ok: bool):
    assert media.host_allowed(host_name, frozenset(allowed)) is ok


def test_media_url_asks_for_mp3_unless_an_extension_is_given():
    base = "https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE1"
    assert media.media_url(base) == base + ".mp3"
    assert media.media_url(base + ".wav") == base + ".wav"
