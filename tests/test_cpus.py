"""Cores from the affinity mask capped by a cgroup CPU quota (containers with a CPU limit)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from service.cpus import cpu_quota, usable_cores


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


@pytest.mark.parametrize(
    ("files", "quota"),
    [
        ({"cpu.max": "200000 100000\n"}, 2.0),
        ({"cpu.max": "150000 100000\n"}, 1.5),
        ({"cpu.max": "max 100000\n"}, None),
        ({"cpu/cpu.cfs_quota_us": "50000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 0.5),
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ({"cpu.max": "garbage\n"}, None),
        ({}, None),
    ],
    ids=["v2-2", "v2-1.5", "v2-max", "v1-0.5", "v1-unlimited", "unreadable", "none"],
)
def test_cpu_quota(tmp_path: Path, files: dict[str, str], quota: float | None):
    assert cpu_quota(_write(tmp_path, files)) == quota


def test_usable_cores_is_capped_by_the_quota_and_at_least_one(tmp_path: Path):
    affinity = len(os.sched_getaffinity(0))
    assert usable_cores(_write(tmp_path / "none", {})) == affinity
    assert usable_cores(_write(tmp_path / "one", {"cpu.max": "100000 100000"})) == 1
    assert usable_cores(_write(tmp_path / "half", {"cpu.max": "50000 100000"})) == 1
    big = _write(tmp_path / "big", {"cpu.max": f"{(affinity + 8) * 100000} 100000"})
    assert usable_cores(big) == affinity
