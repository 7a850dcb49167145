"""The caller's voice: speech synthesised with espeak-ng, made telephone audio by ffmpeg.

Twilio records calls as 8 kHz mono; its media URL gives WAV (16-bit PCM) and, with `.mp3`,
an MP3 of the same audio. The simulator serves exactly that, so what the transcriber
downloads here has the shape of what it downloads from Twilio.
"""

from __future__ import annotations

import functools
import io
import shutil
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

from moked.simulator.errors import SimulatorError

SAMPLE_RATE = 8000
"""Twilio's recordings are narrow-band telephone audio."""
PHONE_BAND = "highpass=f=300,lowpass=f=3400"
"""What a phone line lets through."""
VOICES = {"he": "he", "en": "en-us"}
"""espeak-ng voice per --language."""
DEFAULT_TEXT = {
    "he": "שלום, מדברת דנה כהן. אני מתקשרת לגבי ההזמנה שלי. אנא חזרו אליי בהקדם. תודה רבה.",
    "en": "Hello, this is Dana Cohen calling about my order. Please call me back soon. Thank you.",
}


@dataclass(frozen=True, slots=True)
class Voicemail:
    """What the caller says into the recording, in both of Twilio's media formats."""

    wav: bytes
    mp3: bytes
    seconds: float
    label: str

    @property
    def is_silent(self) -> bool:
        return self.seconds == 0.0


SILENCE = Voicemail(wav=b"", mp3=b"", seconds=0.0, label="silence")
"""A caller who says nothing: Twilio trims it away and reports the recording absent."""


def _tool(name: str) -> str:
    path = shutil.which(name)
    if not path:
        raise SimulatorError(f"{name} is needed to synthesise the caller's voice (make install)")
    return path


def _ffmpeg(*args: str) -> None:
    result = subprocess.run(
        [_tool("ffmpeg"), "-nostdin", "-loglevel", "error", "-y", *args],
        capture_output=True,
        check=False,
        timeout=120,
    )
    if result.returncode != 0:
        raise SimulatorError(f"ffmpeg failed: {result.stderr.decode(errors='replace')[-400:]}")


def wav_seconds(data: bytes) -> float:
    with wave.open(io.BytesIO(data)) as reader:
        return float(reader.getnframes()) / float(reader.getframerate())


def telephone(source: Path, max_seconds: float | None = None, label: str = "") -> Voicemail:
    """Any audio file as Twilio's recording of it: 8 kHz mono WAV and MP3, cut at maxLength."""
    with tempfile.TemporaryDirectory(prefix="moked-sim-") as tmp:
        wav = Path(tmp) / "recording.wav"
        mp3 = Path(tmp) / "recording.mp3"
        limit = ["-t", f"{max_seconds:.3f}"] if max_seconds else []
        _ffmpeg(
            "-i",
            str(source),
            *limit,
            "-af",
            PHONE_BAND,
            "-ac",
            "1",
            "-ar",
            str(SAMPLE_RATE),
            "-c:a",
            "pcm_s16le",
            str(wav),
        )
        _ffmpeg("-i", str(wav), "-ac", "1", "-ar", str(SAMPLE_RATE), "-b:a", "32k", str(mp3))
        data = wav.read_bytes()
        return Voicemail(
            wav=data, mp3=mp3.read_bytes(), seconds=wav_seconds(data), label=label or source.name
        )


@functools.lru_cache(maxsize=64)
def speak(text: str, language: str = "he", max_seconds: float | None = None) -> Voicemail:
    """`text` spoken by espeak-ng in Hebrew or English, as telephone audio (cached)."""
    voice = VOICES.get(language)
    if voice is None:
        raise SimulatorError(f"no voice for language {language!r}; use one of {sorted(VOICES)}")
    with tempfile.TemporaryDirectory(prefix="moked-sim-") as tmp:
        raw = Path(tmp) / "speech.wav"
        result = subprocess.run(
            [_tool("espeak-ng"), "-v", voice, "-s", "150", "-w", str(raw), text],
            capture_output=True,
            check=False,
            timeout=60,
        )
        if result.returncode != 0:
            raise SimulatorError(f"espeak-ng failed: {result.stderr.decode(errors='replace')}")
        return telephone(raw, max_seconds, label=f"espeak-ng {voice}: {text[:40]}")


def load_file(path: Path, max_seconds: float | None = None) -> Voicemail:
    if not path.is_file():
        raise SimulatorError(f"no audio file {path}")
    return telephone(path, max_seconds)


@functools.lru_cache(maxsize=16)
def silence(seconds: float) -> Voicemail:
    """A recording of nothing (what Twilio keeps when told not to trim silence)."""
    frames = int(seconds * SAMPLE_RATE)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(SAMPLE_RATE)
        writer.writeframes(b"\x00\x00" * frames)
    data = buffer.getvalue()
    with tempfile.TemporaryDirectory(prefix="moked-sim-") as tmp:
        wav = Path(tmp) / "silence.wav"
        mp3 = Path(tmp) / "silence.mp3"
        wav.write_bytes(data)
        _ffmpeg("-i", str(wav), "-ac", "1", "-ar", str(SAMPLE_RATE), "-b:a", "32k", str(mp3))
        return Voicemail(wav=data, mp3=mp3.read_bytes(), seconds=seconds, label="silence")


def cut(voicemail: Voicemail, seconds: float) -> Voicemail:
    """The first `seconds` of a recording: what Twilio keeps when maxLength is reached."""
    if voicemail.is_silent or voicemail.seconds <= seconds:
        return voicemail
    with tempfile.TemporaryDirectory(prefix="moked-sim-") as tmp:
        source = Path(tmp) / "full.wav"
        source.write_bytes(voicemail.wav)
        return telephone(source, seconds, label=f"{voicemail.label} (cut at {seconds:.0f} s)")
