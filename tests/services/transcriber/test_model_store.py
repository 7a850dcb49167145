"""The embedded model is reassembled from its two wheels and verified before loading."""

from __future__ import annotations

from pathlib import Path

import pytest

from transcriber import model_store
from transcriber.errors import ModelError


def test_embedded_model_is_assembled_and_verified(tmp_path: Path):
    directory = model_store.embedded_model_dir(tmp_path)

    assert model_store.sha256_of(directory / "model.bin") == model_store.EMBEDDED_MODEL_SHA256
    for name in model_store.SIDE_FILES:
        assert (directory / name).is_file()
    assert not list(directory.glob(".*part")), "no partial file left"


def test_a_corrupted_model_is_reassembled_not_loaded(tmp_path: Path):
    directory = model_store.embedded_model_dir(tmp_path)
    with open(directory / "model.bin", "r+b") as handle:
        handle.seek(1000)
        handle.write(b"\x00\x01\x02\x03")

    again = model_store.embedded_model_dir(tmp_path)

    assert model_store.sha256_of(again / "model.bin") == model_store.EMBEDDED_MODEL_SHA256


def test_whisper_model_must_be_a_ctranslate2_directory(tmp_path: Path):
    with pytest.raises(ModelError, match="not a CTranslate2 model directory"):
        model_store.resolve_model_dir(str(tmp_path), tmp_path)


def test_whisper_model_directory_is_used_as_given(tmp_path: Path):
    model = tmp_path / "ivrit-ai-whisper-large-v3-turbo-ct2"
    model.mkdir()
    (model / "model.bin").write_bytes(b"weights")

    assert model_store.resolve_model_dir(str(model), tmp_path) == (model, model.name)
