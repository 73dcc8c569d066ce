"""``python -m report``: see :mod:`report.cli`."""

from report.cli import main

raise SystemExit(main())
