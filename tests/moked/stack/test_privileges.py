"""Local privileges of the native stack (issue 13, item 8): another local user can reach
neither Postgres nor Redis, and the superuser needs its password even on the socket."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from urllib.parse import urlsplit

import psycopg2
import pytest
import redis as redis_lib

from moked.stack import native
from tests.harness import StackUnderTest

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")


def _as_nobody(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["runuser", "-u", "nobody", "--", *command],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )


def test_the_postgres_socket_is_private_and_asks_for_a_password(stack: StackUnderTest) -> None:
    layout = stack.layout
    assert stat.S_IMODE(layout.pg_socket_dir.stat().st_mode) == 0o700
    secret = layout.pg_superuser_password_file
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    _, port, _, _, _ = layout.database
    with pytest.raises(psycopg2.OperationalError, match="password"):
        psycopg2.connect(
            host=str(layout.pg_socket_dir), port=port, user="postgres", dbname="postgres"
        )
    native.superuser_connection(layout).close()  # with the password it opens


@as_root
def test_another_local_user_reaches_neither_postgres_nor_redis(stack: StackUnderTest) -> None:
    layout = stack.layout
    _, port, _, _, _ = layout.database
    psql = shutil.which("psql")
    assert psql is not None
    denied = _as_nobody(
        psql, "-h", str(layout.pg_socket_dir), "-p", str(port), "-U", "postgres", "-w",
        "-c", "SELECT 1",
    )  # fmt: skip
    assert denied.returncode != 0
    assert "Permission denied" in denied.stderr or "password" in denied.stderr
    # Over TCP, as the superuser, without its password.
    tcp = _as_nobody(
        psql, "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-w", "-c", "SELECT 1"
    )
    assert tcp.returncode != 0 and "password" in tcp.stderr

    redis_cli = shutil.which("redis-cli")
    assert redis_cli is not None
    answer = _as_nobody(redis_cli, "-p", str(layout.redis_port), "LLEN", "rq:queue:transcription")
    assert "NOAUTH" in answer.stdout + answer.stderr


def test_redis_asks_for_the_password_in_redis_url(stack: StackUnderTest) -> None:
    url = urlsplit(stack.settings.redis_url)
    assert url.password, "the test stack, like `make up`, gives Redis a password"
    anonymous = redis_lib.Redis(host="127.0.0.1", port=stack.layout.redis_port)
    with pytest.raises(redis_lib.AuthenticationError):
        anonymous.ping()
    assert stat.S_IMODE(stack.layout.redis_conf.stat().st_mode) == 0o600
