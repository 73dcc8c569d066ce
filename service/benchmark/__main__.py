"""``python -m service.benchmark``: see :mod:`service.benchmark.cli`."""

from service.benchmark.cli import main

raise SystemExit(main())
