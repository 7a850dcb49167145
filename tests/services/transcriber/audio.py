"""Real audio for the tests: espeak-ng speech made 8 kHz telephone audio by ffmpeg."""

from __future__ import annotations

import functools
import subprocess
import tempfile
from pathlib import Path

VOICEMAIL_TEXT = (
    "Hello, this is Dana from the bakery. Please call me back about the birthday cake"
    " order for tomorrow morning. Thank you very much."
)
VOICEMAIL_WORDS = ("birthday", "cake", "order", "tomorrow morning")
LONG_TEXT = " ".join(
    [
        "Good morning, this is a long message about the delivery of the new furniture.",
        "The sofa arrived yesterday afternoon but the table is still missing.",
        "Please check with the warehouse and send the table as soon as possible.",
        "I will be at home every morning this week until eleven o'clock.",
        "If nobody answers the door, please call my mobile phone.",
        "The delivery address is the same as on the original order.",
        "Thank you very much and have a wonderful day.",
    ]
)
LONG_WORDS = ("furniture", "table", "warehouse")


def _run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


@functools.cache
def telephone_mp3(text: str, voice: str = "en-us") -> bytes:
    """The text spoken by espeak-ng, as Twilio records it: 8 kHz mono, MP3."""
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "voice.wav"
        mp3 = Path(tmp) / "voice.mp3"
        _run("espeak-ng", "-v", voice, "-s", "150", "-w", str(wav), text)
        _run(
            "ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(wav),
            "-af", "highpass=f=300,lowpass=f=3400",
            "-ar", "8000", "-ac", "1", "-codec:a", "libmp3lame", "-b:a", "32k", str(mp3),
        )  # fmt: skip
        return mp3.read_bytes()


@functools.cache
def silence_mp3(seconds: float = 6.0) -> bytes:
    """A recording of a line where nobody speaks (a faint hiss, as on a real phone line)."""
    with tempfile.TemporaryDirectory() as tmp:
        mp3 = Path(tmp) / "silence.mp3"
        _run(
            "ffmpeg", "-nostdin", "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", f"anoisesrc=color=pink:amplitude=0.002:duration={seconds}",
            "-ar", "8000", "-ac", "1", "-codec:a", "libmp3lame", "-b:a", "32k", str(mp3),
        )  # fmt: skip
        return mp3.read_bytes()


NOT_AUDIO = b"<html><body><h1>Service temporarily unavailable</h1></body></html>\n" * 20


@functools.cache
def noisy_mp3(text: str, amplitude: float = 0.6, voice: str = "en-us") -> bytes:
    """The text spoken on a very bad line: white noise as loud as the voice, or louder
    (the VAD still hears speech, so it is transcribed, but Whisper has to guess). The same
    noise every time (a fixed seed)."""
    with tempfile.TemporaryDirectory() as tmp:
        speech = Path(tmp) / "speech.mp3"
        speech.write_bytes(telephone_mp3(text, voice))
        mp3 = Path(tmp) / "noisy.mp3"
        _run(
            "ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(speech),
            "-f", "lavfi", "-i", f"anoisesrc=color=white:amplitude={amplitude}:duration=10:seed=7",
            "-filter_complex",
            "[0:a]aresample=16000[s];[1:a]aresample=16000[n];"
            "[s][n]amix=inputs=2:duration=longest:normalize=0",
            "-ar", "8000", "-ac", "1", "-codec:a", "libmp3lame", "-b:a", "32k", str(mp3),
        )  # fmt: skip
        return mp3.read_bytes()


ARABIC_TEXT = "مرحبا، أنا دانا من المخبز. من فضلك اتصل بي بخصوص كعكة عيد الميلاد."
RUSSIAN_TEXT = "Здравствуйте, это Дана из пекарни. Пожалуйста, перезвоните мне насчёт торта."
