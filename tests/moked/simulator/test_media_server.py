"""The recording media server: Twilio's URL shape, basic auth, 404 until ready."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from moked.simulator.audio import Voicemail
from moked.simulator.media_server import MediaServer, SharedDirectoryMedia
from moked.simulator.params import new_recording_sid

ACCOUNT = "AC" + "1" * 32
TOKEN = "secret-token"
VOICEMAIL = Voicemail(wav=b"RIFF-wav-bytes", mp3=b"ID3-mp3-bytes", seconds=1.0, label="t")


@pytest.fixture
def media(tmp_path) -> Iterator[MediaServer]:  # type: ignore[no-untyped-def]
    with MediaServer(ACCOUNT, TOKEN, directory=tmp_path) as server:
        yield server


def test_url_has_twilios_shape_on_loopback(media: MediaServer):
    sid = new_recording_sid()
    url = media.url_for(sid)
    assert url.startswith("http://127.0.0.1:")
    assert url.endswith(f"/2010-04-01/Accounts/{ACCOUNT}/Recordings/{sid}")


def test_needs_the_accounts_basic_auth(media: MediaServer):
    sid = new_recording_sid()
    media.publish(sid, VOICEMAIL)

    anonymous = requests.get(media.url_for(sid) + ".mp3", timeout=5)
    wrong = requests.get(media.url_for(sid) + ".mp3", auth=(ACCOUNT, "nope"), timeout=5)

    assert anonymous.status_code == 401
    assert "Basic" in anonymous.headers["WWW-Authenticate"]
    assert wrong.status_code == 401
    assert media.downloads[sid] == 0


def test_404_until_ready_then_mp3_and_wav(media: MediaServer):
    sid = new_recording_sid()
    url = media.url_for(sid)

    early = requests.get(url + ".mp3", auth=(ACCOUNT, TOKEN), timeout=5)
    assert early.status_code == 404
    assert early.json()["code"] == 20404
    assert media.not_ready_hits[sid] == 1

    media.publish(sid, VOICEMAIL)
    mp3 = requests.get(url + ".mp3", auth=(ACCOUNT, TOKEN), timeout=5)
    wav = requests.get(url + ".wav", auth=(ACCOUNT, TOKEN), timeout=5)
    bare = requests.get(url, auth=(ACCOUNT, TOKEN), timeout=5)

    assert (mp3.status_code, mp3.headers["Content-Type"], mp3.content) == (
        200,
        "audio/mpeg",
        VOICEMAIL.mp3,
    )
    assert (wav.headers["Content-Type"], wav.content) == ("audio/x-wav", VOICEMAIL.wav)
    assert (bare.headers["Content-Type"], bare.content) == ("audio/x-wav", VOICEMAIL.wav)
    assert media.downloads[sid] == 3


def test_other_account_or_path_is_404(media: MediaServer):
    sid = new_recording_sid()
    media.publish(sid, VOICEMAIL)
    other = media.url_for(sid).replace(ACCOUNT, "AC" + "2" * 32)

    assert requests.get(other, auth=(ACCOUNT, TOKEN), timeout=5).status_code in (401, 404)
    assert requests.get(media.base_url + "/etc/passwd", timeout=5).status_code == 404


def test_recordings_published_from_another_process_through_the_directory(
    media: MediaServer,
):
    shared: SharedDirectoryMedia = media.shared()
    sid = new_recording_sid()
    assert shared.url_for(sid) == media.url_for(sid)

    shared.publish(sid, VOICEMAIL)

    response = requests.get(media.url_for(sid) + ".mp3", auth=(ACCOUNT, TOKEN), timeout=5)
    assert response.content == VOICEMAIL.mp3
