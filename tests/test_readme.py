"""The README documents every setting the service reads (and no setting that does not exist)."""

from __future__ import annotations

import re
from pathlib import Path

from service.api.settings import Settings

README = Path(__file__).resolve().parents[1] / "README.md"


def test_every_setting_is_in_the_readme_table() -> None:
    documented = set(re.findall(r"^\| `LUNGSEG_([A-Z_]+)` \|", README.read_text(), re.M))
    fields = {name.upper() for name in Settings.model_fields}
    assert documented == fields
