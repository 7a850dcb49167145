"""Many simulated calls at once, in this process (threads): the driver chaos runs use.

`make bench` drives its load with locust instead (moked/simulator/locustfile.py), which
reports through the same Inspector exchanges.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from moked.simulator.call import Caller, CallResult, Simulator
from moked.simulator.errors import TwilioError, TwilioErrorCode

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CallPlan:
    to: str
    from_: str
    caller: Caller


@dataclass
class LoadReport:
    results: list[CallResult] = field(default_factory=list)
    crashed: list[str] = field(default_factory=list)
    """Calls the simulator itself could not complete (a bug here, not a Twilio error)."""
    seconds: float = 0.0

    @property
    def calls_per_second(self) -> float:
        return len(self.results) / self.seconds if self.seconds > 0 else 0.0

    @property
    def twilio_errors(self) -> list[TwilioError]:
        return [e for r in self.results for e in r.failures]


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def run_calls(
    simulator: Simulator,
    plans: Sequence[CallPlan],
    *,
    concurrency: int = 8,
    rate: float | None = None,
    on_result: Callable[[int, CallResult], None] | None = None,
) -> LoadReport:
    """Place every planned call, at most `concurrency` at once, at most `rate` new per second."""
    report = LoadReport()
    lock = threading.Lock()
    slots = threading.BoundedSemaphore(concurrency)
    started = time.monotonic()

    def one(index: int, plan: CallPlan) -> None:
        try:
            result = simulator.place_call(plan.to, plan.from_, plan.caller)
        except Exception as exc:
            log.exception("simulated call %d crashed", index)
            with lock:
                report.crashed.append(f"call {index}: {type(exc).__name__}: {exc}")
            return
        finally:
            slots.release()
        with lock:
            report.results.append(result)
        if on_result is not None:
            on_result(index, result)

    futures: list[Future[None]] = []
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="moked-sim") as pool:
        for index, plan in enumerate(plans):
            slots.acquire()
            if rate:
                due = started + index / rate
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            futures.append(pool.submit(one, index, plan))
        for future in futures:
            future.result()
    report.seconds = time.monotonic() - started
    return report


def error_counts(results: Sequence[CallResult]) -> dict[TwilioErrorCode, int]:
    counts: dict[TwilioErrorCode, int] = {}
    for result in results:
        for error in result.failures:
            counts[error.code] = counts.get(error.code, 0) + 1
    return counts
