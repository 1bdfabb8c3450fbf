"""The web UI's commands for the ``inspector`` CLI: ``web`` and ``users add``.

Registered through the ``inspector.commands`` entry point, so ``inspector``
itself never imports ``web``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from inspector.cli import EXIT_USAGE, install_stop_handlers, load_logged_config
from inspector.store import Store
from web.auth import ROLES, add_user
from web.server import WebServer


def add_commands(commands: Any) -> None:
    web = commands.add_parser("web", help="serve the web UI over an existing results store")
    web.add_argument("--config", type=Path, required=True)
    web.set_defaults(handler=_web)

    users = commands.add_parser("users", help="manage web UI users")
    actions = users.add_subparsers(title="actions", metavar="ACTION")
    add = actions.add_parser("add", help="create a user (--reset: or reset one's role and "
                             "password)")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=ROLES)
    add.add_argument("--config", type=Path, required=True)
    add.add_argument("--password-stdin", action="store_true",
                     help="read the password from stdin (default: generate and print one)")
    add.add_argument("--reset", action="store_true",
                     help="the user may exist: set its role and password, ending its sessions")
    add.set_defaults(handler=_users_add)


def _web(args: argparse.Namespace) -> int:
    config = load_logged_config(args.config)
    stop = install_stop_handlers()
    with Store(config.storage.root) as store:
        server = WebServer(config, store)
        server.start()
        print(f"web UI: {server.url} (results store {config.storage.root}); Ctrl-C stops",
              flush=True)
        stop.wait()
        server.close()
    return 0


def _users_add(args: argparse.Namespace) -> int:
    config = load_logged_config(args.config)
    password = sys.stdin.readline().strip() if args.password_stdin else None
    with Store(config.storage.root) as store:
        existed = store.get_user(args.name) is not None
        try:
            password = add_user(store, args.name, args.role, password, replace=args.reset)
        except ValueError as exc:
            hint = " (add --reset to reset it)" if existed else ""
            print(f"inspector users add: {exc}{hint}", file=sys.stderr)
            return EXIT_USAGE
    shown = "" if args.password_stdin else f"; password: {password}"
    print(f"user {args.name} ({args.role}) {'reset' if existed else 'created'}{shown}")
    return 0
