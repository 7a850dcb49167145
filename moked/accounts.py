"""CRM accounts: users, roles, business memberships and API tokens.

Passwords are hashed with werkzeug's scrypt; API tokens are random and only their SHA-256
is stored (a token is a bearer secret with 256 bits of entropy, so a fast hash suffices).
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from moked.businesses import find_business
from moked.db.models import ApiToken, Business, Membership, User
from moked.phone import InvalidPhoneNumber, to_e164
from moked.statuses import MembershipRole

MIN_PASSWORD_LENGTH = 10
MAX_EMAIL_LENGTH = 254
MAX_NAME_LENGTH = 200
"""users.email is String(254) and users.name String(200): longer is refused here, not by
Postgres (a traceback)."""
TOKEN_PREFIX = "mk_"  # noqa: S105 - a marker, not a secret
"""Every API token starts with this, so secret scanners and people recognise it."""
_DUMMY_HASH = generate_password_hash("timing-equaliser-" + secrets.token_hex(8))


class Role(enum.StrEnum):
    ADMIN = "admin"
    """Sees and manages every business."""
    STAFF = "staff"
    """Sees the businesses of their memberships only."""


class AccountError(ValueError):
    """An account operation that cannot be done as asked; the message says why."""


@dataclass(frozen=True, slots=True)
class NewUser:
    user_id: int
    email: str
    password: str | None
    """The generated password, when none was given (shown once)."""
    created: bool
    role: str = Role.STAFF.value
    """The user's role after the change."""


def normalise_email(email: str) -> str:
    value = email.strip().lower()
    if "@" not in value or value.startswith("@") or value.endswith("@") or " " in value:
        raise AccountError(f"not an e-mail address: {email!r}")
    return value


def generate_password() -> str:
    return secrets.token_urlsafe(12)


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    return generate_password_hash(password)


def find_user(session: Session, email: str) -> User | None:
    return session.scalar(select(User).where(User.email == email.strip().lower()))


def authenticate(session: Session, email: str, password: str) -> User | None:
    """The active user with this e-mail and password, or None (in constant-ish time)."""
    user = find_user(session, email)
    if user is None or not user.is_active:
        check_password_hash(_DUMMY_HASH, password)
        return None
    return user if check_password_hash(user.password_hash, password) else None


def end_sessions(session: Session, user_id: int) -> None:
    """Sign the user out everywhere: every CRM session issued so far stops working."""
    session.execute(
        update(User)
        .where(User.id == user_id)
        .values(session_generation=User.session_generation + 1)
    )


def add_user(
    session: Session,
    email: str,
    *,
    role: Role | None = None,
    business: str | None = None,
    password: str | None = None,
    name: str | None = None,
    owner: bool = False,
    phone: str | None = None,
) -> NewUser:
    """Create the user, or update password and add a membership (idempotent). The role
    changes only when one is given: a new user is staff by default, and an admin given
    access to one more business stays an admin. `owner` makes the membership an owner's
    (they manage the business's notification rules); without it a membership is left as
    it is."""
    address = normalise_email(email)
    if len(address) > MAX_EMAIL_LENGTH:
        raise AccountError(f"an e-mail address has at most {MAX_EMAIL_LENGTH} characters")
    if name is not None and len(name) > MAX_NAME_LENGTH:
        raise AccountError(f"a name has at most {MAX_NAME_LENGTH} characters")
    target: Business | None = None
    if business is not None:
        target = find_business(session, business)
        if target is None:
            raise AccountError(f"no business {business!r}")
    generated = None
    user = find_user(session, address)
    created = user is None
    # A new staff user, or an admin made staff, would see nothing without a business.
    becomes_staff = role is Role.STAFF or (role is None and user is None)
    if becomes_staff and target is None and (user is None or user.role != Role.STAFF.value):
        raise AccountError("a staff user needs --business")
    if owner and target is None:
        raise AccountError("--owner needs --business")
    phone_e164 = staff_phone(phone) if phone is not None else None
    if user is None:
        if password is None:
            generated = password = generate_password()
        user = User(
            email=address,
            role=(role or Role.STAFF).value,
            password_hash=hash_password(password),
        )
        user.name = name
        user.language = "he"
        user.is_active = True
        session.add(user)
        session.flush()
    else:
        if role is not None:
            user.role = role.value
        if password is not None:
            user.password_hash = hash_password(password)
        if name:
            user.name = name
    if phone is not None:
        user.phone = phone_e164
    if target is not None:
        add_membership(session, user, target, MembershipRole.OWNER if owner else None)
    session.flush()
    return NewUser(
        user_id=user.id, email=address, password=generated, created=created, role=user.role
    )


def staff_phone(raw: str) -> str | None:
    """A staff member's phone as stored: E.164, or None for an empty value (no phone)."""
    if not raw.strip():
        return None
    try:
        return to_e164(raw)
    except InvalidPhoneNumber as exc:
        raise AccountError(f"not a valid phone number: {raw.strip()[:40]!r}") from exc


def set_phone(session: Session, user_id: int, raw: str) -> str | None:
    """Set (or clear, with an empty value) the phone a CRM callback rings first."""
    user = session.get(User, user_id)
    if user is None:
        raise AccountError("no such user")
    user.phone = staff_phone(raw)
    session.flush()
    return user.phone


def add_membership(
    session: Session, user: User, business: Business, role: MembershipRole | None = None
) -> None:
    """Let the user see the business (idempotent); the user's role is left as it is, and
    the membership's too unless `role` is given (a new one is a member's)."""
    exists = session.scalar(
        select(Membership).where(
            Membership.user_id == user.id, Membership.business_id == business.id
        )
    )
    if exists is None:
        session.add(
            Membership(user_id=user.id, business_id=business.id, role=role or MembershipRole.MEMBER)
        )
    elif role is not None:
        exists.role = role


def owns(session: Session, user_id: int, business_id: int) -> bool:
    """Whether the user is an owner of the business (admins are not asked: they manage all)."""
    role = session.scalar(
        select(Membership.role).where(
            Membership.user_id == user_id, Membership.business_id == business_id
        )
    )
    return role is MembershipRole.OWNER


def manages(session: Session, user_id: int, business_id: int) -> bool:
    """The one rule for managing a business (greetings, numbers, tags, staff, notification
    rules, callback hours): an admin, or an owner of that business."""
    user = session.get(User, user_id)
    if user is None or not user.is_active:
        return False
    return user.role == Role.ADMIN.value or owns(session, user_id, business_id)


class LastOwner(AccountError):
    """The change would leave a business that has owners without one."""


def _membership(session: Session, business_id: int, user_id: int) -> Membership:
    row = session.scalar(
        select(Membership).where(
            Membership.business_id == business_id, Membership.user_id == user_id
        )
    )
    if row is None:
        raise AccountError("no such member")
    return row


def _keep_an_owner(session: Session, row: Membership) -> None:
    """A business's last owner cannot step down or be removed: an owner would otherwise
    lock themselves (and their business) out of managing it. An admin promotes another
    member first."""
    if row.role is not MembershipRole.OWNER:
        return
    # Locked, so two owners stepping down at once cannot both pass the count.
    owners = session.scalars(
        select(Membership.id)
        .where(
            Membership.business_id == row.business_id,
            Membership.role == MembershipRole.OWNER,
        )
        .with_for_update()
    ).all()
    if len(owners) <= 1:
        raise LastOwner("a business keeps at least one owner")


def set_membership_role(
    session: Session, business_id: int, user_id: int, role: MembershipRole
) -> bool:
    """Make a member an owner or an owner a member of this business only; the user's
    global role never changes. Returns whether anything changed."""
    row = _membership(session, business_id, user_id)
    if row.role is role:
        return False
    if role is MembershipRole.MEMBER:
        _keep_an_owner(session, row)
        row.role = role
    else:
        row.role = role
    session.flush()
    return True


def remove_membership(session: Session, business_id: int, user_id: int) -> None:
    """Take the business away from the user (their other memberships stay).

    Their open sessions need not end: the CRM reads a user's businesses and roles again on
    every request (crm_ui.auth's loader), so the next request already lacks it. Ending them
    would let an owner sign anyone out by adding, then removing, their email."""
    row = _membership(session, business_id, user_id)
    _keep_an_owner(session, row)
    session.delete(row)
    session.flush()


def business_ids_for(session: Session, user: User) -> list[int] | None:
    """The businesses a user may see: None means all of them (admin)."""
    if user.role == Role.ADMIN.value:
        return None
    return list(
        session.scalars(
            select(Membership.business_id)
            .where(Membership.user_id == user.id)
            .order_by(Membership.business_id)
        )
    )


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(session: Session, email: str, label: str | None = None) -> str:
    """A new API token for the user; returns the token (only its hash is kept)."""
    user = find_user(session, email)
    if user is None:
        raise AccountError(f"no user {email!r}")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(
        ApiToken(user_id=user.id, token_hash=hash_token(token), prefix=token[:10], label=label)
    )
    session.flush()
    return token


def user_for_token(session: Session, token: str) -> User | None:
    """The active user of an unrevoked token, or None; records when it was last used."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
    if row is None or row.revoked_at is not None:
        return None
    user = session.get(User, row.user_id)
    if user is None or not user.is_active:
        return None
    now = dt.datetime.now(dt.UTC)
    if row.last_used_at is None or now - row.last_used_at > dt.timedelta(minutes=1):
        row.last_used_at = now
    return user
