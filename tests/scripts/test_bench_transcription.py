"""The pure part of the transcription bench: which clips a model gets, how it is routed,
and the report's rows and notes with no extra model and with one."""

from __future__ import annotations

import os
from pathlib import Path

from moked import models
from scripts.bench_transcription import (
    BASE,
    BenchModel,
    Burst,
    Measured,
    ModelRun,
    _report,
    clips_for,
    extra_models,
    routing,
)

TURBO = BenchModel(
    "ivrit-ai/whisper-large-v3-turbo-ct2",
    Path("/state/models/ivrit-ai--whisper-large-v3-turbo-ct2--0123456789ab"),
    ("he",),
    "hub",
)
COPY = BenchModel("whisper-base-copy", Path("/state/models/whisper-base-copy"), (), "import")


def _measured(label: str, model: str, seconds: float = 1.0) -> Measured:
    return Measured(
        label=label,
        audio_seconds=10.0,
        seconds=seconds,
        cpu_seconds=2 * seconds,
        lag=seconds + 0.5,
        pid=41,
        model_loads=1,
        model=model,
    )


def _runs(model: BenchModel) -> ModelRun:
    return ModelRun(
        model, [_measured(c.label, model.served_as) for _ in range(3) for c in clips_for(model)]
    )


def _burst() -> Burst:
    runs = [_measured("English, short", models.EMBEDDED_MODEL_NAME) for _ in range(4)]
    return Burst(runs, 8.0, "moked_transcription_model_loads_total 1.0\n")


def _table(report: str) -> list[str]:
    return [line for line in report.splitlines() if line.startswith("| ") and "---" not in line]


def test_a_model_gets_the_clips_of_its_languages() -> None:
    every = ["English, short", "English, long", "Hebrew (he)"]
    assert [c.label for c in clips_for(BASE)] == every
    assert [c.label for c in clips_for(COPY)] == every
    assert [c.label for c in clips_for(TURBO)] == ["Hebrew (he)"]
    english = BenchModel("en-only", Path("/m/en-only"), ("en",), "import")
    assert [c.label for c in clips_for(english)] == ["English, short", "English, long"]
    assert clips_for(BenchModel("ar-only", Path("/m/ar"), ("ar",), "import")) == []


def test_routing_names_the_directory_in_the_production_settings() -> None:
    assert routing(BASE) == {}
    assert routing(TURBO) == {"whisper_model_he": str(TURBO.directory)}
    assert routing(COPY) == {
        "whisper_model_en": str(COPY.directory),
        "whisper_model_he": str(COPY.directory),
    }
    # What the transcriber records as the model of a recording routed by directory.
    assert TURBO.served_as == "ivrit-ai--whisper-large-v3-turbo-ct2--0123456789ab"
    assert BASE.served_as == models.EMBEDDED_MODEL_NAME


def test_extra_models_are_the_installed_ones(tmp_path: Path) -> None:
    assert extra_models(tmp_path) == []
    source = tmp_path / "source"
    source.mkdir()
    (source / "model.bin").write_bytes(b"weights")
    (source / "config.json").write_text('{"lang_ids": [1]}')
    (source / "tokenizer.json").write_text("{}")
    (source / "vocabulary.txt").write_text("a\n")
    models.import_model(tmp_path, source, name="hebrew-copy", languages=["he"])
    (found,) = extra_models(tmp_path)
    assert (found.name, found.languages, found.source) == ("hebrew-copy", ("he",), "import")
    assert found.directory == tmp_path / "models" / "hebrew-copy"


def test_report_with_base_only_says_how_to_add_the_hebrew_model() -> None:
    report = _report([_runs(BASE)], _burst(), (0.5, 1.5))
    rows = _table(report)
    assert rows[0].startswith("| model | recording |")
    assert [r.split(" | ")[:2] for r in rows[1:]] == [
        ["| whisper-base", "English, short"],
        ["| whisper-base", "English, long"],
        ["| whisper-base", "Hebrew (he)"],
    ]
    cpu_rtf = 2.0 / (os.cpu_count() or 1) / 10.0  # CPU seconds ÷ cores ÷ audio seconds
    assert f"| 1.00 | 0.100 | {cpu_rtf:.3f} | 1.50 / 1.50 | 5.00 | 3/3 |" in rows[1]
    assert (
        "only the embedded base model is installed; `moked model pull"
        " ivrit-ai/whisper-large-v3-turbo-ct2` adds its rows" in report.lower()
    )
    assert "Other models installed" not in report


def test_report_with_one_extra_model_adds_only_its_rows() -> None:
    report = _report([_runs(BASE), _runs(TURBO)], _burst(), (0.5, 1.5))
    rows = _table(report)[1:]
    assert [r.split(" | ")[:3] for r in rows[3:]] == [
        ["| ivrit-ai/whisper-large-v3-turbo-ct2", "Hebrew (he)", "3"]
    ]
    assert len(rows) == 4
    assert "only the embedded base model" not in report
    assert "Other models installed: ivrit-ai/whisper-large-v3-turbo-ct2 (he; hub)" in report
    assert "burst is measured on base only" in report
    assert "Burst (base) of 4 voicemails" in report


def test_a_recording_served_by_another_model_is_named_in_its_row() -> None:
    moved = ModelRun(
        TURBO,
        [
            _measured("Hebrew (he)", TURBO.served_as),
            _measured("Hebrew (he)", models.EMBEDDED_MODEL_NAME),
        ],
    )
    report = _report([_runs(BASE), moved], _burst(), (0.5, 1.5))
    assert "| ivrit-ai/whisper-large-v3-turbo-ct2 (1/2 served by whisper-base) | Hebrew" in report
