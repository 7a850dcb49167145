"""`make demo`: simulated calls to the demo business on the running stack (`make up`).

Three callers: one leaves a voicemail in Hebrew, one in English (both synthesised with
espeak-ng), one says nothing. Twilio's part is played by the simulator (signed webhooks,
TwiML executed, recordings served on loopback until the transcriber has fetched them);
then each call is shown as `moked call show` prints it.
"""

from __future__ import annotations

import sys

from moked.cli import DEMO_NUMBER, seed_demo
from moked.cli import main as moked_main
from moked.settings import get_settings
from moked.simulator import audio
from moked.simulator.call import Caller, CallResult, Simulator, SimulatorConfig
from moked.simulator.inspector import Inspector
from moked.simulator.media_server import MediaServer
from moked.simulator.store import wait_until_final
from moked.stack.config import REPO_ROOT
from moked.stack.native import http_ok, resolve_paths

TRANSCRIPT_TIMEOUT = 300.0
CALLERS = (
    ("+972545550101", "Hebrew voicemail", audio.DEFAULT_TEXT["he"], "he"),
    ("+972545550102", "English voicemail", audio.DEFAULT_TEXT["en"], "en"),
    ("+972545550103", "a caller who says nothing", None, "he"),
)


def main() -> int:
    settings = resolve_paths(get_settings(), REPO_ROOT)
    if not http_ok(settings.public_base + "/healthz"):
        print(f"Moked does not answer at {settings.public_base}: run `make up` first.")
        return 2
    seed_demo(settings)
    token = settings.require_auth_token()
    results: list[tuple[str, CallResult]] = []
    with MediaServer(settings.twilio_account_sid, token) as media:
        simulator = Simulator(
            SimulatorConfig(
                public_base=settings.public_base,
                account_sid=settings.twilio_account_sid,
                auth_token=token,
            ),
            media,
            Inspector(echo=print),
        )
        for from_, what, text, language in CALLERS:
            print(f"\n=== {what}: {from_} calls the demo business {DEMO_NUMBER} ===")
            voicemail = audio.speak(text, language) if text else audio.SILENCE
            results.append((what, simulator.place_call(DEMO_NUMBER, from_, Caller(voicemail))))
        recorded = [r.call_sid for _, r in results if r.recording_status == "completed"]
        print(f"\nwaiting up to {TRANSCRIPT_TIMEOUT:.0f} s for the transcripts…", flush=True)
        wait_until_final(recorded, TRANSCRIPT_TIMEOUT)
    failures = 0
    for what, result in results:
        print(f"\n=== {what}: moked call show {result.call_sid} ===", flush=True)
        moked_main(["call", "show", result.call_sid])
        for error in result.errors:
            print(f"Twilio {error}")
        failures += len(result.failures)
    print(f"\n{len(results)} calls placed, {failures} Twilio-side errors.")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
