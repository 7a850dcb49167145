"""`moked simulate-call`: one call to a Moked number, with Twilio's part played locally."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from moked.phone import to_e164, try_e164
from moked.settings import Settings
from moked.simulator import audio
from moked.simulator.call import Caller, CallResult, Finish, Simulator, SimulatorConfig
from moked.simulator.errors import SimulatorError
from moked.simulator.inspector import HEADER, Inspector
from moked.simulator.media_server import MediaServer
from moked.simulator.store import StoredCall, stored_calls, wait_until_final

EXIT_TWILIO_ERROR = 1
EXIT_NOT_READY = 3
DEFAULT_FROM = "+972545550100"


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "simulate-call",
        help="place a simulated Twilio call to PUBLIC_HOST",
        description="Play Twilio's part for one inbound call: signed webhooks, TwiML executed, "
        "recording media served on loopback, callbacks. Exits 1 on any Twilio-side error.",
    )
    parser.add_argument("--to", required=True, help="the Moked number called (E.164)")
    parser.add_argument("--from", dest="from_", default=DEFAULT_FROM, help="the caller (E.164)")
    voice = parser.add_mutually_exclusive_group()
    voice.add_argument("--say", help="what the caller says (synthesised with espeak-ng)")
    voice.add_argument("--audio", type=Path, help="an audio file the caller plays instead")
    voice.add_argument("--silent", action="store_true", help="the caller says nothing")
    parser.add_argument("--language", choices=sorted(audio.VOICES), default="he")
    parser.add_argument(
        "--hangup-before-beep", action="store_true", help="hang up during the greeting"
    )
    parser.add_argument(
        "--finish",
        choices=[f.value for f in Finish],
        default=Finish.KEY.value,
        help="how the caller ends the recording (default: presses the finishOnKey)",
    )
    parser.add_argument("--duplicate-callbacks", action="store_true")
    parser.add_argument("--shuffle-callbacks", action="store_true")
    parser.add_argument(
        "--voice-fallback-url", help="the number's VoiceFallbackUrl, tried after an error"
    )
    parser.add_argument(
        "--time-scale",
        type=float,
        default=0.0,
        help="how much of the call's own time to wait: 1 = real time, 0 = none (default)",
    )
    parser.add_argument(
        "--wait",
        type=float,
        default=180.0,
        help="seconds to keep serving the recording and wait for the transcript (0 = no wait)",
    )
    parser.add_argument("--quiet", action="store_true", help="no Request Inspector log")
    parser.set_defaults(handler=cmd_simulate_call)


def _voicemail(args: argparse.Namespace) -> audio.Voicemail:
    if args.silent:
        return audio.SILENCE
    if args.audio is not None:
        return audio.load_file(args.audio)
    return audio.speak(args.say or audio.DEFAULT_TEXT[args.language], args.language)


def _summary(result: CallResult) -> str:
    greeting_said = result.said[0] if result.said else "-"
    lines = [
        f"CallSid            {result.call_sid}",
        f"answered by        {result.answered_by.value}",
        f"greeting           {', '.join(result.played) or greeting_said}",
        f"recording          {result.recording_sid or '-'} ({result.recording_status or 'none'})",
        f"call duration      {result.duration:.1f} s",
    ]
    for error in result.errors:
        lines.append(f"Twilio {'warning' if error.is_warning else 'ERROR'}  {error}")
    return "\n".join(lines)


def _stored(stored: StoredCall | None) -> str:
    if stored is None:
        return "stored             nothing (the call is not in the database)"
    return "\n".join(
        [
            f"stored call        status={stored.status} rows={stored.call_rows}"
            f" recordings={stored.recording_rows}",
            f"processing         {stored.processing_status or '-'}",
            f"transcript         {stored.transcript or '-'}",
        ]
    )


def cmd_simulate_call(args: argparse.Namespace, settings: Settings) -> int:
    try:
        to = to_e164(args.to)
    except ValueError as exc:
        raise SimulatorError(f"--to is not a phone number: {exc}") from exc
    from_ = try_e164(args.from_) or args.from_  # Twilio passes any caller ID through
    token = settings.require_auth_token()
    voicemail = _voicemail(args)
    inspector = Inspector(echo=None if args.quiet else print)
    if not args.quiet:
        print(HEADER)
    config = SimulatorConfig(
        public_base=settings.public_base,
        account_sid=settings.twilio_account_sid,
        auth_token=token,
        voice_fallback_url=args.voice_fallback_url,
        time_scale=args.time_scale,
        duplicate_callbacks=args.duplicate_callbacks,
        shuffle_callbacks=args.shuffle_callbacks,
    )
    with MediaServer(settings.twilio_account_sid, token) as media:
        simulator = Simulator(config, media, inspector)
        caller = Caller(
            voicemail=voicemail,
            finish=Finish(args.finish),
            hangup_before_beep=args.hangup_before_beep,
        )
        result = simulator.place_call(to, from_, caller)
        print(_summary(result))
        code = 0 if result.ok else EXIT_TWILIO_ERROR
        if args.wait <= 0:
            return code
        if result.recording_status == "completed":
            stored = wait_until_final([result.call_sid], args.wait).get(result.call_sid)
        else:
            stored = stored_calls([result.call_sid]).get(result.call_sid)
        print(_stored(stored))
        completed = code == 0 and result.recording_status == "completed"
        if completed and (stored is None or not stored.is_final):
            print(
                f"the transcript was not ready within {args.wait:.0f} s "
                "(is a transcriber running?)",
                file=sys.stderr,
            )
            return EXIT_NOT_READY
        return code
