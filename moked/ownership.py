"""Who owns the native stack's state when it runs as root: the `moked` system user.

As root, the native runner starts every service it can as `moked` (moked.stack.config), and
the operator's own commands run as root: `moked business add --greeting`, `moked model
pull`, a test writing a recording or a spooled event in-process. What root writes where a
service writes too is handed to `moked` at once, so the service can read it, replace it or
write beside it. Anyone else (the Docker images' uid 10001, a developer's own user) owns
what they write already: nothing to do.
"""

from __future__ import annotations

import os
import pwd
from pathlib import Path

SERVICE_ACCOUNT = "moked"
"""The system user and group of the native stack when it runs as root (scripts/bootstrap
makes them; `moked stack up` too if missing)."""


def running_as_root() -> bool:
    return os.geteuid() == 0


def service_ids() -> tuple[int, int] | None:
    """(uid, gid) of the `moked` account, when root and it exists; None otherwise."""
    if not running_as_root():
        return None
    try:
        account = pwd.getpwnam(SERVICE_ACCOUNT)
    except KeyError:
        return None
    return account.pw_uid, account.pw_gid


def hand_over(*paths: Path) -> None:
    """As root: give these files or directories (not what they hold) to `moked`. Symlinks
    are not followed; a path gone meanwhile is skipped."""
    ids = service_ids()
    if ids is None:
        return
    for path in paths:
        try:
            status = path.lstat()
            if (status.st_uid, status.st_gid) != ids:
                os.chown(path, *ids, follow_symlinks=False)
        except FileNotFoundError:
            continue


def hand_over_tree(*paths: Path) -> None:
    """As root: hand these paths and everything under them to `moked` (idempotent)."""
    if service_ids() is None:
        return
    for top in paths:
        if top.exists():
            hand_over(top, *(top.rglob("*") if top.is_dir() else ()))
