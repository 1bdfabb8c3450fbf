"""The ``inspector`` command line.

- ``commands``: the parser, ``run``, ``demo``, ``capture``, ``check-config`` and the helpers
  plug-ins share (config loading, the stop event)
- ``model``: ``fit``, ``calibrate``, ``eval``, ``predict`` and ``quantize``

Other packages add commands through the ``inspector.commands`` entry point (``web`` does).
"""

from inspector.cli.commands import EXIT_USAGE, install_stop_handlers, load_logged_config, main

__all__ = ["EXIT_USAGE", "install_stop_handlers", "load_logged_config", "main"]
