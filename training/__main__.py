"""Entry point of ``python -m training`` (see :mod:`training.cli`).

OpenMP threads sleep instead of spinning while they wait (``OMP_WAIT_POLICY=PASSIVE``, unless
set): under CPU contention spinning threads made a training step 2-4x slower. It must be set
before torch loads its OpenMP runtime, hence here, before the imports.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from training.cli import main

raise SystemExit(main())
