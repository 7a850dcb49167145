"""`make chaos`: simulated calls while a worker is killed and Redis, Postgres and the
webhooks are restarted; then the table of what was stored and what was lost.

    python -m scripts.chaos [--calls 500] [--rate 5] [--concurrency 8]
                            [--faults kill-worker,restart-redis,restart-postgres,restart-webhooks]
                            [--stack fresh|dev] [--drain-timeout 1800]

--stack fresh (default) starts a stack of its own on free ports and removes it after;
--stack dev targets the stack `make up` runs (its services are restarted!).
Exits 1 unless lost = 0, duplicates = 0 and every transcript was ready within the drain.
"""

from __future__ import annotations

import argparse
import sys

from moked.settings import get_settings
from moked.simulator.chaos import ALL_FAULTS, ChaosReport, Fault, prepare, run_chaos, simulator_for
from moked.simulator.media_server import MediaServer
from moked.stack.config import REPO_ROOT, StackLayout
from moked.stack.native import resolve_paths
from tests.harness import make_state_dir, start_test_stack, stop_test_stack


def chaos(layout: StackLayout, args: argparse.Namespace) -> ChaosReport:
    settings = layout.settings
    plans = prepare(settings, args.calls)
    token = settings.require_auth_token()
    with MediaServer(settings.twilio_account_sid, token) as media:
        return run_chaos(
            layout,
            simulator_for(settings, media),
            plans,
            [Fault(f) for f in args.faults.split(",") if f],
            concurrency=args.concurrency,
            rate=args.rate,
            drain_timeout=args.drain_timeout,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--rate", type=float, default=5.0, help="new calls per second")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--faults", default=",".join(f.value for f in ALL_FAULTS))
    parser.add_argument("--stack", choices=("fresh", "dev"), default="fresh")
    parser.add_argument("--drain-timeout", type=float, default=1800.0)
    args = parser.parse_args(argv)

    if args.stack == "dev":
        settings = resolve_paths(get_settings(), REPO_ROOT)
        report = chaos(StackLayout(settings=settings, state_dir=settings.state_dir), args)
    else:
        stack = start_test_stack(make_state_dir("moked-chaos-"))
        try:
            report = chaos(stack.layout, args)
        finally:
            stop_test_stack(stack)
    print()
    print(report.table())
    if report.transcripts_pending:
        print(
            f"{report.transcripts_pending} transcripts were still queued after "
            f"--drain-timeout {args.drain_timeout:.0f} s: the run is incomplete"
        )
    clean = report.lost == report.duplicate_rows == report.transcripts_pending == 0
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
