"""Fetching a recording from Twilio and keeping it privately under RECORDINGS_DIR.

- HTTP basic auth with the account's credentials (accounts enforce auth on media), sent
  only to the allow-listed host of RecordingUrl, never to a redirect target;
- retries while Twilio answers 404 (the file may not exist yet), 429, 5xx or the network
  fails, with backoff, within one attempt; the job's own retries come after;
- timeouts on connect and on every read, a size cap checked on the header and the body;
- hosts (and every redirect) checked against MEDIA_ALLOWED_HOSTS on the URL as requests
  reads it (urllib3's parse_url; its adapter then picks the connection with urllib.parse,
  so both must agree), and the request built from those parsed parts: a URL two parsers
  read differently (`http://127.0.0.1:80\\@api.twilio.com/`), or with user-info, is refused;
- the body decoded as audio before it is kept; files are written atomically, 0644 in
  0755 directories (nginx workers, running as nobody, stream them to the CRM).
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import requests
from urllib3.exceptions import LocationParseError
from urllib3.util import Url, parse_url

from moked.ownership import hand_over
from transcriber.errors import MediaNotReady, MediaRejected, MediaUnavailable

log = logging.getLogger(__name__)

RETRY_DELAYS_SECONDS = (0.5, 1.0, 2.0, 4.0, 8.0)
"""Waits between tries within one attempt (~15 s); then the job is retried later."""
MAX_REDIRECTS = 5
RETRYABLE_STATUS = frozenset({404, 408, 425, 429, 500, 502, 503, 504})
EXTENSIONS = (".mp3", ".wav")
DEFAULT_EXTENSION = ".mp3"
"""Twilio serves the same recording as MP3 (small) or WAV; MP3 is what the CRM plays."""
# Callers' voices: the writer's group reads them (nginx's workers for the CRM, the
# notifier), other local users cannot; set-gid directories pass the group on.
FILE_MODE = 0o640
DIR_MODE = 0o2750
_CHUNK = 64 * 1024
_FORMATS = {"mp3": (".mp3", "audio/mpeg"), "wav": (".wav", "audio/wav")}


@dataclass(frozen=True, slots=True)
class StoredMedia:
    local_path: str
    """Relative to RECORDINGS_DIR."""
    content_type: str
    size_bytes: int
    audio_seconds: float


@dataclass(frozen=True, slots=True)
class FetchPolicy:
    allowed_hosts: frozenset[str]
    auth: tuple[str, str] | None
    max_bytes: int
    timeout_seconds: float
    require_https: bool
    retry_delays: Sequence[float] = RETRY_DELAYS_SECONDS
    sleep: Callable[[float], None] = time.sleep


def media_url(recording_url: str) -> str:
    """RecordingUrl with the extension to fetch (Twilio gives it without one)."""
    path = urlsplit(recording_url).path
    if path.lower().endswith(EXTENSIONS):
        return recording_url
    return recording_url + DEFAULT_EXTENSION


def host_allowed(host: str, allowed: frozenset[str]) -> bool:
    """Exact host, or a domain entry written `.example.com` matching its subdomains."""
    host = host.lower().rstrip(".")
    for entry in allowed:
        if entry.startswith("."):
            if host.endswith(entry) or host == entry[1:]:
                return True
        elif host == entry:
            return True
    return False


def _checked_url(url: str, policy: FetchPolicy) -> str:
    """The URL to request, rebuilt from the parts requests will read; MediaRejected unless
    its host is allowed and every parser agrees on it."""
    shown = url[:200]
    # A backslash is a path character to urllib3 but ends the authority to browsers and
    # to urllib.parse's hostname: one URL, two hosts. Control characters and spaces too.
    if "\\" in url or any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
        raise MediaRejected(
            f"refusing a media URL with a backslash or a control character {shown!r}"
        )
    try:
        parts = parse_url(url)
        netloc = urlsplit(url).netloc
    except (LocationParseError, ValueError) as exc:
        raise MediaRejected(f"refusing a media URL that does not parse {shown!r}") from exc
    if parts.scheme not in ("http", "https"):
        raise MediaRejected(f"refusing to fetch {parts.scheme or 'a scheme-less'} URL {shown!r}")
    if parts.auth is not None or "@" in netloc:
        raise MediaRejected(f"refusing a media URL with user-info {shown!r}")
    host = parts.host or ""
    if not host_allowed(host, policy.allowed_hosts):
        raise MediaRejected(
            f"media host {host!r} is not in MEDIA_ALLOWED_HOSTS"
            f" ({', '.join(sorted(policy.allowed_hosts))})"
        )
    if policy.require_https and parts.scheme != "https":
        raise MediaRejected(f"refusing plain-HTTP media URL {shown!r} in production")
    # Built from the parsed parts (no fragment, no user-info): what is requested is what
    # was checked. requests' adapter reads it again with urllib.parse; both must agree.
    built = Url(
        scheme=parts.scheme, host=host, port=parts.port, path=parts.path, query=parts.query
    ).url
    try:
        again = urlsplit(built)
        agree = (again.hostname or "") == host.strip("[]").lower() and again.port == parts.port
    except ValueError:
        agree = False
    if not agree:
        raise MediaRejected(f"refusing a media URL read two ways {shown!r}")
    return built


def _describe(response: requests.Response) -> str:
    if response.status_code == 401:
        return "401: Twilio refused the credentials (check TWILIO_ACCOUNT_SID/TWILIO_AUTH_TOKEN)"
    if response.status_code == 404:
        return "404: the recording is not available (yet)"
    return f"{response.status_code} {response.reason or ''}".strip()


def _get(url: str, policy: FetchPolicy, session: requests.Session) -> requests.Response:
    """GET following redirects ourselves: each hop allow-listed, credentials on hop one only."""
    current = url
    for hop in range(MAX_REDIRECTS + 1):
        current = _checked_url(current, policy)
        response = session.get(
            current,
            auth=policy.auth if hop == 0 else None,
            timeout=(min(5.0, policy.timeout_seconds), policy.timeout_seconds),
            stream=True,
            allow_redirects=False,
        )
        if response.is_redirect and "location" in response.headers:
            current = urljoin(current, response.headers["location"])
            response.close()
            continue
        return response
    raise MediaUnavailable(f"more than {MAX_REDIRECTS} redirects fetching {url}")


def _write_body(response: requests.Response, partial: Path, max_bytes: int) -> int:
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise MediaRejected(
            f"the recording is {int(declared)} bytes, over MEDIA_MAX_BYTES ({max_bytes})"
        )
    size = 0
    with open(partial, "wb") as out:
        for chunk in response.iter_content(_CHUNK):
            size += len(chunk)
            if size > max_bytes:
                raise MediaRejected(f"the recording is over MEDIA_MAX_BYTES ({max_bytes} bytes)")
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    return size


def download(url: str, partial: Path, policy: FetchPolicy) -> tuple[int, str]:
    """Fetch url into partial; (bytes, Content-Type). Retries within the attempt."""
    last = "no answer"
    delays = [*policy.retry_delays, None]
    with requests.Session() as session:
        session.trust_env = False  # no proxy from the environment for credentials
        for delay in delays:
            try:
                with _get(url, policy, session) as response:
                    if response.status_code == 200:
                        size = _write_body(response, partial, policy.max_bytes)
                        return size, response.headers.get("content-type", "")
                    last = _describe(response)
                    if response.status_code in (401, 403):
                        # Credentials are configuration: retried by the job, not in a loop.
                        raise MediaUnavailable(f"fetching the recording failed: {last}")
                    if response.status_code not in RETRYABLE_STATUS:
                        raise MediaRejected(f"fetching the recording failed: {last}")
            except requests.RequestException as exc:
                last = f"{type(exc).__name__}: {exc}"
            if delay is not None:
                log.info("recording not fetched (%s); trying again in %.1f s", last, delay)
                policy.sleep(delay)
    if last.startswith("404"):
        raise MediaNotReady(f"fetching the recording failed: {last}")
    raise MediaUnavailable(f"fetching the recording failed: {last}")


def probe_audio(path: Path) -> tuple[str, float]:
    """(format, seconds) of an audio file, decoding all of it; MediaRejected when it is not."""
    import av

    try:
        with av.open(str(path), mode="r") as container:
            streams = container.streams.audio
            if not streams:
                raise MediaRejected("the file is not audio (it has no audio stream)")
            fmt = container.format.name
            seconds = 0.0
            for frame in container.decode(streams[0]):
                if frame.sample_rate:
                    seconds += frame.samples / frame.sample_rate
    except MediaRejected:
        raise
    except (av.error.FFmpegError, OSError, ValueError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise MediaRejected(f"the file is not audio ({reason})") from exc
    if seconds <= 0:
        raise MediaRejected("the file is not audio (no audio frames could be decoded)")
    return fmt, seconds


def _kind(fmt: str, content_type: str) -> tuple[str, str]:
    for key, value in _FORMATS.items():
        if key in fmt.split(","):
            return value
    clean = content_type.split(";")[0].strip().lower()
    return ".audio", clean if clean.startswith("audio/") else "application/octet-stream"


def relative_path(recording_sid: str, when: time.struct_time, extension: str) -> str:
    return f"{when.tm_year:04d}/{when.tm_mon:02d}/{recording_sid}{extension}"


def store(recording_url: str, recording_sid: str, root: Path, policy: FetchPolicy) -> StoredMedia:
    """Download, verify and keep the recording; returns where and what it is."""
    url = _checked_url(media_url(recording_url), policy)
    root.mkdir(parents=True, exist_ok=True)
    partial = root / f".{recording_sid}.{secrets.token_hex(4)}.part"
    try:
        size, content_type = download(url, partial, policy)
        try:
            fmt, seconds = probe_audio(partial)
        except MediaRejected as exc:
            served = content_type.split(";")[0].strip() or "no Content-Type"
            raise MediaRejected(f"{exc.message}; {size} bytes served as {served}") from exc
        extension, kind = _kind(fmt, content_type)
        relative = relative_path(recording_sid, time.gmtime(), extension)
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        for directory in (target.parent, target.parent.parent):
            directory.chmod(DIR_MODE)
        partial.chmod(FILE_MODE)
        # As root (a test, the CLI): the transcriber's, which writes beside it later.
        hand_over(target.parent.parent, target.parent, partial)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    log.info("stored %s (%d bytes, %.1f s of %s)", relative, size, seconds, kind)
    return StoredMedia(
        local_path=relative, content_type=kind, size_bytes=size, audio_seconds=seconds
    )


def existing(root: Path, local_path: str | None, size_bytes: int | None) -> Path | None:
    """The stored copy when it is still there, whole (a retry need not download again)."""
    if not local_path:
        return None
    path = root / local_path
    try:
        if path.is_file() and (size_bytes is None or path.stat().st_size == size_bytes):
            return path
    except OSError:
        return None
    return None
