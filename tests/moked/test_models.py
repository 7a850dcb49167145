"""Whisper models as a managed thing (issue 15): pulled from a loopback server that speaks
the Hugging Face Hub's HTTP API (serving the embedded base model's files), verified,
resumed, imported, listed, removed; and each language routed to the right model."""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from moked import cli, models
from moked.doctor import BusinessProbe, Doctor, Status
from moked.settings import ENV_FILE_VARIABLE, Settings, TranscriberBackend
from tests.moked.hub import HubServer
from tests.services.transcriber.audio import VOICEMAIL_TEXT, VOICEMAIL_WORDS, telephone_mp3
from tests.services.transcriber.doubles import OpenAICompatibleServer

REPO = "moked-test/whisper-base-he-ct2"
"""The embedded base's files under a Hebrew model's name (the card says `language: he`)."""
MULTILINGUAL_REPO = "moked-test/whisper-base-ct2"


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return models.embedded_model_dir(tmp_path_factory.mktemp("embedded"))


@pytest.fixture
def hub(base_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[HubServer]:
    server = HubServer()
    server.add(REPO, base_dir, ["he"])
    server.add(MULTILINGUAL_REPO, base_dir, ["en", "he", "ar", "ru", "fr", "de"])
    server.start()
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # no user token or cache
    monkeypatch.delenv("HF_TOKEN", raising=False)
    yield server
    server.stop()


def settings_for(state_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "state_dir": state_dir,
        "transcriber_backend": TranscriberBackend.AUTO,
        "openai_api_key": SecretStr(""),
        "whisper_model": "",
        "whisper_model_default": "",
        "whisper_model_he": "",
        "whisper_model_en": "",
        "whisper_model_ar": "",
        "whisper_model_ru": "",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[arg-type,call-arg]


def english_clip(tmp_path: Path) -> Path:
    clip = tmp_path / "voicemail.mp3"
    clip.write_bytes(telephone_mp3(VOICEMAIL_TEXT))
    return clip


# --- pull -------------------------------------------------------------------------------


def test_pull_installs_a_verified_model_that_transcribes(
    hub: HubServer, base_dir: Path, tmp_path: Path
) -> None:
    from transcriber.backends.local import LocalBackend

    state = tmp_path / "state"
    model, downloaded = models.pull(state, REPO)

    assert downloaded
    assert model.name == REPO and model.languages == ("he",) and model.source == "hub"
    assert model.revision == hub.repos[REPO].commit
    dir_name = f"moked-test--whisper-base-he-ct2--{model.revision[:12]}"
    assert model.directory == state / "models" / dir_name
    assert model.sha256 == models.EMBEDDED_MODEL_SHA256
    for name in ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt"):
        assert (model.directory / name).read_bytes() == (base_dir / name).read_bytes()
    assert not (model.directory / ".gitattributes").exists(), "only the model's own files"
    assert not list((state / "models" / ".partial").iterdir()), "nothing left half-done"
    assert models.verify(model) == []

    again, downloaded_again = models.pull(state, REPO)
    assert again.directory == model.directory and not downloaded_again

    settings = settings_for(state)
    backend = LocalBackend.from_settings(settings, (model.directory, model.name))
    transcript = backend.transcribe(english_clip(tmp_path), "en")
    lowered = transcript.text.lower()
    assert [w for w in VOICEMAIL_WORDS if w not in lowered] == [], transcript.text


def test_an_interrupted_download_resumes_where_it_stopped(hub: HubServer, tmp_path: Path) -> None:
    hub.drop_once.add("model.bin")

    model, _ = models.pull(tmp_path, REPO)

    gets = hub.gets("model.bin")
    assert len(gets) == 2, gets
    assert gets[0].range is None
    assert gets[1].range is not None and gets[1].range.startswith("bytes=")
    resumed_at = int(gets[1].range.removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_at < len(hub.repos[REPO].files["model.bin"])
    assert models.sha256_of(model.directory / "model.bin") == models.EMBEDDED_MODEL_SHA256


def test_a_pull_stopped_midway_is_resumed_by_the_next_pull(hub: HubServer, tmp_path: Path) -> None:
    hub.drop_once.add("model.bin")
    hub.fail_after_drop = True  # the in-call retry fails too: the command stops

    with pytest.raises(models.ModelError, match=r"model\.bin"):
        models.pull(tmp_path, REPO)
    partial = next((tmp_path / "models" / ".partial").rglob("model.bin.incomplete"))
    kept = partial.stat().st_size
    assert kept > 0
    assert models.installed(tmp_path) == [], "no model appears half-downloaded"

    model, downloaded = models.pull(tmp_path, REPO)

    assert downloaded
    assert hub.gets("model.bin")[-1].range == f"bytes={kept}-"
    assert models.sha256_of(model.directory / "model.bin") == models.EMBEDDED_MODEL_SHA256


def test_a_corrupted_file_is_refused(hub: HubServer, tmp_path: Path) -> None:
    hub.corrupt.add("model.bin")

    with pytest.raises(models.ModelError, match="refused") as refused:
        models.pull(tmp_path, REPO)

    assert hub.repos[REPO].sibling("model.bin")["lfs"]["sha256"] in str(refused.value)
    assert models.installed(tmp_path) == []
    assert not list((tmp_path / "models" / ".partial").rglob("model.bin*")), "bad bytes deleted"

    hub.corrupt.clear()
    model, _ = models.pull(tmp_path, REPO)
    assert model.sha256 == models.EMBEDDED_MODEL_SHA256


def test_two_pulls_of_one_model_never_write_the_same_files(hub: HubServer, tmp_path: Path) -> None:
    commit = hub.repos[REPO].commit
    partial = tmp_path / "models" / ".partial"
    partial.mkdir(parents=True)
    with open(partial / f"moked-test--whisper-base-he-ct2--{commit[:12]}.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # as a pull running in another process holds it
        with pytest.raises(models.ModelError, match="another pull of"):
            models.pull(tmp_path, REPO)
        assert hub.gets("model.bin") == []

    model, downloaded = models.pull(tmp_path, REPO)
    assert downloaded and models.verify(model) == []


def test_a_small_file_is_checked_against_its_git_blob_id(hub: HubServer, tmp_path: Path) -> None:
    hub.corrupt.add("config.json")

    with pytest.raises(models.ModelError, match=r"config\.json.*refused"):
        models.pull(tmp_path, REPO)


def test_unknown_repositories_and_non_ct2_repositories_are_one_line(
    hub: HubServer, tmp_path: Path
) -> None:
    with pytest.raises(models.ModelError, match="404"):
        models.pull(tmp_path, "moked-test/nothing-here")
    with pytest.raises(models.ModelError, match="not a Hugging Face repository id"):
        models.pull(tmp_path, "../etc")
    del hub.repos[REPO].files["model.bin"]
    with pytest.raises(models.ModelError, match="not a CTranslate2 model"):
        models.pull(tmp_path, REPO)


def test_the_cli_pulls_lists_and_removes(
    hub: HubServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = settings_for(tmp_path)
    monkeypatch.setattr(cli, "get_settings", lambda: settings)

    assert cli.main(["model", "pull", REPO]) == 0
    pulled = capsys.readouterr().out
    assert f"installed: {REPO}" in pulled and "serves he" in pulled

    assert cli.main(["model", "list", "--json", "--verify"]) == 0
    listed = json.loads(capsys.readouterr().out)
    names = [m["name"] for m in listed["models"]]
    assert names == [models.EMBEDDED_MODEL_NAME, REPO], "the embedded base always first"
    embedded, hebrew = listed["models"]
    assert embedded["source"] == "embedded" and embedded["sha256"] == models.EMBEDDED_MODEL_SHA256
    assert embedded["languages"] == ["multilingual"] and "he" not in embedded["serves"]
    assert hebrew["languages"] == ["he"] and hebrew["serves"] == ["he"]
    assert hebrew["corrupt_files"] == [] and hebrew["size_bytes"] > 70_000_000
    assert listed["warning"] is None

    assert cli.main(["model", "remove", models.EMBEDDED_MODEL_NAME]) == 1
    assert "cannot be removed" in capsys.readouterr().err
    assert cli.main(["model", "remove", REPO]) == 0
    assert models.installed(tmp_path) == []
    capsys.readouterr()
    assert cli.main(["model", "list"]) == 0
    text = capsys.readouterr().out
    assert "whisper-base (embedded, offline default)" in text
    assert "WARNING: Hebrew businesses will get base-quality transcripts" in text
    assert models.FIX_HEBREW in text


def test_a_multilingual_card_is_not_taken_for_one_language(hub: HubServer, tmp_path: Path) -> None:
    model, _ = models.pull(tmp_path, MULTILINGUAL_REPO)
    assert model.languages == ()
    assert models.route_for(settings_for(tmp_path), "he").model == models.EMBEDDED_MODEL_NAME

    named, _ = models.pull(tmp_path, REPO, languages=["he-IL"])
    assert named.languages == ("he",)


# --- import and remove --------------------------------------------------------------------


def test_import_validates_and_installs_a_copy(base_dir: Path, tmp_path: Path) -> None:
    incomplete = tmp_path / "incomplete"
    incomplete.mkdir()
    (incomplete / "model.bin").write_bytes(b"weights")
    (incomplete / "config.json").write_text("{}")
    with pytest.raises(models.ModelError, match=r"no tokenizer\.json, vocabulary"):
        models.import_model(tmp_path / "state", incomplete)
    (incomplete / "tokenizer.json").write_text("{}")
    (incomplete / "vocabulary.json").write_text("[]")
    with pytest.raises(models.ModelError, match="not a CTranslate2 Whisper configuration"):
        models.import_model(tmp_path / "state", incomplete)

    model = models.import_model(tmp_path / "state", base_dir, name="hebrew-base", languages=["he"])

    assert model.source == "import" and model.languages == ("he",)
    assert model.directory == tmp_path / "state" / "models" / "hebrew-base"
    assert model.files["model.bin"] == models.EMBEDDED_MODEL_SHA256
    assert models.verify(model) == []
    with pytest.raises(models.ModelError, match="is installed"):
        models.import_model(tmp_path / "state", base_dir, name="hebrew-base")
    with pytest.raises(models.ModelError, match="embedded model's name"):
        models.import_model(tmp_path / "state", base_dir, name=models.EMBEDDED_MODEL_NAME)

    with open(model.directory / "model.bin", "r+b") as handle:
        handle.seek(100)
        handle.write(b"\x00\x01")
    assert models.verify(model) == ["model.bin"]

    assert models.remove(tmp_path / "state", "hebrew-base") == [model]
    assert not model.directory.exists()
    with pytest.raises(models.ModelError, match="no installed model"):
        models.remove(tmp_path / "state", "hebrew-base")


def test_remove_refuses_a_model_a_setting_names(
    base_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    models.import_model(tmp_path, base_dir, name="hebrew-base", languages=["he"])
    settings = settings_for(tmp_path, whisper_model_he="hebrew-base")
    monkeypatch.setattr(cli, "get_settings", lambda: settings)

    assert cli.main(["model", "remove", "hebrew-base"]) == 1
    assert "WHISPER_MODEL_HE names hebrew-base" in capsys.readouterr().err
    assert cli.main(["model", "remove", "hebrew-base", "--force"]) == 0


# --- routing ------------------------------------------------------------------------------


def test_hebrew_without_a_model_or_key_goes_to_base_marked_low_confidence(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)

    hebrew = models.route_for(settings, "he")
    english = models.route_for(settings, "en")

    assert (hebrew.backend, hebrew.model) == (TranscriberBackend.LOCAL, models.EMBEDDED_MODEL_NAME)
    assert hebrew.low_confidence and "he" in hebrew.low_confidence
    assert english.model == models.EMBEDDED_MODEL_NAME and english.low_confidence is None
    assert models.hebrew_warning(settings) == (
        "Hebrew businesses will get base-quality transcripts (Whisper base, marked"
        " low-confidence). Fix: moked model pull ivrit-ai/whisper-large-v3-turbo-ct2"
    )


def test_hebrew_goes_to_openai_when_a_key_is_set_and_no_hebrew_model(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, openai_api_key=SecretStr("sk-test"))

    route = models.route_for(settings, "he")

    assert route.backend is TranscriberBackend.OPENAI and route.low_confidence is None
    assert models.hebrew_warning(settings) is None


def test_an_installed_hebrew_model_wins_over_openai_and_base(
    base_dir: Path, tmp_path: Path
) -> None:
    hebrew = models.import_model(tmp_path, base_dir, name="ivrit-like", languages=["he"])

    for key in ("", "sk-test"):
        settings = settings_for(tmp_path, openai_api_key=SecretStr(key))
        route = models.route_for(settings, "he")
        assert (route.backend, route.model, route.directory) == (
            TranscriberBackend.LOCAL,
            "ivrit-like",
            hebrew.directory,
        )
        assert route.low_confidence is None
        assert models.hebrew_warning(settings) is None
    english = models.route_for(settings_for(tmp_path, openai_api_key=SecretStr("sk-test")), "en")
    assert english.backend is TranscriberBackend.OPENAI, "a Hebrew model never serves English"
    assert models.route_for(settings_for(tmp_path), "en").model == models.EMBEDDED_MODEL_NAME


def test_the_routing_settings(base_dir: Path, tmp_path: Path) -> None:
    models.import_model(tmp_path, base_dir, name="multi", languages=[])
    # WHISPER_MODEL, the old name, still names the default; WHISPER_MODEL_DEFAULT wins.
    old = models.route_for(settings_for(tmp_path, whisper_model=str(base_dir)), "fr")
    assert (old.directory, old.why) == (base_dir, "WHISPER_MODEL")
    new = models.route_for(
        settings_for(tmp_path, whisper_model=str(base_dir), whisper_model_default="multi"), "fr"
    )
    assert (new.model, new.why) == ("multi", "WHISPER_MODEL_DEFAULT")
    assert new.low_confidence is None

    he = models.route_for(settings_for(tmp_path, whisper_model_he="multi"), "he")
    assert (he.model, he.why, he.low_confidence) == ("multi", "WHISPER_MODEL_HE", None)

    missing = settings_for(tmp_path, whisper_model_he="ivrit-ai/whisper-large-v3-turbo-ct2")
    with pytest.raises(models.ModelError, match="moked model pull ivrit-ai"):
        models.route_for(missing, "he")
    assert "misconfigured" in (models.hebrew_warning(missing) or "")

    forced = settings_for(
        tmp_path, whisper_model_he="multi", transcriber_backend=TranscriberBackend.OPENAI
    )
    assert models.route_for(forced, "he").backend is TranscriberBackend.OPENAI


def test_the_transcriber_routes_hebrew_by_what_is_installed(base_dir: Path, tmp_path: Path) -> None:
    """The worker's backend in process: base + low confidence, then OpenAI over loopback
    with a key, then the installed Hebrew model, always asked for language he."""
    from transcriber.backends.router import Router

    clip = english_clip(tmp_path)
    plain = Router.from_settings(settings_for(tmp_path))
    on_base = plain.transcribe(clip, "he")
    assert (on_base.backend, on_base.model) == ("local", models.EMBEDDED_MODEL_NAME)
    assert on_base.language == "he" and on_base.low_confidence
    english = plain.transcribe(clip, "en")
    assert english.low_confidence is None and "cake" in english.text.lower()
    assert len({id(b) for b in plain.backends.values()}) == 1, "one model loaded, shared"

    key = "sk-test-" + secrets.token_hex(8)
    server = OpenAICompatibleServer(key, lambda path, language: "שלום, תחזרו אליי").start()
    try:
        with_key = settings_for(
            tmp_path,
            openai_api_key=SecretStr(key),
            openai_base_url=server.base_url,
            openai_model="whisper-1",
            openai_max_retries=0,
        )
        on_openai = Router.from_settings(with_key).transcribe(clip, "he")
        assert (on_openai.backend, on_openai.text) == ("openai", "שלום, תחזרו אליי")
        assert on_openai.low_confidence is None
        assert server.requests[-1].language == "he"

        models.import_model(tmp_path, base_dir, name="hebrew-model", languages=["he"])
        routed = Router.from_settings(with_key)
        on_model = routed.transcribe(clip, "he")
        assert (on_model.backend, on_model.model) == ("local", "hebrew-model")
        # Not marked as base-quality (English audio read as Hebrew may still be doubted by
        # Whisper's own numbers: moked.transcripts.assess, issue 15 item 5).
        assert on_model.language == "he"
        assert models.EMBEDDED_MODEL_NAME not in (on_model.low_confidence or "")
        assert "transcribes he poorly" not in (on_model.low_confidence or "")
        assert len(server.requests) == 1, "Hebrew no longer goes to OpenAI"
    finally:
        server.stop()


# --- doctor -------------------------------------------------------------------------------


def test_doctor_says_when_hebrew_businesses_get_base_quality(
    base_dir: Path, tmp_path: Path
) -> None:
    hebrew = BusinessProbe("מספרת דנה", ("+97235550111",), None, "he-IL")
    english = BusinessProbe("Dana's", ("+15005550111",), None, "en-US")

    only_english = Doctor(settings_for(tmp_path), businesses=lambda: [english])
    assert only_english.check_transcription().status is Status.PASS

    doctor = Doctor(settings_for(tmp_path), businesses=lambda: [hebrew, english])
    warned = doctor.check_transcription()
    assert warned.status is Status.WARN
    assert warned.summary == (
        "Hebrew businesses will get base-quality transcripts (Whisper base, marked"
        " low-confidence). Fix: moked model pull ivrit-ai/whisper-large-v3-turbo-ct2"
    )
    assert warned.details == ["מספרת דנה"]

    models.import_model(tmp_path, base_dir, name="hebrew-model", languages=["he"])
    fixed = Doctor(settings_for(tmp_path), businesses=lambda: [hebrew]).check_transcription()
    assert fixed.status is Status.PASS and "local/hebrew-model" in fixed.summary


def test_make_up_says_where_hebrew_goes_and_how_to_fix_it(base_dir: Path, tmp_path: Path) -> None:
    assert cli.transcription_summary(settings_for(tmp_path)) == (
        "Hebrew businesses will get base-quality transcripts (Whisper base, marked"
        " low-confidence). Fix: moked model pull ivrit-ai/whisper-large-v3-turbo-ct2"
    )
    keyed = settings_for(tmp_path, openai_api_key=SecretStr("sk-test"), openai_model="whisper-1")
    assert cli.transcription_summary(keyed) == "Hebrew → openai/whisper-1"
    broken = settings_for(tmp_path, whisper_model_he="ivrit-ai/whisper-large-v3-turbo-ct2")
    assert cli.transcription_summary(broken).startswith("PROBLEM: WHISPER_MODEL_HE=")

    models.import_model(tmp_path, base_dir, name="hebrew-model", languages=["he"])
    assert cli.transcription_summary(settings_for(tmp_path)) == "Hebrew → local/hebrew-model"


def test_the_console_script_pulls_from_hf_endpoint(hub: HubServer, tmp_path: Path) -> None:
    """The installed `moked` command, as an operator runs it: HF_ENDPOINT names the mirror."""
    env = {
        **os.environ,
        ENV_FILE_VARIABLE: os.devnull,
        "STATE_DIR": str(tmp_path),
        "HF_ENDPOINT": hub.url,
        "TRANSCRIBER_BACKEND": "auto",
        "OPENAI_API_KEY": "",
        "WHISPER_MODEL_HE": "",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    }
    moked = str(Path(sys.executable).parent / "moked")

    pulled = subprocess.run(
        [moked, "model", "pull", REPO], env=env, capture_output=True, text=True, check=False
    )

    assert pulled.returncode == 0, pulled.stderr
    assert f"pulling {REPO} from {hub.url}" in pulled.stdout
    assert f"installed: {REPO} @ {hub.repos[REPO].commit} (he," in pulled.stdout
    listed = subprocess.run(
        [moked, "model", "list"], env=env, capture_output=True, text=True, check=False
    )
    assert listed.returncode == 0, listed.stderr
    assert f"he       → local/{REPO} (installed for he)" in listed.stdout
    assert "WARNING" not in listed.stdout
