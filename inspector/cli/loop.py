"""The closed loop's commands: ``models list|import|export``, ``promote`` and ``rollback``.

The ``models`` actions open the store named by the config, so they work beside a running
box; ``promote`` and ``rollback`` go through the running box's web API
(``inspector.local_api``), so the model takes over between two frames."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def add_loop_commands(commands: Any) -> None:
    models = commands.add_parser("models", help="the models this box keeps (the registry)")
    actions = models.add_subparsers(title="actions", metavar="ACTION")
    listing = actions.add_parser("list", help="every model the store knows; * marks the active")
    listing.add_argument("--config", type=Path, required=True)
    listing.add_argument("--json", action="store_true", help="one JSON object per model")
    listing.set_defaults(handler=_models_list)
    adding = actions.add_parser("import", help="keep a fitted model folder in the registry")
    adding.add_argument("folder", type=Path, help="a fitted model (model.onnx + card.json)")
    adding.add_argument("--name", help="registry name (default: the card's name, made unique)")
    adding.add_argument("--config", type=Path, required=True)
    adding.set_defaults(handler=_models_import)
    export = actions.add_parser("export", help="copy a kept model out as a fitted model folder")
    export.add_argument("name", help="registry name, or the first 8+ digits of its sha256")
    export.add_argument("out", type=Path, help="a new or empty folder")
    export.add_argument("--config", type=Path, required=True)
    export.set_defaults(handler=_models_export)
    models.set_defaults(handler=lambda _args: models.print_help() or 2)

    promote = commands.add_parser("promote", help="make a kept model the active one on the "
                                  "running box (through its web API)")
    promote.add_argument("name", help="registry name (see `inspector models list`)")
    promote.add_argument("--config", type=Path, required=True)
    promote.set_defaults(handler=_promote)
    rollback = commands.add_parser("rollback", help="go back to the model active before, on "
                                   "the running box (through its web API)")
    rollback.add_argument("--config", type=Path, required=True)
    rollback.set_defaults(handler=_rollback)


def _registry(config_path: Path) -> Any:
    from inspector.cli.setup import load_logged_config
    from inspector.loop import Registry
    from inspector.store import Store

    config = load_logged_config(config_path)
    return Registry(Store(config.storage.root))


def _models_list(args: argparse.Namespace) -> int:
    registry = _registry(args.config)
    try:
        entries = registry.entries()
    finally:
        registry.store.close()
    if args.json:
        for entry in entries:
            print(json.dumps(entry.to_json()))
        return 0
    if not entries:
        print("no models yet: `inspector run` keeps the config's model here at its first start")
        return 0
    print(f"  {'name':<28} {'sha256':<12}  {'added (UTC)':<19}  {'origin':<8} "
          f"{'threshold':>10}  images")
    for e in entries:
        added = datetime.fromtimestamp(e.added_ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S")
        origin = e.origin.get("kind", "-") if e.folder is not None else "not kept"
        print(f"{'*' if e.active else ' '} {e.name:<28} {e.sha256[:12]}  {added}  {origin:<8} "
              f"{e.card.threshold.value:>10.4g}  {e.card.training.count}")
    return 0


def _models_import(args: argparse.Namespace) -> int:
    from inspector.loop import check_model_name
    from inspector.model import load_model

    if args.name is not None:
        try:
            check_model_name(args.name)
        except ValueError as exc:
            print(f"inspector models import: {exc}", file=sys.stderr)
            return 2
    model = load_model(args.folder)  # a ModelError names what is wrong with the folder
    registry = _registry(args.config)
    try:
        before = {e.sha256: e.name for e in registry.entries() if e.folder is not None}
        entry = registry.add(model, args.name, origin={"kind": "import",
                                                        "from": str(args.folder.resolve())})
    finally:
        registry.store.close()
    if model.sha256 in before:
        print(f"already kept as {before[model.sha256]} ({model.sha256[:12]}…); nothing copied")
    else:
        print(f"kept as {entry.name} ({entry.sha256[:12]}…)")
    return 0


def _models_export(args: argparse.Namespace) -> int:
    registry = _registry(args.config)
    try:
        out = registry.export(args.name, args.out)
    finally:
        registry.store.close()
    print(f"exported {args.name} to {out}")
    return 0


def _promote(args: argparse.Namespace) -> int:
    from inspector.cli.setup import load_logged_config
    from inspector.local_api import call

    root = load_logged_config(args.config).storage.root
    # Naming the model on the command line is the explicit confirmation.
    answer = call(root, "POST", f"/api/models/{args.name}/promote", {"confirm": args.name})
    print(f"promoted {answer['promoted']} ({answer['sha256'][:12]}…); {answer['takes_effect']}")
    return 0


def _rollback(args: argparse.Namespace) -> int:
    from inspector.cli.setup import load_logged_config
    from inspector.local_api import call

    root = load_logged_config(args.config).storage.root
    answer = call(root, "POST", "/api/models/rollback", {})
    print(f"rolled back to {answer['active']} ({answer['sha256'][:12]}…); "
          f"{answer['takes_effect']}")
    return 0
