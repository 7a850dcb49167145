"""Simulated calls against the real stack: what Moked stores for each kind of call."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import func, select

from moked.cli import main as moked_main
from moked.db.models import Call, Recording, WebhookEvent
from moked.db.session import session_scope
from moked.greetings import synthesize_mp3
from moked.settings import get_settings
from moked.simulator import audio
from moked.simulator.call import Caller, Finish, Simulator, SimulatorConfig
from moked.simulator.chaos import program_names
from moked.simulator.inspector import Inspector
from moked.simulator.media_server import MediaServer
from moked.simulator.store import stored_calls, wait_until_final
from tests.harness import StackUnderTest

TRANSCRIPT_TIMEOUT = 240.0


@pytest.fixture(scope="module")
def media(stack: StackUnderTest) -> Iterator[MediaServer]:
    settings = stack.settings
    with MediaServer(
        settings.twilio_account_sid, settings.twilio_auth_token.get_secret_value()
    ) as server:
        yield server


@pytest.fixture(scope="module")
def voicemail() -> audio.Voicemail:
    return audio.speak("Hello, please call me back about my order. Thank you.", "en")


@pytest.fixture
def has_transcriber(stack: StackUnderTest) -> bool:
    return any(name.split(":")[0] == "transcriber" for name in program_names(stack.layout))


def simulator(stack: StackUnderTest, media: MediaServer, **options: object) -> Simulator:
    settings = stack.settings
    config = SimulatorConfig(
        public_base=settings.public_base,
        account_sid=settings.twilio_account_sid,
        auth_token=settings.twilio_auth_token.get_secret_value(),
        **options,  # type: ignore[arg-type]
    )
    return Simulator(config, media, Inspector())


def names(sim: Simulator, call_sid: str) -> list[str]:
    return [e.name for e in sim.inspector.for_call(call_sid)]


def test_a_normal_call_ends_with_a_ready_transcript(
    stack: StackUnderTest, make_business, media: MediaServer, voicemail, has_transcriber
):
    business = make_business(greeting_mp3=synthesize_mp3("Leave a message", "en"), language="en-US")
    sim = simulator(stack, media)

    result = sim.place_call(business.numbers[0].e164, caller=Caller(voicemail=voicemail))

    assert result.ok, result.errors
    assert result.played and result.played[0].endswith(business.greeting_file)
    assert result.recording_status == "completed"
    assert names(sim, result.call_sid) == [
        "call_status",
        "incoming_call",
        "call_status",
        "Play",
        "handle_recording",
        "recording_status",
        "call_status",
    ]
    assert result.said == [stack.settings.thanks_text]
    stored = stored_calls([result.call_sid])[result.call_sid]
    assert stored.status == "completed"
    assert stored.recording_sid == result.recording_sid
    if not has_transcriber:
        pytest.skip("this stack runs no transcriber yet: the transcript part cannot pass")
    final = wait_until_final([result.call_sid], TRANSCRIPT_TIMEOUT)[result.call_sid]
    assert final.processing_status == "ready", final
    assert final.transcript and "call" in final.transcript.lower()
    assert media.downloads[result.recording_sid] >= 1  # fetched only once it was ready


def test_a_silent_caller_leaves_an_absent_recording_and_hears_the_goodbye(
    stack: StackUnderTest, make_business, media: MediaServer
):
    business = make_business()
    sim = simulator(stack, media)

    result = sim.place_call(business.numbers[0].e164, caller=Caller(voicemail=audio.SILENCE))

    assert result.ok, result.errors
    assert result.recording_status == "absent"
    assert "handle_recording" not in names(sim, result.call_sid)  # no action request
    assert result.said[-1] == stack.settings.no_message_text  # the verb after <Record>
    recording_status = next(
        e for e in sim.inspector.for_call(result.call_sid) if e.name == "recording_status"
    )
    assert recording_status.params["RecordingStatus"] == "absent"
    assert recording_status.params["ErrorCode"] == "16102"
    stored = stored_calls([result.call_sid])[result.call_sid]
    assert stored.status == "completed"
    assert stored.processing_status in (None, "absent")
    assert media.downloads[result.recording_sid or ""] == 0


def test_a_hang_up_before_the_beep_leaves_a_completed_call_without_recording(
    stack: StackUnderTest, make_business, media: MediaServer, voicemail
):
    business = make_business(greeting_mp3=synthesize_mp3("Hello", "en"))
    sim = simulator(stack, media)

    result = sim.place_call(
        business.numbers[0].e164, caller=Caller(voicemail=voicemail, hangup_before_beep=True)
    )

    assert result.ok, result.errors
    assert result.recording_sid is None
    assert names(sim, result.call_sid) == [
        "call_status",
        "incoming_call",
        "call_status",
        "Play",
        "call_status",
    ]
    completed = sim.inspector.for_call(result.call_sid)[-1].params
    assert completed["CallStatus"] == "completed"
    assert int(completed["CallDuration"]) >= 1
    stored = stored_calls([result.call_sid])[result.call_sid]
    assert stored.status == "completed"
    assert stored.recording_rows == 0


def test_the_caller_hanging_up_instead_of_pressing_the_key(
    stack: StackUnderTest, make_business, media: MediaServer, voicemail
):
    business = make_business()
    sim = simulator(stack, media)

    result = sim.place_call(
        business.numbers[0].e164, caller=Caller(voicemail=voicemail, finish=Finish.HANGUP)
    )

    assert result.ok, result.errors
    action = next(
        e for e in sim.inspector.for_call(result.call_sid) if e.name == "handle_recording"
    )
    assert action.params["Digits"] == "hangup"
    # The action's TwiML is not played to a caller who left.
    assert stack.settings.thanks_text not in result.said
    assert stored_calls([result.call_sid])[result.call_sid].recording_sid == result.recording_sid


def test_duplicated_and_shuffled_callbacks_leave_one_call_and_one_transcript(
    stack: StackUnderTest, make_business, media: MediaServer, voicemail, has_transcriber
):
    business = make_business()
    sim = simulator(stack, media, duplicate_callbacks=True, shuffle_callbacks=True, seed=4)
    results = [
        sim.place_call(business.numbers[0].e164, caller=Caller(voicemail=voicemail))
        for _ in range(3)
    ]

    for result in results:
        assert result.ok, result.errors
        callbacks = [e for e in sim.inspector.for_call(result.call_sid) if e.kind == "callback"]
        assert len(callbacks) == 8  # (ringing, in-progress, completed, recording) x 2
    sids = [r.call_sid for r in results]
    with session_scope() as session:
        assert (
            session.scalar(select(func.count()).select_from(Call).where(Call.call_sid.in_(sids)))
            == 3
        )
        assert (
            session.scalar(
                select(func.count())
                .select_from(Recording)
                .join(Call)
                .where(Call.call_sid.in_(sids))
            )
            == 3
        )
        logged = session.scalar(
            select(func.count()).select_from(WebhookEvent).where(WebhookEvent.call_sid.in_(sids))
        )
        # Every request is logged once (an exact duplicate is not), none applied twice.
        assert logged == 3 * (4 + 2)
    stored = stored_calls(sids)
    assert all(s.status == "completed" for s in stored.values())  # never moved backwards
    if not has_transcriber:
        pytest.skip("this stack runs no transcriber yet: the transcript part cannot pass")
    final = wait_until_final(sids, TRANSCRIPT_TIMEOUT)
    assert [final[sid].processing_status for sid in sids] == ["ready"] * 3
    assert all(final[sid].recording_rows == 1 for sid in sids)


def test_simulate_call_command(stack: StackUnderTest, make_business, capsys, has_transcriber):
    business = make_business(greeting_mp3=synthesize_mp3("Hello from the command", "en"))

    code = moked_main(
        [
            "simulate-call",
            "--to",
            business.numbers[0].e164,
            "--say",
            "Please call me back.",
            "--language",
            "en",
            "--wait",
            str(TRANSCRIPT_TIMEOUT if has_transcriber else 0),
        ]
    )

    out = capsys.readouterr().out
    assert code == 0, out
    assert "/webhook/incoming_call" in out and "text/xml" in out
    assert "/webhook/recording_status" in out
    if has_transcriber:
        assert "processing         ready" in out


def test_simulate_call_command_fails_on_a_twilio_error(stack: StackUnderTest, capsys, monkeypatch):
    code = moked_main(
        [
            "simulate-call",
            "--to",
            "+97235550111",
            "--silent",
            "--wait",
            "0",
            "--voice-fallback-url",
            stack.base + "/twiml/fallback/incoming_call",
        ]
    )
    assert code == 0  # a fallback URL that answers is no error

    # A PUBLIC_HOST nothing listens on: the voice URL cannot be reached.
    monkeypatch.setenv("PUBLIC_HOST", "http://127.0.0.1:9")
    get_settings.cache_clear()
    try:
        code = moked_main(["simulate-call", "--to", "+97235550111", "--silent", "--wait", "0"])
    finally:
        monkeypatch.delenv("PUBLIC_HOST")
        get_settings.cache_clear()
    assert code == 1
    assert "11205" in capsys.readouterr().out
