"""Greeting MP3s: where they live, the URL Twilio plays, validation and versioned names.

Twilio's media proxies cache `<Play>` URLs, so a changed greeting always gets a new file
name (its content hash) instead of overwriting the old one.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mutagen import MutagenError
from mutagen.mp3 import MP3, HeaderNotFoundError, MPEGFrame

from moked.ownership import hand_over

GREETINGS_URL_PREFIX = "/server/static/voice_responses/"
"""Public path nginx serves greetings under, as audio/mpeg."""
MAX_GREETING_BYTES = 5 * 1024 * 1024
MAX_GREETING_SECONDS = 120.0
MIN_GREETING_SECONDS = 0.3


class InvalidGreeting(ValueError):
    """An upload that is not a playable MP3 within the limits."""


@dataclass(frozen=True, slots=True)
class GreetingInfo:
    seconds: float
    bitrate: int
    sample_rate: int


def greeting_url(public_base: str, file_name: str) -> str:
    return public_base.rstrip("/") + GREETINGS_URL_PREFIX + file_name


def is_safe_name(file_name: str) -> bool:
    return (
        bool(file_name)
        and file_name.endswith(".mp3")
        and "/" not in file_name
        and not file_name.startswith(".")
        and all(c.isalnum() or c in "._-" for c in file_name)
    )


def is_playable(greetings_dir: Path, file_name: str | None) -> bool:
    """True when the file is on disk, so Twilio is never pointed at a missing greeting."""
    if not file_name or not is_safe_name(file_name):
        return False
    try:
        return (greetings_dir / file_name).stat().st_size > 0
    except OSError:
        return False


def _after_id3(data: bytes) -> int:
    """Where the audio starts: after the ID3v2 tags in front (some writers stack several)."""
    offset = 0
    while data[offset : offset + 3] == b"ID3" and len(data) >= offset + 10:
        size_bytes = data[offset + 6 : offset + 10]
        if any(b & 0x80 for b in size_bytes):
            break  # not a synchsafe size: not a tag
        size = 0
        for b in size_bytes:
            size = (size << 7) | b
        footer = 10 if data[offset + 5] & 0x10 else 0
        offset += 10 + size + footer
    return offset


def _frames_at_start(data: bytes) -> bool:
    """Two MPEG frames back to back where the audio must start. mutagen alone looks for a
    frame anywhere in the first megabyte, so a page with HTML or a script in front of its
    frames would pass, and nginx would serve it from our host."""
    stream = io.BytesIO(data)
    stream.seek(_after_id3(data))
    try:
        MPEGFrame(stream)  # type: ignore[no-untyped-call]  # reads one header, seeks past it
        MPEGFrame(stream)  # type: ignore[no-untyped-call]
    except HeaderNotFoundError:
        return False
    return True


def inspect_mp3(data: bytes) -> GreetingInfo:
    """Validate real MP3 audio (frames, not just a name) within size and duration limits."""
    if len(data) > MAX_GREETING_BYTES:
        raise InvalidGreeting(f"file is larger than {MAX_GREETING_BYTES // (1024 * 1024)} MB")
    try:
        audio = MP3(io.BytesIO(data))  # type: ignore[no-untyped-call]
    except (HeaderNotFoundError, MutagenError) as exc:
        raise InvalidGreeting("not an MP3 file") from exc
    if not _frames_at_start(data):
        raise InvalidGreeting("not an MP3 file")
    info: Any = audio.info
    seconds = float(info.length)
    if seconds < MIN_GREETING_SECONDS:
        raise InvalidGreeting("the recording is too short")
    if seconds > MAX_GREETING_SECONDS:
        raise InvalidGreeting(f"longer than {int(MAX_GREETING_SECONDS)} seconds")
    return GreetingInfo(
        seconds=seconds, bitrate=int(info.bitrate), sample_rate=int(info.sample_rate)
    )


def versioned_name(business_id: int, data: bytes) -> str:
    return f"business_{business_id}_{hashlib.sha256(data).hexdigest()[:12]}.mp3"


def store_greeting(greetings_dir: Path, business_id: int, data: bytes) -> str:
    """Validate and write the greeting under a new versioned name; return the name."""
    inspect_mp3(data)
    name = versioned_name(business_id, data)
    greetings_dir.mkdir(parents=True, exist_ok=True)
    target = greetings_dir / name
    with tempfile.NamedTemporaryFile(dir=greetings_dir, delete=False, suffix=".tmp") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(handle.name, 0o644)  # nginx workers (nobody) read it
    hand_over(Path(handle.name))  # as root (`moked business add`): the CRM's to prune
    os.replace(handle.name, target)
    return name


def prune_versions(
    greetings_dir: Path, business_id: int, *, current: str | None, keep: int
) -> list[str]:
    """Delete the business's stored greetings but the current one and the `keep` newest
    others (GREETING_VERSIONS_KEPT); return the names deleted. Call it once the business
    points at `current` (after the commit), so a rolled-back change never loses its file."""
    others = []
    for path in greetings_dir.glob(f"business_{business_id}_*.mp3"):
        if not is_safe_name(path.name) or path.name == current:
            continue
        try:
            others.append((path.stat().st_mtime_ns, path.name, path))
        except OSError:
            continue  # deleted meanwhile (another upload's pruning)
    others.sort(reverse=True)
    deleted = []
    for _mtime, name, path in others[max(keep, 0) :]:
        path.unlink(missing_ok=True)
        deleted.append(name)
    return deleted


def synthesize_mp3(text: str, voice: str = "he") -> bytes:
    """Speak `text` with espeak-ng and encode MP3 with ffmpeg (the demo greeting)."""
    espeak = shutil.which("espeak-ng")
    ffmpeg = shutil.which("ffmpeg")
    if not espeak or not ffmpeg:
        raise RuntimeError("espeak-ng and ffmpeg are needed to synthesise a greeting")
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "greeting.wav"
        mp3 = Path(tmp) / "greeting.mp3"
        subprocess.run([espeak, "-v", voice, "-w", str(wav), text], check=True, timeout=60)
        subprocess.run(
            [
                ffmpeg,
                "-nostdin",
                "-loglevel",
                "error",
                "-y",
                "-i",
                str(wav),
                "-ac",
                "1",
                "-ar",
                "22050",
                "-b:a",
                "48k",
                str(mp3),
            ],
            check=True,
            timeout=60,
        )
        return mp3.read_bytes()
