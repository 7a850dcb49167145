"""`moked provision`, `moked doctor` and `moked render-nginx`: deployment commands.

Registered on the `moked` command by moked.cli; the work is in moked.provision,
moked.doctor and moked.stack.docker.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from moked.settings import Settings, default_port


def cmd_provision(args: argparse.Namespace, settings: Settings) -> int:
    import requests
    from twilio.base.exceptions import TwilioRestException

    from moked.provision import TwilioNumbersApi, database_numbers, format_report, provision
    from moked.twilio.routed import make_routed_client

    owned = database_numbers(args.business)
    api = TwilioNumbersApi(make_routed_client(settings))
    try:
        report = provision(settings, api, owned, do_apply=args.apply)
    except TwilioRestException as exc:
        print(f"moked: Twilio answered {exc.status} to {exc.uri}: {exc.msg}", file=sys.stderr)
        return 1
    except requests.RequestException as exc:
        print(f"moked: Twilio's API is unreachable: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report.as_dict(), ensure_ascii=False, indent=2))
    else:
        print(format_report(report))
    if not settings.public_base.startswith("https://"):
        print(
            f"warning: PUBLIC_HOST {settings.public_base} is not https; Twilio needs https",
            file=sys.stderr,
        )
    if args.apply:
        return 0 if report.ok else 1
    # A dry run succeeds when it could list; it fails only for what --apply cannot fix.
    return 1 if report.with_status("missing") else 0


def cmd_doctor(args: argparse.Namespace, settings: Settings) -> int:
    from moked.doctor import Doctor, format_report, to_json
    from moked.stack.layout import python_services_fallback

    fallback = python_services_fallback()
    if fallback:  # the native stack as root, in a checkout `moked` cannot read
        print(f"warning: {fallback}", file=sys.stderr)
    doctor = Doctor(settings, alerts_hours=args.hours)
    report = doctor.run(only=args.only or (), skip=args.skip or ())
    print(to_json(report) if args.json else format_report(report))
    return 0 if report.ok else 1


def cmd_render_nginx(args: argparse.Namespace, settings: Settings) -> int:
    from moked.stack.docker import TEMPLATE_DIR, DockerNginx, write_docker_nginx

    overrides: dict[str, Any] = {"conf_dir": Path(args.conf_dir)}
    if args.webhooks_upstream:
        overrides["webhooks_upstream"] = args.webhooks_upstream
    if args.crm_upstream:
        overrides["crm_upstream"] = args.crm_upstream
    template_dir = Path(args.template_dir) if args.template_dir else TEMPLATE_DIR
    output_dir = Path(args.output_dir) if args.output_dir else None
    for path in write_docker_nginx(settings, DockerNginx(**overrides), output_dir, template_dir):
        print(f"wrote {path}")
    return 0


def add_parsers(commands: Any) -> None:
    """Register the deployment commands on `moked`'s subparsers."""
    from moked.doctor import CHECK_NAMES

    prov = commands.add_parser(
        "provision",
        help="point every business number at PUBLIC_HOST (dry run; --apply to change)",
    )
    prov.add_argument("--apply", action="store_true", help="send the changes to Twilio")
    prov.add_argument("--business", help="only this business (name or id)")
    prov.add_argument("--json", action="store_true")
    prov.set_defaults(handler=cmd_provision)

    names = list(CHECK_NAMES)
    doctor = commands.add_parser(
        "doctor", help="check PUBLIC_HOST as Twilio sees it (no 11200/12300)"
    )
    doctor.add_argument("--json", action="store_true")
    doctor.add_argument("--only", action="append", choices=names, help="run only this check")
    doctor.add_argument("--skip", action="append", choices=names, help="skip this check")
    doctor.add_argument(
        "--hours", type=float, default=24.0, help="window for Twilio alerts and Prometheus"
    )
    doctor.set_defaults(handler=cmd_doctor)

    render = commands.add_parser(
        "render-nginx", help="render nginx.conf and its Docker snippets for the container"
    )
    render.add_argument("--docker", action="store_true", help="container paths (the default)")
    render.add_argument(
        "--conf-dir", default="/etc/nginx/rendered", help="where nginx reads the files"
    )
    render.add_argument("--output-dir", help="where to write them (default: --conf-dir)")
    render.add_argument("--template-dir", help="default: the repository's nginx/")
    render.add_argument(
        "--webhooks-upstream",
        help=f"host:port (default webhooks:{default_port('webhooks_port')})",
    )
    render.add_argument(
        "--crm-upstream", help=f"host:port (default crm-ui:{default_port('crm_port')})"
    )
    render.set_defaults(handler=cmd_render_nginx)
