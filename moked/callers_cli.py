"""`moked caller block|unblock|list`: a business's blocked and flagged callers."""

from __future__ import annotations

import argparse
import json

from moked.businesses import require_business
from moked.settings import Settings


def _set_blocked(args: argparse.Namespace, blocked: bool) -> int:
    from moked import callers
    from moked.db.session import session_scope

    with session_scope() as session:
        business = require_business(session, args.business)
        change = callers.block if blocked else callers.unblock
        caller = change(session, business.id, args.number)
        print(f"{'blocked' if blocked else 'unblocked'} {caller.number} for {business.name}")
    return 0


def cmd_block(args: argparse.Namespace, settings: Settings) -> int:
    return _set_blocked(args, blocked=True)


def cmd_unblock(args: argparse.Namespace, settings: Settings) -> int:
    return _set_blocked(args, blocked=False)


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    from moked import callers
    from moked.db.session import session_scope

    with session_scope() as session:
        business = require_business(session, args.business)
        listed = [callers.to_dict(c) for c in callers.listed(session, business.id)]
    print(json.dumps(listed, ensure_ascii=False, indent=2))
    return 0


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    caller = commands.add_parser(
        "caller", help="a business's callers: block, unblock, list blocked and flagged"
    ).add_subparsers(dest="caller_command", required=True)
    block = caller.add_parser("block", help="reject the number's calls to the business")
    block.add_argument("--business", required=True, help="business name or id")
    block.add_argument("--number", required=True, help="the caller's number, E.164")
    block.set_defaults(handler=cmd_block)
    unblock = caller.add_parser("unblock", help="let the number through again (clears spam)")
    unblock.add_argument("--business", required=True, help="business name or id")
    unblock.add_argument("--number", required=True, help="the caller's number, E.164")
    unblock.set_defaults(handler=cmd_unblock)
    listing = caller.add_parser("list", help="the business's blocked and flagged callers (JSON)")
    listing.add_argument("--business", required=True, help="business name or id")
    listing.set_defaults(handler=cmd_list)
