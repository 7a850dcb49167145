"""`moked user add` and `moked business add` given what an operator might type (issue 13,
item 9): re-running never undoes an earlier choice, and a bad value is one `moked: …` line
with exit code 1, never a traceback and never half-stored. In-process on the stack's
database; the CRM's number form shares the rule (moked.phone.to_e164)."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from moked.accounts import Role, add_user, find_user
from moked.businesses import business_named
from moked.cli import main
from moked.db.models import Business, PhoneNumber
from moked.db.session import session_scope
from moked.phone import InvalidPhoneNumber, to_e164
from tests.harness import StackUnderTest
from tests.helpers import unique_number

PASSWORD = "correct-horse-battery"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *words: str) -> None:
    assert code == 1, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("moked: "), err
    assert "Traceback" not in err
    for word in words:
        assert word in lines[0], lines[0]


def _role(email: str) -> str:
    with session_scope() as session:
        user = find_user(session, email)
        assert user is not None
        return user.role


def _business(name: str) -> Business | None:
    with session_scope() as session:
        business = business_named(session, name)
        if business is not None:
            _ = business.numbers
            session.expunge(business)
        return business


# --- user add ---------------------------------------------------------------------------


def test_user_add_without_role_never_demotes_an_admin(
    stack: StackUnderTest,
    make_business: Callable[..., Business],
    capsys: pytest.CaptureFixture[str],
) -> None:
    business = make_business()
    admin = f"admin-{secrets.token_hex(4)}@moked.test"
    code, out, _ = run(capsys, "user", "add", "--email", admin, "--role", "admin")
    assert code == 0 and out.startswith("created admin")

    # Giving the admin a business, or a new password, leaves the role alone.
    code, out, err = run(capsys, "user", "add", "--email", admin, "--business", business.name)
    assert code == 0, err
    assert out.startswith("updated admin"), out
    assert _role(admin) == Role.ADMIN.value
    code, _, err = run(capsys, "user", "add", "--email", admin, "--password", PASSWORD)
    assert code == 0, err
    assert _role(admin) == Role.ADMIN.value

    # Asked for explicitly, the role changes; a new user without --role is staff.
    code, out, _ = run(
        capsys, "user", "add", "--email", admin, "--role", "staff", "--business", business.name
    )
    assert code == 0 and out.startswith("updated staff")
    assert _role(admin) == Role.STAFF.value
    newcomer = f"new-{secrets.token_hex(4)}@moked.test"
    code, out, _ = run(capsys, "user", "add", "--email", newcomer, "--business", business.name)
    assert code == 0 and out.startswith("created staff")
    assert _role(newcomer) == Role.STAFF.value


def test_user_add_refuses_an_admin_made_staff_without_a_business(
    stack: StackUnderTest, capsys: pytest.CaptureFixture[str]
) -> None:
    admin = f"admin-{secrets.token_hex(4)}@moked.test"
    with session_scope() as session:
        add_user(session, admin, role=Role.ADMIN, password=PASSWORD)
    code, _, err = run(capsys, "user", "add", "--email", admin, "--role", "staff")
    assert_one_line_error(code, err, "business")
    assert _role(admin) == Role.ADMIN.value


def test_user_add_refuses_a_huge_name_or_address_in_one_line(
    stack: StackUnderTest,
    make_business: Callable[..., Business],
    capsys: pytest.CaptureFixture[str],
) -> None:
    business = make_business()
    email = f"long-{secrets.token_hex(4)}@moked.test"
    code, _, err = run(
        capsys, "user", "add", "--email", email, "--business", business.name, "--name", "x" * 5000
    )
    assert_one_line_error(code, err, "200")
    huge = "a" * 5000 + "@moked.test"
    code, _, err = run(capsys, "user", "add", "--email", huge, "--business", business.name)
    assert_one_line_error(code, err, "254")
    with session_scope() as session:
        assert find_user(session, email) is None


# --- business add -----------------------------------------------------------------------


def test_business_add_again_keeps_language_and_time_zone(
    stack: StackUnderTest, capsys: pytest.CaptureFixture[str]
) -> None:
    name = f"Rerun {secrets.token_hex(3)}"
    first, second = unique_number(), unique_number()
    code, _, err = run(
        capsys,
        "business", "add", "--name", name, "--number", first,
        "--language", "en-US", "--timezone", "Europe/London",
    )  # fmt: skip
    assert code == 0, err
    # The same command later, to add a number only: nothing else is reset to a default.
    code, _, err = run(capsys, "business", "add", "--name", name, "--number", second)
    assert code == 0, err
    business = _business(name)
    assert business is not None
    assert (business.language, business.timezone) == ("en-US", "Europe/London")
    assert sorted(n.e164 for n in business.numbers) == sorted([first, second])

    # Only what is given changes; a new business gets the defaults.
    code, _, err = run(capsys, "business", "add", "--name", name, "--timezone", "Asia/Jerusalem")
    assert code == 0, err
    business = _business(name)
    assert business is not None
    assert (business.language, business.timezone) == ("en-US", "Asia/Jerusalem")
    fresh = f"Fresh {secrets.token_hex(3)}"
    assert run(capsys, "business", "add", "--name", fresh)[0] == 0
    business = _business(fresh)
    assert business is not None
    assert (business.language, business.timezone) == ("he-IL", "Asia/Jerusalem")


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--language", "xx-YY"),
        ("--language", "he"),
        ("--language", "he-IL<script>"),
        ("--timezone", "Mars/Olympus_Mons"),
        ("--timezone", "../../../../etc/passwd"),
        ("--timezone", "localtime"),
        ("--timezone", ""),
    ],
)
def test_business_add_refuses_an_unknown_language_or_time_zone(
    stack: StackUnderTest, capsys: pytest.CaptureFixture[str], option: str, value: str
) -> None:
    name = f"Bad {secrets.token_hex(3)}"
    code, _, err = run(capsys, "business", "add", "--name", name, option, value)
    assert_one_line_error(code, err, option.removeprefix("--").replace("timezone", "time zone"))
    assert _business(name) is None


def test_business_add_refuses_a_bad_value_of_an_existing_business_and_keeps_it(
    stack: StackUnderTest,
    make_business: Callable[..., Business],
    capsys: pytest.CaptureFixture[str],
) -> None:
    business = make_business(language="ru-RU", timezone="Europe/Moscow")
    code, _, err = run(capsys, "business", "add", "--name", business.name, "--language", "klingon")
    assert_one_line_error(code, err, "language")
    kept = _business(business.name)
    assert kept is not None and (kept.language, kept.timezone) == ("ru-RU", "Europe/Moscow")


def test_business_add_bad_inputs_are_one_line_errors(
    stack: StackUnderTest, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    name = f"Inputs {secrets.token_hex(3)}"
    missing = tmp_path / "no-such-greeting.mp3"
    code, _, err = run(capsys, "business", "add", "--name", name, "--greeting", str(missing))
    assert_one_line_error(code, err, str(missing))
    code, _, err = run(capsys, "business", "add", "--name", name, "--greeting", str(tmp_path))
    assert_one_line_error(code, err, str(tmp_path))

    code, _, err = run(capsys, "business", "add", "--name", "ב" * 5000)
    assert_one_line_error(code, err, "200")
    code, _, err = run(capsys, "business", "add", "--name", "nul\x00name")
    assert_one_line_error(code, err, "control")

    not_audio = tmp_path / "page.mp3"
    not_audio.write_bytes(b"<html><script>alert(1)</script></html>" * 10)
    code, _, err = run(capsys, "business", "add", "--name", name, "--greeting", str(not_audio))
    assert_one_line_error(code, err, "MP3")
    code, _, err = run(capsys, "business", "add", "--name", name, "--number", "not a number")
    assert_one_line_error(code, err, "phone number")
    assert _business(name) is None


@pytest.mark.parametrize(
    "raw",
    [
        "03-555 0123 ext. 5",
        "03-555 0123 x5",
        "03-555 0123;ext=5",
        "03-555 0123#5",
        "035550123abc",
        "+972 3 555 0123, 9",
        "03-5550123\x00",
    ],
)
def test_a_number_with_an_extension_or_trailing_text_is_refused_not_cut(
    stack: StackUnderTest, capsys: pytest.CaptureFixture[str], raw: str
) -> None:
    with pytest.raises(InvalidPhoneNumber):
        to_e164(raw)
    name = f"Ext {secrets.token_hex(3)}"
    code, _, err = run(capsys, "business", "add", "--name", name, "--number", raw)
    assert_one_line_error(code, err, "phone number")
    assert _business(name) is None
    with session_scope() as session:
        cut = session.scalar(select(PhoneNumber).where(PhoneNumber.e164 == "+97235550123"))
        assert cut is None or cut.business.name != name


def test_numbers_as_people_write_them_still_normalise() -> None:
    for raw in ("03-555 0123", "(03) 555.0123", "+972 3-555-0123", " 035550123 "):
        assert to_e164(raw) == "+97235550123"


def test_the_crm_number_form_refuses_an_extension_too(
    stack: StackUnderTest, crm_client: FlaskClient, make_business: Callable[..., Business]
) -> None:
    business = make_business()
    email = f"admin-{secrets.token_hex(4)}@moked.test"
    with session_scope() as session:
        add_user(session, email, role=Role.ADMIN, password=PASSWORD)
    assert crm_client.post("/login", data={"email": email, "password": PASSWORD}).status_code == 302
    number = unique_number()
    national = "0" + number.removeprefix("+972")
    answer = crm_client.post(
        f"/businesses/{business.id}/numbers",
        data={"number": f"{national} ext. 5"},
        follow_redirects=True,
    )
    assert answer.status_code == 200
    assert 'id="number-form-error"' in answer.get_data(as_text=True)  # inside the form
    kept = _business(business.name)
    assert kept is not None and number not in [n.e164 for n in kept.numbers]
    crm_client.post(f"/businesses/{business.id}/numbers", data={"number": national})
    kept = _business(business.name)
    assert kept is not None and number in [n.e164 for n in kept.numbers]
