"""Language detection, timed segments and confidence (issue 15, items 3-5), and the device
and batched pipeline (item 7), in process: the worker's own Router and LocalBackend over the
embedded base model, on espeak-ng telephone audio."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import pytest
from pydantic import SecretStr

from moked import transcripts
from moked.models import EMBEDDED_MODEL_NAME
from moked.settings import Settings, TranscriberBackend, WhisperDevice
from moked.transcripts import Segment
from tests.services.transcriber.audio import (
    ARABIC_TEXT,
    RUSSIAN_TEXT,
    VOICEMAIL_TEXT,
    VOICEMAIL_WORDS,
    noisy_mp3,
    silence_mp3,
    telephone_mp3,
)
from tests.services.transcriber.conftest import words_in
from transcriber.backends import LanguageRequest
from transcriber.backends.base import Detection
from transcriber.backends.local import LocalBackend, batch_size_of, device_of
from transcriber.backends.router import Router
from transcriber.errors import BackendError, ModelError

DEFAULT_EXPECTED = transcripts.expected_languages("he", None, ("en", "ar", "ru"))


@pytest.fixture(scope="module")
def router(tmp_path_factory: pytest.TempPathFactory) -> Router:
    """What a worker builds with no model installed and no key: everything on base."""
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        state_dir=tmp_path_factory.mktemp("state"),
        transcriber_backend=TranscriberBackend.AUTO,
        openai_api_key=SecretStr(""),
        whisper_model="",
        whisper_model_default="",
        whisper_model_he="",
        whisper_model_en="",
        whisper_model_ar="",
        whisper_model_ru="",
    )
    return Router.from_settings(settings)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("clips")
    made = {
        "en": telephone_mp3(VOICEMAIL_TEXT),
        "ar": telephone_mp3(ARABIC_TEXT, "ar"),
        "ru": telephone_mp3(RUSSIAN_TEXT, "ru"),
        "noisy": noisy_mp3(VOICEMAIL_TEXT, 0.6),
        "silence": silence_mp3(),
    }
    paths = {}
    for name, audio in made.items():
        paths[name] = folder / f"{name}.mp3"
        paths[name].write_bytes(audio)
    return paths


def test_a_business_expects_its_own_language_then_the_defaults() -> None:
    assert DEFAULT_EXPECTED == ("he", "en", "ar", "ru")
    assert transcripts.expected_languages("he", ["en", "he"], ("ar",)) == ("he", "en")
    assert transcripts.expected_languages("en", [], ("ar",)) == ("en", "ar")


def test_english_to_a_hebrew_business_comes_out_in_english(
    router: Router, clips: dict[str, Path]
) -> None:
    """The detector is the multilingual base, never the Hebrew route's model."""
    transcript = router.transcribe_call(clips["en"], LanguageRequest("he", DEFAULT_EXPECTED))

    assert router.detector is not None and router.detector.model == EMBEDDED_MODEL_NAME
    assert transcript.language == "en" and transcript.detected_language == "en"
    assert transcript.language_probability is not None
    assert transcript.language_probability > transcripts.LANGUAGE_PROBABILITY_FLOOR
    assert not words_in(transcript.text, VOICEMAIL_WORDS), transcript.text
    assert transcript.low_confidence is None, transcript.low_confidence


@pytest.mark.parametrize("spoken", ["ar", "ru", "en"])
def test_a_business_limited_to_hebrew_and_english_never_gets_a_third_language(
    router: Router, clips: dict[str, Path], spoken: str
) -> None:
    limited = LanguageRequest("he", transcripts.expected_languages("he", ["en"], ("ar", "ru")))
    everything = LanguageRequest("he", DEFAULT_EXPECTED)

    transcript = router.transcribe_call(clips[spoken], limited)

    assert transcript.language in ("he", "en")
    assert transcript.detected_language in ("he", "en")
    if spoken == "ar":  # the same clip, with Arabic expected, is heard as Arabic
        detection = router.detect(clips[spoken], everything)
        assert detection is not None and detection.language == "ar"


def test_staff_choice_of_language_wins_over_detection(
    router: Router, clips: dict[str, Path]
) -> None:
    transcript = router.transcribe_call(
        clips["en"], LanguageRequest("he", DEFAULT_EXPECTED, forced="ar")
    )

    assert transcript.language == "ar"
    assert transcript.detected_language == "en", "what was heard is still recorded"
    assert transcripts.REASON_LANGUAGE not in (transcript.low_confidence or "")


def test_one_expected_language_is_not_detected(router: Router, clips: dict[str, Path]) -> None:
    transcript = router.transcribe_call(clips["en"], LanguageRequest("en", ("en",)))

    assert (transcript.language, transcript.detected_language) == ("en", None)
    assert transcript.language_probability is None


def test_segments_are_ordered_and_make_up_the_transcript(
    router: Router, clips: dict[str, Path]
) -> None:
    transcript = router.transcribe_call(clips["en"], LanguageRequest("en", ("en",)))
    segments = transcript.segments

    assert len(segments) >= 2, segments
    assert " ".join(s.text for s in segments) == transcript.text
    for segment in segments:
        assert 0 <= segment.start < segment.end
        assert segment.avg_logprob is not None and segment.no_speech_prob is not None
    for before, after in itertools.pairwise(segments):
        assert before.end <= after.start + 0.01, (before, after)
    assert transcript.audio_seconds is not None
    assert segments[-1].end <= transcript.audio_seconds + 0.5
    stored = [s.to_dict() for s in segments]
    assert transcripts.segments_of(stored)[0].text == segments[0].text
    assert transcripts.public(stored)[0].keys() == {"start", "end", "text"}


def test_a_voicemail_drowned_in_noise_is_marked_low_confidence(
    router: Router, clips: dict[str, Path]
) -> None:
    transcript = router.transcribe_call(clips["noisy"], LanguageRequest("en", ("en",)))

    assert transcript.low_confidence, (transcript.text, transcript.segments)
    assert transcripts.reason_kinds(transcript.low_confidence)[0] in (
        transcripts.REASON_WORDS,
        transcripts.REASON_NO_SPEECH,
    )


def test_a_silent_line_has_no_text_to_doubt(router: Router, clips: dict[str, Path]) -> None:
    """Noise alone never reaches Whisper (the VAD drops it): the recording is `empty`."""
    transcript = router.transcribe_call(clips["silence"], LanguageRequest("he", DEFAULT_EXPECTED))

    assert transcript.text == "" and transcript.segments == ()
    assert transcript.detected_language is None
    assert transcript.language == "he"


# --- the rules, on numbers ----------------------------------------------------------------


def _segment(start: float, end: float, logprob: float, no_speech: float, t: float = 0.0) -> Segment:
    return Segment(start, end, "x", avg_logprob=logprob, no_speech_prob=no_speech, temperature=t)


def test_confidence_rules() -> None:
    clear = [_segment(0, 4, -0.3, 0.05), _segment(4, 8, -0.5, 0.1)]
    assert transcripts.assess(clear) is None
    assert transcripts.assess([]) is None
    assert transcripts.assess([Segment(0, 1, "text only")]) is None

    one_bad_word = [_segment(0, 9, -0.4, 0.1), _segment(9, 10, -3.0, 0.1)]
    assert transcripts.assess(one_bad_word) is None, "weighted by length"

    mumbled = [_segment(0, 4, -1.4, 0.1), _segment(4, 8, -0.9, 0.1)]
    assert (transcripts.assess(mumbled) or "").startswith(transcripts.REASON_WORDS)

    guessed = [_segment(0, 8, -0.95, 0.3, t=1.0)]
    assert (transcripts.assess(guessed) or "").startswith(transcripts.REASON_WORDS)

    open_line = [_segment(0, 6, -0.6, 0.9), _segment(6, 8, -0.4, 0.1)]
    assert (transcripts.assess(open_line) or "").startswith(transcripts.REASON_NO_SPEECH)

    both = transcripts.join(["Whisper base transcribes he poorly", transcripts.assess(mumbled)])
    assert transcripts.reason_kinds(both) == [transcripts.REASON_BASE, transcripts.REASON_WORDS]
    assert transcripts.language_doubt("en", 0.3) and not transcripts.language_doubt("en", 0.9)


# --- WHISPER_DEVICE and the batched pipeline (item 7) -------------------------------------


def _settings(state_dir: Path, **changes: object) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        state_dir=state_dir,
        transcriber_backend=TranscriberBackend.LOCAL,
        openai_api_key=SecretStr(""),
        whisper_model="",
        whisper_model_default="",
        **changes,  # type: ignore[arg-type]
    )


def test_the_batched_pipeline_transcribes_on_the_cpu_too(
    tmp_path: Path, clips: dict[str, Path]
) -> None:
    """What a GPU runs (BatchedInferencePipeline), here on the CPU: same words, timed."""
    settings = _settings(tmp_path, whisper_device=WhisperDevice.CPU, whisper_batch_size=4)
    backend = LocalBackend.from_settings(settings)
    assert (backend.device, backend.batch_size) == ("cpu", 4) and backend._batched is not None

    transcript = backend.transcribe(clips["en"], "en")

    assert not words_in(transcript.text, VOICEMAIL_WORDS), transcript.text
    assert transcript.segments and " ".join(s.text for s in transcript.segments) == transcript.text
    starts = [s.start for s in transcript.segments]
    assert starts == sorted(starts)
    assert all(s.avg_logprob is not None for s in transcript.segments)


def test_the_device_is_chosen_by_the_setting(tmp_path: Path) -> None:
    import ctranslate2

    gpus = ctranslate2.get_cuda_device_count()
    assert device_of(WhisperDevice.AUTO) == ("cuda" if gpus else "cpu")
    assert (batch_size_of(0, "cuda"), batch_size_of(0, "cpu"), batch_size_of(3, "cpu")) == (8, 0, 3)
    unbatched = LocalBackend.from_settings(_settings(tmp_path, whisper_device=WhisperDevice.CPU))
    assert unbatched._batched is None
    if not gpus:  # asking for a GPU that is not there stops the worker with one line
        with pytest.raises(ModelError, match="on cuda"):
            LocalBackend.from_settings(_settings(tmp_path, whisper_device=WhisperDevice.CUDA))


def test_a_language_whisper_does_not_know_fails_at_once(
    router: Router, clips: dict[str, Path]
) -> None:
    with pytest.raises(BackendError, match="does not know the language") as refused:
        router.transcribe_call(clips["en"], LanguageRequest("he", DEFAULT_EXPECTED, forced="zz"))
    assert refused.value.permanent, "retrying would not help"


@dataclasses.dataclass
class HeardAs:
    """A detector that hears what it is told (the choice's rule, without a model's mood)."""

    language: str
    probability: float

    def detect(self, audio: Path, candidates: tuple[str, ...]) -> Detection:
        return Detection(self.language, self.probability)


@pytest.mark.parametrize(
    ("heard", "probability", "used"),
    [("en", 0.8, "en"), ("en", 0.3, "he"), ("he", 0.2, "he"), ("ar", 0.5, "ar")],
)
def test_only_a_confident_detection_moves_away_from_the_business_language(
    router: Router, clips: dict[str, Path], heard: str, probability: float, used: str
) -> None:
    stubbed = dataclasses.replace(router, detector=HeardAs(heard, probability))  # type: ignore[arg-type]

    transcript = stubbed.transcribe_call(clips["en"], LanguageRequest("he", DEFAULT_EXPECTED))

    assert transcript.language == used
    assert (transcript.detected_language, transcript.language_probability) == (heard, probability)
    uncertain = transcripts.REASON_LANGUAGE in (transcript.low_confidence or "")
    assert uncertain is (probability < transcripts.LANGUAGE_PROBABILITY_FLOOR)
