"""`moked model list|pull|import|remove`: the Whisper models the transcriber may load."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from moked import models
from moked.settings import Settings

RESTART_HINT = (
    "the transcriber loads it when it starts: restart it (natively `make down && make up`;"
    " with Docker `docker compose restart transcriber`)"
)


def _settings(settings: Settings) -> Settings:
    """STATE_DIR made absolute the way the native stack makes it, so the CLI and the
    transcriber see one models directory whatever the current directory."""
    if settings.state_dir.is_absolute():
        return settings
    from moked.stack.config import REPO_ROOT

    return settings.model_copy(update={"state_dir": (REPO_ROOT / settings.state_dir).resolve()})


def _size(size: int) -> str:
    value = float(size)
    for unit in ("B", "kB", "MB"):
        if value < 1000:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


def _serves(routes: list[models.Route], model: models.InstalledModel) -> list[str]:
    return [
        route.language
        for route in routes
        if route.backend.value == "local"
        and (route.directory == model.directory or (route.directory is None and model.embedded))
    ]


def _routes(settings: Settings) -> tuple[list[models.Route], str | None]:
    try:
        return models.routes(settings), None
    except models.ModelError as exc:
        return [], str(exc)


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    settings = _settings(settings)
    listed = models.list_models(settings.state_dir)
    routes, problem = _routes(settings)
    warning = models.hebrew_warning(settings)
    broken = {m.name: models.verify(m) for m in listed} if args.verify else {}
    if args.json:
        data = {
            "models": [
                {**m.to_dict(), "serves": _serves(routes, m)}
                | ({"corrupt_files": broken[m.name]} if args.verify else {})
                for m in listed
            ],
            "routes": [r.to_dict() for r in routes],
            "problem": problem,
            "warning": warning,
        }
        print(json.dumps(data, ensure_ascii=False, indent=2))
        return 1 if problem or any(broken.values()) else 0
    for m in listed:
        languages = ",".join(m.languages) or "multilingual"
        serves = ",".join(_serves(routes, m)) or "-"
        note = " (embedded, offline default)" if m.embedded else ""
        print(f"{m.name}{note}")
        print(f"  languages {languages}; serves {serves}; {_size(m.size_bytes)}")
        print(f"  sha256 {m.sha256}  revision {m.revision or '-'}")
        print(f"  {m.directory}")
        if args.verify:
            print(f"  verify: {'CORRUPT ' + ', '.join(broken[m.name]) if broken[m.name] else 'ok'}")
    print("routes:")
    for route in routes:
        mark = f"  [low-confidence: {route.low_confidence}]" if route.low_confidence else ""
        print(f"  {route.language:8} → {route.backend.value}/{route.model} ({route.why}){mark}")
    if problem:
        print(f"PROBLEM: {problem}")
    if warning:
        print(f"WARNING: {warning}")
    return 1 if problem or any(broken.values()) else 0


def cmd_pull(args: argparse.Namespace, settings: Settings) -> int:
    settings = _settings(settings)
    where = models.hub_endpoint(settings.hf_endpoint) or "the Hugging Face Hub"
    print(f"pulling {args.name} from {where} into {models.models_root(settings.state_dir)}")
    model, downloaded = models.pull(
        settings.state_dir,
        args.name,
        revision=args.revision,
        languages=args.language,
        endpoint=settings.hf_endpoint,
    )
    verb = "installed" if downloaded else "already installed"
    languages = ",".join(model.languages) or "multilingual"
    print(f"{verb}: {model.name} @ {model.revision} ({languages}, {_size(model.size_bytes)})")
    print(f"  {model.directory}")
    print(f"  model.bin sha256 {model.sha256}")
    _report_routes(settings, model)
    return 0


def _report_routes(settings: Settings, model: models.InstalledModel) -> None:
    routes, problem = _routes(settings)
    serves = _serves(routes, model)
    if serves:
        print(f"  serves {', '.join(serves)}: {RESTART_HINT}")
    else:
        print(
            "  no language is routed to it: name it in WHISPER_MODEL_<LANG> (e.g."
            f" WHISPER_MODEL_HE={model.name}), or pull with --language"
        )
    if problem:
        print(f"PROBLEM: {problem}")


def cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    settings = _settings(settings)
    model = models.import_model(
        settings.state_dir, Path(args.directory), name=args.name, languages=args.language or ()
    )
    languages = ",".join(model.languages) or "multilingual"
    print(f"imported: {model.name} ({languages}, {_size(model.size_bytes)})")
    print(f"  {model.directory}")
    print(f"  model.bin sha256 {model.sha256}")
    _report_routes(settings, model)
    return 0


def cmd_remove(args: argparse.Namespace, settings: Settings) -> int:
    settings = _settings(settings)
    targets = models.find(settings.state_dir, args.name)
    for language in (*models.ROUTED_LANGUAGES, models.DEFAULT_ROUTE):
        configured = models.configured_model(settings, language)
        names_it = any(configured in (m.name, m.directory.name) for m in targets)
        if configured and names_it and not args.force:
            raise ValueError(
                f"{models.setting_name(language)} names {args.name}: the transcriber would"
                " refuse to start without it (change the setting first, or --force)"
            )
    removed = models.remove(settings.state_dir, args.name)
    for model in removed:
        print(f"removed: {model.name} @ {model.revision or '-'} ({model.directory})")
    print(f"  {RESTART_HINT.replace('loads it', 'stops using it')}")
    return 0


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    model = commands.add_parser("model", help="Whisper models").add_subparsers(
        dest="model_command", required=True
    )
    listing = model.add_parser("list", help="installed models and which language each serves")
    listing.add_argument("--json", action="store_true")
    listing.add_argument("--verify", action="store_true", help="re-hash every file")
    listing.set_defaults(handler=cmd_list)

    pull = model.add_parser(
        "pull", help="download a CTranslate2 Whisper model by Hugging Face repo id (HF_ENDPOINT)"
    )
    pull.add_argument("name", help=f"owner/name, e.g. {models.HEBREW_MODEL}")
    pull.add_argument("--revision", help="a branch, tag or commit (default: main)")
    pull.add_argument(
        "--language",
        action="append",
        help="a language it is for (repeatable); default: from its model card",
    )
    pull.set_defaults(handler=cmd_pull)

    imported = model.add_parser(
        "import", help="install a model directory copied from a machine with internet access"
    )
    imported.add_argument("directory")
    imported.add_argument("--name", help="default: the directory's name")
    imported.add_argument("--language", action="append", help="a language it is for")
    imported.set_defaults(handler=cmd_import)

    remove = model.add_parser("remove", help="delete an installed model")
    remove.add_argument("name")
    remove.add_argument("--force", action="store_true", help="even if a setting names it")
    remove.set_defaults(handler=cmd_remove)
