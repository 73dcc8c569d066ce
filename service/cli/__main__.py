"""``python -m service.cli``: the ``lungseg`` command."""

from service.cli import main

raise SystemExit(main())
