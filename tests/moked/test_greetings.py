"""Greeting files (issue 13, item 10): nginx serves them from our host, so a file is
refused unless its audio starts where an MP3's does; and a business keeps only
GREETING_VERSIONS_KEPT old versions besides the active one."""

from __future__ import annotations

import io
import secrets
from collections.abc import Callable
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from moked.accounts import Role, add_user
from moked.cli import main
from moked.db.models import Business
from moked.db.session import session_scope
from moked.greetings import InvalidGreeting, inspect_mp3, store_greeting, synthesize_mp3
from moked.settings import get_settings
from tests.harness import StackUnderTest

PASSWORD = "correct-horse-battery"
PAGE = (
    b"<html><body><script>fetch('/account').then(r=>r.text()).then(alert)</script></body></html>\n"
)


@pytest.fixture(scope="module")
def mp3() -> bytes:
    return synthesize_mp3("Shalom, leave a message", "en")


def _id3_length(data: bytes) -> int:
    """ffmpeg writes an ID3v2 tag in front: 10 bytes of header, then a synchsafe size."""
    assert data[:3] == b"ID3"
    size = 0
    for byte in data[6:10]:
        size = (size << 7) | byte
    return 10 + size


def test_a_real_mp3_with_its_id3_tag_passes(mp3: bytes) -> None:
    info = inspect_mp3(mp3)
    assert 0.5 < info.seconds < 5
    bare = mp3[_id3_length(mp3) :]  # frames from the first byte, no tag
    assert inspect_mp3(bare).seconds == pytest.approx(info.seconds, abs=0.1)


@pytest.mark.parametrize("where", ["before the tag", "after the tag", "instead of the tag"])
def test_html_in_front_of_the_frames_is_refused(mp3: bytes, where: str) -> None:
    tag = _id3_length(mp3)
    polyglot = {
        "before the tag": PAGE + mp3,
        "after the tag": mp3[:tag] + PAGE + mp3[tag:],
        "instead of the tag": PAGE + mp3[tag:],
    }[where]
    with pytest.raises(InvalidGreeting):
        inspect_mp3(polyglot)


def test_a_polyglot_never_reaches_the_greetings_directory(
    stack: StackUnderTest,
    crm_client: FlaskClient,
    make_business: Callable[..., Business],
    mp3: bytes,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    business = make_business()
    greetings_dir = get_settings().greetings_dir
    polyglot = PAGE + mp3
    with pytest.raises(InvalidGreeting):
        store_greeting(greetings_dir, business.id, polyglot)

    # The CLI: one line, nothing stored.
    page = tmp_path / "greeting.mp3"
    page.write_bytes(polyglot)
    code = main(["business", "add", "--name", business.name, "--greeting", str(page)])
    err = capsys.readouterr().err
    assert code == 1 and err.strip() == "moked: not an MP3 file", err

    # The CRM's upload: refused with a message, nothing stored.
    email = f"admin-{secrets.token_hex(4)}@moked.test"
    with session_scope() as session:
        add_user(session, email, role=Role.ADMIN, password=PASSWORD)
    assert crm_client.post("/login", data={"email": email, "password": PASSWORD}).status_code == 302
    answer = crm_client.post(
        f"/businesses/{business.id}/greetings",
        data={"file": (io.BytesIO(polyglot), "greeting.mp3"), "activate": "y"},
        content_type="multipart/form-data",
    )
    assert answer.status_code == 302
    assert list(greetings_dir.glob(f"business_{business.id}_*")) == []
    with session_scope() as session:
        stored = session.get(Business, business.id)
        assert stored is not None and stored.greeting_file is None


def _versions(business_id: int) -> set[str]:
    return {p.name for p in get_settings().greetings_dir.glob(f"business_{business_id}_*.mp3")}


def _current(business_id: int) -> str | None:
    with session_scope() as session:
        business = session.get(Business, business_id)
        assert business is not None
        return business.greeting_file


def test_cli_keeps_the_active_greeting_and_the_newest_old_versions(
    stack: StackUnderTest,
    make_business: Callable[..., Business],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    keep = get_settings().greeting_versions_kept
    assert keep == 3, "the default, as .env.example shows it"
    business = make_business()
    names = []
    for n in range(keep + 3):
        path = tmp_path / f"v{n}.mp3"
        path.write_bytes(synthesize_mp3(f"version {n}", "en"))
        code = main(["business", "add", "--name", business.name, "--greeting", str(path)])
        assert code == 0, capsys.readouterr().err
        names.append(_current(business.id))
    assert len(set(names)) == keep + 3
    # The active one (the last) and the `keep` stored just before it; the older ones gone.
    assert _versions(business.id) == set(names[-(keep + 1) :])


def test_crm_upload_keeps_the_active_greeting_however_old(
    stack: StackUnderTest,
    crm_client: FlaskClient,
    make_business: Callable[..., Business],
    mp3: bytes,
) -> None:
    keep = get_settings().greeting_versions_kept
    business = make_business(greeting_mp3=mp3)
    active = _current(business.id)
    assert active is not None
    email = f"admin-{secrets.token_hex(4)}@moked.test"
    with session_scope() as session:
        add_user(session, email, role=Role.ADMIN, password=PASSWORD)
    assert crm_client.post("/login", data={"email": email, "password": PASSWORD}).status_code == 302
    uploaded = []
    for n in range(keep + 2):
        before = _versions(business.id)
        answer = crm_client.post(
            f"/businesses/{business.id}/greetings",
            data={"file": (io.BytesIO(synthesize_mp3(f"upload {n}", "en")), "g.mp3")},
            content_type="multipart/form-data",
        )
        assert answer.status_code == 302
        (new,) = _versions(business.id) - before
        uploaded.append(new)
    # Never made active: the first greeting stays, the oldest uploads beyond `keep` go.
    assert _current(business.id) == active
    assert _versions(business.id) == {active, *uploaded[-keep:]}
