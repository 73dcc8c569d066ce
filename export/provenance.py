"""Provenance for the model card: licenses of the training sets, the git commit, hardware."""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from training.config import SetSpec
from training.data import read_spec

log = logging.getLogger(__name__)

NON_COMMERCIAL = (
    "Trained on public research data whose terms include non-commercial licences (CC BY-NC-SA, "
    "'non-commercial use only'): the weights are for research and non-commercial use only and "
    "inherit those terms; cite the sources listed."
)
INTENDED_USE = (
    "Research and education: segmentation of the lungs and of COVID-19 infection (ground-glass "
    "opacity, consolidation) on chest X-ray or axial chest CT, for measuring infected lung "
    "fraction in studies. Not a medical device: not cleared or approved for diagnosis, triage or "
    "any clinical decision; outputs must not be used for patient care."
)


def licenses(data_root: Path, specs: Iterable[SetSpec]) -> dict[str, Any]:
    """Licence terms per set, as the sets state them (``meta.csv``, the COVID-QU-Ex reader, a
    series' SOURCE.txt)."""
    per_set: dict[str, list[str]] = {}
    for spec in specs:
        labelled = read_spec(data_root, spec)
        per_set[spec.name] = sorted({s.license for s in labelled.samples if s.license})
    return {"summary": NON_COMMERCIAL, "sets": per_set}


def git_commit(repo: Path) -> dict[str, Any]:
    """``{"commit": HEAD, "dirty": bool}`` of ``repo``; the tree may hold uncommitted changes
    (``dirty``), so the commit alone may not reproduce the export. ``None`` outside git."""
    try:
        head = _git(repo, "rev-parse", "HEAD")
        status = _git(repo, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError) as err:
        log.warning("no git commit recorded: %s", err)
        return {"commit": None, "dirty": None}
    return {"commit": head, "dirty": bool(status)}


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True, timeout=30
    )
    return done.stdout.strip()
