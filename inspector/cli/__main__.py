"""``python -m inspector.cli``: the same as the ``inspector`` command."""

from inspector.cli.commands import main

raise SystemExit(main())
