"""The ``inspector`` command line.

- ``commands``: the parser, ``run``, ``demo``, ``capture``, ``check-config`` and the helpers
  plug-ins share (config loading, the stop event)
- ``model``: ``fit``, ``calibrate``, ``eval``, ``predict`` and ``quantize``
- ``setup``: what every command shares (config loading with logging, the usage exit status)
- ``loop``: the closed loop's ``models list|import|export``

Other packages add commands through the ``inspector.commands`` entry point (``web`` does).
"""

from inspector.cli.commands import install_stop_handlers, main
from inspector.cli.setup import EXIT_USAGE, load_logged_config

__all__ = ["EXIT_USAGE", "install_stop_handlers", "load_logged_config", "main"]
