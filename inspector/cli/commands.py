"""The ``inspector`` command line.

Building the parser imports none of the heavy code (ONNX, ONNX Runtime, the fitting
code): each handler imports what it needs, so ``--version`` and ``--help`` answer at once.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from inspector import __version__
from inspector.cli.setup import EXIT_USAGE, load_logged_config
from inspector.config import check_runnable, load_config
from inspector.errors import ConfigError, InspectorError
from inspector.logs import setup_logging

REPO_ROOT = Path(__file__).resolve().parents[2]


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return EXIT_USAGE
    try:
        return args.handler(args)
    except ConfigError as exc:
        _print_config_errors(exc)
        return EXIT_USAGE
    except InspectorError as exc:
        print(f"inspector: {exc}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="inspector", description="Edge machine-vision quality inspection appliance."
    )
    parser.add_argument("--version", action="version", version=f"inspector {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    check = commands.add_parser(
        "check-config",
        help="check a config file and what `run` needs from it here (exit 0 or 2)",
    )
    check.add_argument("file", type=Path)
    check.set_defaults(handler=_check_config)

    capture = commands.add_parser(
        "capture", help="run the configured cameras into a counting receiver and print rates"
    )
    capture.add_argument("--config", type=Path, required=True)
    capture.add_argument("--duration", type=float, help="stop after this many seconds")
    capture.add_argument("--interval", type=float, default=1.0, help="seconds between reports")
    capture.add_argument("--forward", action="store_true",
                         help="send the frames to the inspecting box at bus.frames (tcp://) "
                              "instead of a local counting receiver")
    capture.set_defaults(handler=_capture)

    run = commands.add_parser("run", help="run cameras, inspection and the results store")
    run.add_argument("--config", type=Path, required=True)
    run.add_argument("--duration", type=float, help="stop after this many seconds")
    run.add_argument("--interval", type=float, default=2.0, help="seconds between reports")
    run.set_defaults(handler=_run)

    demo = commands.add_parser("demo", help="the whole pipeline on bundled sample data")
    demo.add_argument("--duration", type=float, help="stop after this many seconds")
    demo.add_argument("--store", type=Path, default=Path("var/demo"),
                      help="results store folder (default: var/demo)")
    demo.add_argument("--interval", type=float, default=2.0, help="seconds between reports")
    demo.add_argument("--port", type=int, help="web UI port (default 8080; 0 picks a free one)")
    demo.set_defaults(handler=_demo)

    for add_commands in _plugins("inspector.commands"):  # e.g. the web UI's: web, users
        add_commands(commands)

    samples = commands.add_parser(
        "make-samples", help="regenerate the synthetic sample dataset (MVTec-AD layout)"
    )
    samples.add_argument("--out", type=Path, default=REPO_ROOT / "sample_images")
    samples.add_argument("--seed", type=int, default=0)
    samples.set_defaults(handler=_make_samples)

    from inspector.cli.loop import add_loop_commands
    from inspector.cli.model import add_model_commands

    add_model_commands(commands)
    add_loop_commands(commands)
    return parser


def _print_config_errors(exc: ConfigError) -> None:
    for problem in exc.problems:
        print(f"{exc.source}: {problem}", file=sys.stderr)


def _check_config(args: argparse.Namespace) -> int:
    # The very checks `run` makes at start, so the two cannot disagree.
    config = load_config(args.file, runnable=True)
    print(f"{args.file}: ok ({len(config.cameras)} camera(s))")
    return 0


# The long-running commands install the stop handlers first: a SIGTERM that arrives while
# they import, load the model or open cameras still stops them cleanly.


def _capture(args: argparse.Namespace) -> int:
    stop = install_stop_handlers()
    config = load_logged_config(args.config)
    if not config.cameras:
        raise ConfigError(["cameras: no camera configured"], str(args.config))
    from camera.monitor import run_capture

    run_capture(config, stop, sys.stdout, args.duration, args.interval, forward=args.forward)
    return 0


def _run(args: argparse.Namespace) -> int:
    stop = install_stop_handlers()
    config = load_logged_config(args.config, runnable=True)
    from inspector.inspection import run_pipeline

    run_pipeline(config, stop, sys.stdout, args.duration, args.interval, web_server=ui_server())
    return 0


def _demo(args: argparse.Namespace) -> int:
    stop = install_stop_handlers()
    from inspector.inspection import demo_config, run_pipeline
    from inspector.store import Store

    config = demo_config(args.store, args.port)
    problems = check_runnable(config)  # e.g. an installed package without the sample data
    if problems:
        raise ConfigError(problems, "demo defaults")
    server = ui_server()
    setup_logging(config.logging.level, config.logging.file)
    print(f"inspector demo: cameras {', '.join(c.id for c in config.cameras)}; "
          f"model {config.model.path}; results store {config.storage.root} "
          f"(inspections.db + images/); Ctrl-C stops", flush=True)
    if server is not None:
        with Store(config.storage.root) as store:
            for role, password in server.demo_users(store):
                print(f"  sign in as {role:<8} password {password}", flush=True)
    run_pipeline(config, stop, sys.stdout, args.duration, args.interval, web_server=server)
    return 0


def _make_samples(args: argparse.Namespace) -> int:
    from camera.synthetic import write_dataset

    counts = write_dataset(args.out, seed=args.seed)
    for folder, count in counts.items():
        print(f"{args.out / folder}: {count} images")
    return 0


def _plugins(group: str) -> list:
    """Objects other packages register under an entry-point group; ``inspector`` never
    imports ``web`` itself, so the UI plugs in this way."""
    return [entry.load() for entry in importlib.metadata.entry_points(group=group)]


def ui_server() -> Any:
    """The web UI's server class, when the ``web`` package is installed."""
    return next(iter(_plugins("inspector.ui")), None)


def install_stop_handlers() -> threading.Event:
    """One stop event, set by SIGINT or SIGTERM: every loop in the process watches it."""
    stop = threading.Event()

    def _stop(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    return stop


if __name__ == "__main__":
    raise SystemExit(main())
