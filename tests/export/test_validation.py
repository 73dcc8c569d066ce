"""The cards' validation summaries: one per finding where a set has several."""

from __future__ import annotations

from pathlib import Path

from export.validation import measure
from service.datasets import read_set
from service.models.threshold import ThresholdBackend


def test_a_set_of_several_findings_is_summarised_per_finding(data_dir: Path):
    samples = read_set(data_dir / "files" / "covid-qu-ex-layout").samples
    findings = {s.finding for s in samples}
    summary = measure(ThresholdBackend("cxr"), samples, "threshold")
    per = summary["by_finding"]
    assert set(per) == findings == {"COVID-19", "Non-COVID", "Normal"}
    for finding, group in per.items():
        assert group["n_images"] == sum(s.finding == finding for s in samples)
    assert per["Normal"]["infection"]["dice"]["n"] == 0  # empty references: no infection Dice
    assert per["COVID-19"]["infection_false_positive_rate"]["n"] == 0


def test_a_set_of_one_finding_has_no_split(data_dir: Path):
    samples = [s for s in read_set(data_dir / "files" / "covid-qu-ex-layout").samples if s.covid]
    assert "by_finding" not in measure(ThresholdBackend("cxr"), samples, "threshold")
