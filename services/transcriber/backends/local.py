"""The local backend: faster-whisper (CTranslate2) on the CPU (int8) or a CUDA GPU, VAD on.

The model is loaded once when the worker process starts and serves every job after. On a
GPU the speech chunks of a recording are decoded together (faster-whisper's
BatchedInferencePipeline, WHISPER_BATCH_SIZE); the same path runs on the CPU when asked.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moked import metrics
from moked.models import DEFAULT_ROUTE, configured_model
from moked.settings import Settings, WhisperDevice
from moked.transcripts import Segment
from transcriber.backends.base import Detection, Transcript
from transcriber.errors import BackendError, ModelError
from transcriber.model_store import resolve_model_dir

log = logging.getLogger(__name__)

BEAM_SIZE = 5
"""Whisper's default; greedy decoding (1) is barely faster on short voicemails here."""
GPU_BATCH_SIZE = 8
"""WHISPER_BATCH_SIZE=0 on CUDA: faster-whisper's own default."""


def device_of(setting: WhisperDevice) -> str:
    """WHISPER_DEVICE as CTranslate2's device: auto is cuda when it sees a GPU."""
    if setting is not WhisperDevice.AUTO:
        return setting.value
    import ctranslate2

    try:
        return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    except RuntimeError:  # a CPU-only build, or no driver
        return "cpu"


def batch_size_of(configured: int, device: str) -> int:
    """WHISPER_BATCH_SIZE, or by device: batched on a GPU, not on the CPU (0 or 1 = not)."""
    if configured > 0:
        return configured
    return GPU_BATCH_SIZE if device == "cuda" else 0


def cpu_threads(configured: int, workers: int = 1) -> int:
    """WHISPER_THREADS, or the cores this process may run on shared among the workers
    (two workers on 2 cores get one thread each, not two each fighting for them)."""
    if configured > 0:
        return configured
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, workers))


@dataclass
class LocalBackend:
    model: str
    model_dir: Path
    compute_type: str
    threads: int
    _whisper: Any
    name: str = "local"
    device: str = "cpu"
    batch_size: int = 0
    _batched: Any = None
    """faster-whisper's BatchedInferencePipeline over the same model, when batch_size > 1."""

    @classmethod
    def from_settings(
        cls, settings: Settings, model: tuple[Path, str] | None = None
    ) -> LocalBackend:
        """Load `model` (directory, name), by default the default route's model."""
        from faster_whisper import BatchedInferencePipeline, WhisperModel

        if model is None:
            model = resolve_model_dir(configured_model(settings, DEFAULT_ROUTE), settings.state_dir)
        model_dir, display = model
        threads = cpu_threads(settings.whisper_threads, settings.transcriber_workers)
        device = device_of(settings.whisper_device)
        batch = batch_size_of(settings.whisper_batch_size, device)
        started = time.monotonic()
        try:
            whisper = WhisperModel(
                str(model_dir),
                device=device,
                compute_type=settings.whisper_compute_type,
                cpu_threads=threads,
                num_workers=1,
                local_files_only=True,
            )
        except (RuntimeError, ValueError, OSError) as exc:
            raise ModelError(
                f"cannot load the Whisper model in {model_dir} on {device}: {exc}"
            ) from exc
        log.info(
            "loaded Whisper model %s (%s on %s%s, %d threads) in %.1f s in process %d",
            display,
            settings.whisper_compute_type,
            device,
            f", batches of {batch}" if batch > 1 else "",
            threads,
            time.monotonic() - started,
            os.getpid(),
        )
        metrics.TRANSCRIPTION_MODEL_LOADS.labels("local", display).inc()
        return cls(
            model=display,
            model_dir=model_dir,
            compute_type=settings.whisper_compute_type,
            threads=threads,
            _whisper=whisper,
            device=device,
            batch_size=batch,
            _batched=BatchedInferencePipeline(model=whisper) if batch > 1 else None,
        )

    def warm_up(self) -> None:
        """Load what the first job would otherwise pay for (the VAD model, allocators)."""
        import numpy as np

        silence = np.zeros(16000, dtype=np.float32)
        segments, _ = self._whisper.transcribe(silence, language="en", vad_filter=True)
        list(segments)

    def transcribe(self, audio: Path, language: str) -> Transcript:
        if language not in self._whisper.supported_languages:
            # Staff or an operator named a language Whisper does not know: retrying will not
            # help, and the message says what to do.
            raise BackendError(
                f"Whisper does not know the language {language!r}; transcribe again in another one",
                permanent=True,
            )
        options: dict[str, Any] = {
            "language": language,
            "task": "transcribe",
            "beam_size": BEAM_SIZE,
            "vad_filter": True,
            "condition_on_previous_text": False,
            # Timed segments are stored (the call page seeks by sentence): timestamp tokens
            # cost decoding time, measured by `make bench`.
            "without_timestamps": False,
        }
        try:
            if self._batched is not None:
                segments, info = self._batched.transcribe(
                    str(audio), batch_size=self.batch_size, **options
                )
            else:
                segments, info = self._whisper.transcribe(str(audio), **options)
            # `segments` is lazy: the decoding happens while it is consumed.
            timed = tuple(
                Segment(
                    start=float(segment.start),
                    end=float(segment.end),
                    text=segment.text.strip(),
                    avg_logprob=float(segment.avg_logprob),
                    no_speech_prob=float(segment.no_speech_prob),
                    temperature=segment.temperature,
                )
                for segment in segments
            )
        except (RuntimeError, ValueError, OSError) as exc:
            raise BackendError(f"faster-whisper failed: {exc}") from exc
        kept = tuple(s for s in timed if s.text)
        text = " ".join(s.text for s in kept)
        return Transcript(
            text=text, language=language, audio_seconds=float(info.duration), segments=kept
        )

    def detect(self, audio: Path, candidates: tuple[str, ...]) -> Detection | None:
        """The most likely of `candidates` in the speech of the first 30 s (Whisper's
        detector, after VAD); None when there is no speech to judge."""
        from faster_whisper.audio import decode_audio
        from faster_whisper.vad import get_speech_timestamps

        try:
            samples = decode_audio(str(audio), sampling_rate=16000)
            if not get_speech_timestamps(samples):
                return None
            _, _, probabilities = self._whisper.detect_language(
                samples, vad_filter=True, language_detection_segments=1
            )
        except (RuntimeError, ValueError, OSError) as exc:
            raise BackendError(f"faster-whisper's language detection failed: {exc}") from exc
        heard = dict(probabilities)
        known = [c for c in candidates if c in heard]
        if not known:
            return None
        best = max(known, key=lambda code: heard[code])
        return Detection(language=best, probability=float(heard[best]))
