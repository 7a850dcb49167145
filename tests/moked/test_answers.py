"""What callers hear, and the last answer kept for outages, shared between processes."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

from moked.answers import CallAnswer, LastKnownAnswers, answer_for, default_answer, playable
from moked.settings import Settings, load_settings
from moked.twilio import twiml


def settings_for(tmp_path: Path) -> Settings:
    return load_settings(
        public_host="http://127.0.0.1:8080",
        greetings_dir=tmp_path / "greetings",
        state_dir=tmp_path / "state",
    )


class Greeting:
    """A business as far as its answer goes (the fields of `BusinessGreeting`)."""

    def __init__(self, greeting_file: str | None, greeting_text: str | None = "שלום") -> None:
        self.greeting_file = greeting_file
        self.greeting_text = greeting_text
        self.language = "he-IL"
        self.record_max_length = 60
        self.record_timeout = 3
        self.record_finish_on_key = "#"
        self.record_play_beep = False
        self.record_trim = False


def test_answer_plays_the_mp3_only_when_it_is_on_disk(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    settings.greetings_dir.mkdir(parents=True)
    (settings.greetings_dir / "b_1_abc.mp3").write_bytes(b"ID3" + b"\0" * 100)

    playing = answer_for(settings, Greeting("b_1_abc.mp3"))
    assert playing.greeting.audio_url == (
        "http://127.0.0.1:8080/server/static/voice_responses/b_1_abc.mp3"
    )
    assert playing.record == twiml.RecordOptions(60, 3, "#", False, False)

    missing = answer_for(settings, Greeting("b_1_gone.mp3"))
    assert missing.greeting.audio_url is None and missing.greeting.text == "שלום"
    no_text = answer_for(settings, Greeting(None, greeting_text=None))
    assert no_text.greeting.text == settings.default_greeting_text
    assert answer_for(settings, None) == default_answer(settings)


def test_a_remembered_mp3_deleted_since_becomes_its_text(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    settings.greetings_dir.mkdir(parents=True)
    greeting = settings.greetings_dir / "b_2_abc.mp3"
    greeting.write_bytes(b"ID3" + b"\0" * 100)
    answer = answer_for(settings, Greeting("b_2_abc.mp3"))
    assert playable(settings, answer) == answer
    greeting.unlink()
    assert playable(settings, answer).greeting.audio_url is None
    assert playable(settings, answer).greeting.text == "שלום"


def _remember_in_another_process(directory: str, number: str, text: str) -> None:
    answer = CallAnswer(twiml.Greeting(audio_url=None, text=text), twiml.RecordOptions())
    LastKnownAnswers(Path(directory)).remember(number, answer)


def test_the_last_answer_is_shared_between_processes(tmp_path: Path) -> None:
    directory = tmp_path / "answers"
    text = "שלום & <ברוכים>"
    context = multiprocessing.get_context("spawn")
    writer = context.Process(
        target=_remember_in_another_process, args=(str(directory), "+97235550123", text)
    )
    writer.start()
    writer.join(60)
    assert writer.exitcode == 0

    recalled = LastKnownAnswers(directory).recall("+97235550123")
    assert recalled == CallAnswer(twiml.Greeting(audio_url=None, text=text), twiml.RecordOptions())
    assert LastKnownAnswers(directory).recall("+97235550999") is None
    assert not [p for p in directory.iterdir() if p.name.startswith(".")], "no temporary left"


def test_a_changed_answer_replaces_the_old_and_garbage_is_ignored(tmp_path: Path) -> None:
    directory = tmp_path / "answers"
    first, second = LastKnownAnswers(directory), LastKnownAnswers(directory)
    old = CallAnswer(twiml.Greeting(audio_url=None, text="old"), twiml.RecordOptions())
    new = CallAnswer(twiml.Greeting(audio_url=None, text="new"), twiml.RecordOptions(max_length=9))
    first.remember("+97235550124", old)
    second.remember("+97235550124", new)
    assert first.recall("+97235550124") == new

    (directory / "97235550125.json").write_text("{not json")
    assert first.recall("+97235550125") is None
    first.remember("anonymous", old)  # not a number: nothing to key it by
    assert first.recall("anonymous") is None


def test_a_file_overwritten_with_an_older_answer_is_put_right(tmp_path: Path) -> None:
    """Worker A wrote X, worker B then wrote Y, the greeting went back to X: A, which
    still believes the file says X, rewrites it once its own write is old enough."""
    directory = tmp_path / "answers"
    x = CallAnswer(twiml.Greeting(audio_url=None, text="X"), twiml.RecordOptions())
    y = CallAnswer(twiml.Greeting(audio_url=None, text="Y"), twiml.RecordOptions())
    patient, prompt = LastKnownAnswers(directory), LastKnownAnswers(directory, refresh_seconds=0)
    other = LastKnownAnswers(directory)

    patient.remember("+97235550126", x)
    other.remember("+97235550126", y)
    patient.remember("+97235550126", x)
    assert patient.recall("+97235550126") == y, "within refresh_seconds: no write"

    prompt.remember("+97235550126", x)
    other.remember("+97235550126", y)
    prompt.remember("+97235550126", x)
    assert prompt.recall("+97235550126") == x, "past refresh_seconds: rewritten"


def test_rebuild_writes_what_differs_and_removes_numbers_no_longer_known(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    store = LastKnownAnswers(settings.last_known_answers_dir)
    hello = answer_for(settings, Greeting(None, greeting_text="hello"))
    shalom = answer_for(settings, Greeting(None, greeting_text="shalom"))
    store.remember("+97231111111", default_answer(settings))  # unassigned since
    store.remember("+97232222222", hello)
    read_at = time.time() + 1  # every file above is older than the database's answers

    assert store.rebuild({"+97232222222": hello, "+97233333333": shalom}, read_at=read_at) == (
        1,
        1,
    )
    assert store.recall("+97231111111") is None
    assert store.recall("+97232222222") == hello
    assert store.recall("+97233333333") == shalom
    # Nothing changed: nothing rewritten. A number a worker wrote after the read stays.
    store.remember("+97234444444", hello)
    assert store.rebuild({"+97232222222": hello, "+97233333333": shalom}, read_at=0.0) == (0, 0)
    assert store.recall("+97234444444") == hello
