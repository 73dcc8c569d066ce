"""``python -m service.report``: see :mod:`service.report.cli`."""

from service.report.cli import main

raise SystemExit(main())
