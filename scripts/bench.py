"""`make bench`: every benchmark section, printed and written to docs/benchmarks-latest.md
(generated; docs/benchmarks.md is the curated record, with before/after and analysis, which
a run must not overwrite).

Sections are independent modules exposing `run() -> str` (markdown); each starts its own
stack on free ports, so the numbers do not depend on a developer's running stack.
`BENCH_ONLY=webhooks,transcription` runs a subset.
"""

from __future__ import annotations

import datetime as dt
import importlib
import os
import platform
import subprocess
import sys
import traceback
from pathlib import Path

from moked.settings import ENV_FILE_VARIABLE, get_settings

SECTIONS = {
    "webhooks": "scripts.bench_webhooks",
    "transcription": "scripts.bench_transcription",
    "e2e": "scripts.bench_e2e",
    "notifications": "scripts.bench_notifications",
}
OUTPUT = Path(__file__).resolve().parents[1] / "docs" / "benchmarks-latest.md"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        total_kb = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {total_kb / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    nginx = subprocess.run(["nginx", "-v"], capture_output=True, text=True, check=False).stderr
    return (
        f"{os.cpu_count()} × {cpu}{memory}; {platform.platform()}; "
        f"Python {platform.python_version()}; {nginx.strip()}"
    )


def main() -> int:
    wanted = [s for s in os.environ.get("BENCH_ONLY", ",".join(SECTIONS)).split(",") if s]
    parts = [
        "# Benchmarks",
        "",
        f"Measured {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC by `make bench` on: {machine()}.",
        "",
    ]
    failed = False
    developer_env = os.environ.get(ENV_FILE_VARIABLE)
    for name in wanted:
        # A section's test stack points MOKED_ENV_FILE at its own file: each section starts
        # from the developer's (the transcription bench reads its STATE_DIR/models).
        if developer_env is None:
            os.environ.pop(ENV_FILE_VARIABLE, None)
        else:
            os.environ[ENV_FILE_VARIABLE] = developer_env
        get_settings.cache_clear()
        module_name = SECTIONS[name]
        print(f"== {name} ==", flush=True)
        try:
            section = importlib.import_module(module_name).run()
        except Exception:
            failed = True
            section = f"## {name}\n\nfailed:\n\n```\n{traceback.format_exc()}```\n"
        print(section, flush=True)
        parts += [section, ""]
    if set(wanted) == set(SECTIONS):
        OUTPUT.write_text("\n".join(parts), encoding="utf-8")
        print(f"written to {OUTPUT}")
    else:  # a partial run must not wipe the other sections' numbers
        print(f"partial run (BENCH_ONLY): {OUTPUT} left as it was")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
