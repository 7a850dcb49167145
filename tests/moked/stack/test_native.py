"""The native runner is idempotent: a second `up` restarts nothing and rewrites nothing."""

from __future__ import annotations

import re

from moked.stack import native
from tests.harness import StackUnderTest


def pids(stack: StackUnderTest) -> dict[str, str]:
    status = stack.supervisorctl("status")
    return dict(re.findall(r"^(\S+)\s+RUNNING\s+pid (\d+)", status, re.M))


def test_second_up_changes_nothing(stack: StackUnderTest) -> None:
    layout = stack.layout
    before = pids(stack)
    files = {p: p.read_bytes() for p in layout.run_dir.glob("*.conf")}
    files[layout.env_file] = layout.env_file.read_bytes()

    native.start(layout)
    native.wait_healthy(layout)

    assert pids(stack) == before
    for path, content in files.items():
        assert path.read_bytes() == content, path
    assert {"postgres", "redis", "nginx", "webhooks", "reconciler"} <= set(before)


def test_supervisor_restarts_a_crashed_service(stack: StackUnderTest) -> None:
    import os
    import signal
    import time

    before = pids(stack)["reconciler"]
    os.kill(int(before), signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        now = pids(stack).get("reconciler")
        if now and now != before:
            break
        time.sleep(0.5)
    assert pids(stack).get("reconciler") not in (None, before)


def test_nginx_config_renders_and_passes_nginx_t(stack: StackUnderTest) -> None:
    import subprocess

    result = subprocess.run(
        ["nginx", "-t", "-c", str(stack.layout.nginx_conf)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    rendered = stack.layout.nginx_conf.read_text()
    assert not re.search(r"^[^#]*\$\{[A-Z_]+\}", rendered, re.M), "unrendered placeholder"
    assert "proxy_read_timeout 8s" in rendered
