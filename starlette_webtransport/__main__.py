"""``python -m starlette_webtransport``: the same as the ``starlette-webtransport`` command."""

from .server.cli import main

raise SystemExit(main())
