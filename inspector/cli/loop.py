"""The closed loop's commands: ``models list|import|export``, ``refit``, ``shadow``,
``promote`` and ``rollback``.

The ``models`` actions open the store named by the config, so they work beside a running
box; ``promote`` and ``rollback`` go through the running box's web API
(``inspector.local_api``), so the model takes over between two frames."""

from __future__ import annotations

import argparse
import json
import sys
import time
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

    refit = commands.add_parser("refit", help="fit a candidate from the store's labeled good "
                                "frames, the way the active model was fitted")
    refit.add_argument("--config", type=Path, required=True)
    refit.add_argument("--out", required=True, metavar="NAME", help="the candidate's name")
    refit.add_argument("--cameras", type=_cameras, help="comma-separated (default: all)")
    refit.add_argument("--since", type=_since, metavar="WHEN",
                       help="only frames since: a date (2026-12-01), a time, or 48h / 7d ago")
    refit.add_argument("--include-passes", action="store_true",
                       help="also fit on unlabeled passes that kept a frame")
    refit.set_defaults(handler=_refit)
    shadow = commands.add_parser("shadow", help="score a candidate beside the active model on "
                                 "the labeled history")
    shadow.add_argument("candidate", help="a kept model's name, or a model folder")
    shadow.add_argument("--config", type=Path, required=True)
    shadow.add_argument("--cameras", type=_cameras, help="comma-separated (default: all)")
    shadow.add_argument("--since", type=_since, metavar="WHEN", help="as for refit")
    shadow.add_argument("--json", type=Path, metavar="OUT", help="write the whole report here")
    shadow.set_defaults(handler=_shadow)

    promote = commands.add_parser("promote", help="make a kept model the active one on the "
                                  "running box (through its web API)")
    promote.add_argument("name", help="registry name (see `inspector models list`)")
    promote.add_argument("--config", type=Path, required=True)
    promote.set_defaults(handler=_promote)
    rollback = commands.add_parser("rollback", help="go back to the model active before, on "
                                   "the running box (through its web API)")
    rollback.add_argument("--config", type=Path, required=True)
    rollback.set_defaults(handler=_rollback)


def _cameras(text: str) -> list[str]:
    from inspector.identifiers import check_camera_id

    try:
        return [check_camera_id(c.strip()) for c in text.split(",") if c.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


_UNITS = {"h": 3600, "d": 86400}


def _since(text: str) -> int:
    """A time in ns: ``48h`` / ``7d`` ago, or an ISO date or time (UTC unless it says)."""
    text = text.strip()
    try:
        if text[-1:] in _UNITS:
            return time.time_ns() - int(float(text[:-1]) * _UNITS[text[-1]] * 1e9)
        when = datetime.fromisoformat(text)
    except (ValueError, IndexError):
        raise argparse.ArgumentTypeError(
            f"not a time: {text!r}; give a date (2026-12-01), a time or 48h / 7d") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1e9)


def _progress(stage: str, fraction: float | None = None) -> None:
    if sys.stderr.isatty():
        shown = "" if fraction is None else f" {fraction:4.0%}"
        print(f"\r{stage}{shown}\033[K", end="", file=sys.stderr, flush=True)


def _in_background(kind: str, job: Any) -> dict[str, Any]:
    """Run ``job`` as the Models page runs it (``JobRunner``: a thread at a low priority,
    yielding the CPU to inspection), following its progress; Ctrl-C cancels it."""
    from inspector.errors import InspectorError
    from inspector.loop import JobRunner

    runner = JobRunner()
    runner.start(kind, job)
    try:
        while not runner.wait(0.5):
            status = runner.status()
            _progress(status["stage"], status["fraction"])
    except KeyboardInterrupt:
        runner.cancel()
        runner.wait(60)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    status = runner.status()
    if status["state"] != "done":
        raise InspectorError(status["error"] or f"{kind} {status['state']}")
    return status["result"]


def _refit(args: argparse.Namespace) -> int:
    import getpass

    from inspector.loop import as_job, refit_candidate

    registry = _registry(args.config)
    try:
        entry = _in_background("refit", as_job(
            refit_candidate, registry, args.out, f"cli:{getpass.getuser()}",
            cameras=args.cameras, since_ns=args.since, include_passes=args.include_passes))
    finally:
        registry.store.close()
    samples = entry["origin"]["samples"]
    print(json.dumps({"candidate": entry["name"], "sha256": entry["sha256"],
                      "from": entry["origin"]["from"], "threshold": entry["threshold"],
                      "labeled_good": samples["labeled_good"],
                      "unlabeled_passes": samples["unlabeled_passes"],
                      "lacking_frame": samples["lacking_frame"]}))
    return 0


def _shadow(args: argparse.Namespace) -> int:
    from inspector.loop import as_job, shadow_candidate

    registry = _registry(args.config)
    try:
        report = _in_background("shadow", as_job(
            shadow_candidate, registry, args.candidate, cameras=args.cameras,
            since_ns=args.since))
    finally:
        registry.store.close()
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    before, after = report["before"], report["after"]
    print(f"labeled frames scored: {report['labeled']} ({report['lacking_frame']} labeled "
          f"lack a kept frame, {report['unreadable']} unreadable, "
          f"{report['excluded_training']} it was fitted on left out)")
    print(f"{'':16}{'active ' + before['model']:>28}{'candidate ' + after['model']:>28}")
    for key in ("false_rejects", "escapes", "rejects", "auroc", "threshold"):
        b, a = before[key], after[key]
        shown = [("-" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v))
                 for v in (b, a)]
        print(f"{key.replace('_', ' '):16}{shown[0]:>28}{shown[1]:>28}")
    print(f"verdicts that would change: {len(report['changed'])}")
    return 0


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
        before = {e.sha256: e for e in registry.entries() if e.folder is not None}
        entry = registry.add(model, args.name, origin={"kind": "import",
                                                        "from": str(args.folder.resolve())})
    finally:
        registry.store.close()
    if model.sha256 in before:
        kept = before[model.sha256]
        change = ("its card replaced (threshold "
                  f"{kept.card.threshold.value:.4g} -> {model.card.threshold.value:.4g})"
                  if kept.card != model.card else "nothing copied")
        print(f"already kept as {kept.name} ({model.sha256[:12]}…); {change}")
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
