"""The report's static HTML page: one file that references its PNGs by relative path."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from html import escape
from typing import Any

from report.gallery import GalleryCase
from service import NOT_A_MEDICAL_DEVICE, __version__

STYLE = """
body { font-family: system-ui, "DejaVu Sans", sans-serif; color: #1b1f24; max-width: 1200px;
  margin: 0 auto; padding: 1rem 1.5rem 3rem; line-height: 1.45; }
.disclaimer { padding: .55rem .9rem; border: 1px solid #d4a72c; background: #fff4d6;
  border-radius: 6px; font-weight: 500; }
.notice { padding: .4rem .8rem; border-left: 4px solid #d4a72c; background: #fff4d6; }
h2 { font-size: 1.15rem; border-bottom: 1px solid #d0d7de; padding-bottom: .2rem; }
table { border-collapse: collapse; font-size: .9rem; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #d0d7de; padding: .25rem .55rem; text-align: right; }
th { background: #f6f8fa; } .text { text-align: left; }
figure { margin: 1rem 0; } figcaption { color: #57606a; font-size: .9rem; }
img { max-width: 100%; height: auto; }
.gallery { display: flex; flex-wrap: wrap; gap: 0 1.5rem; }
.gallery figure { flex: 1 1 480px; max-width: 580px; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .1rem 1rem; }
dt { color: #57606a; } dd { margin: 0; }
"""


@dataclass(frozen=True)
class Figures:
    """PNG files of the report, relative to the report folder (``history`` may be absent)."""

    metrics: str
    dice: str
    latency: str
    history: str | None = None
    gallery: list[GalleryCase] = field(default_factory=list)


def _num(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def seed_table(rows: list[dict[str, Any]]) -> str:
    """The seed's table: pixel accuracy, loss, Dice per model and modality, lung and infection."""
    head = (
        '<tr><th class="text" rowspan="2">Model (what ran)</th><th class="text" rowspan="2">'
        'Modality</th><th rowspan="2">Images</th><th colspan="3">Lung</th>'
        '<th colspan="4">Infection</th><th rowspan="2">Infection FP rate</th>'
        '<th rowspan="2">ms / image</th></tr><tr>'
        + "".join(f"<th>{h}</th>" for h in ("Accuracy", "Loss", "DSC") * 2)
        + "<th>n</th></tr>"
    )
    body = []
    for r in rows:
        cells = [f'<th class="text" scope="row">{escape(r["label"])}</th>']
        cells.append(f'<td class="text">{escape(r["modality"].upper())}</td>')
        cells.append(f"<td>{r['n_images']}</td>")
        for structure in ("lung", "infection"):
            cells += [f"<td>{_num(r[f'{structure}_{m}'])}</td>" for m in ("accuracy", "loss")]
            cells.append(f"<td>{_num(r[f'{structure}_dice'])}</td>")
        cells.append(f"<td>{r['infection_n']}</td>")
        cells.append(f"<td>{_num(r['infection_fp_rate'], 2)}</td>")
        cells.append(f"<td>{_num(r['ms_per_image'], 1)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        "<table><caption>Means over the run's images; infection metrics over images with "
        "reference infection, the others give the false-positive rate</caption>"
        f"<thead>{head}</thead><tbody>{''.join(body)}</tbody></table>"
    )


def _figure(src: str, alt: str, caption: str) -> str:
    return (
        f'<figure><img src="{escape(src)}" alt="{escape(alt)}">'
        f"<figcaption>{escape(caption)}</figcaption></figure>"
    )


def _gallery(cases: list[GalleryCase], first_model: str) -> str:
    parts = [
        f"<p>Cases picked at the worst, median and best lung Dice of {escape(first_model)} "
        "(COVID-19 cases among those with reference infection). Filled: the masks; outlined: "
        "the expert reference (yellow lung, red infection).</p>"
    ]
    for title, covid in (("COVID-19", True), ("Non-COVID", False)):
        chosen = [c for c in cases if c.sample.covid == covid]
        parts.append(f"<h3>{title} cases</h3>")
        figures = [
            _figure(c.file, c.alt, f"{c.sample.id} ({c.sample.finding or 'no finding'})")
            for c in chosen
        ]
        parts.append(f'<div class="gallery">{"".join(figures)}</div>' if chosen else "<p>None.</p>")
    return "\n".join(parts)


def page(run: dict[str, Any], rows: list[dict[str, Any]], figures: Figures) -> str:
    """The whole report as one HTML document."""
    results = run["results"]
    fallbacks = "".join(
        f'<p class="notice">{escape(e["model"]["kind"])} ran instead of '
        f"{escape(e['requested'])} ({escape(e['modality'].upper())}): {escape(e['fallback'])}</p>"
        for e in results["entries"]
        if e.get("fallback")
    )
    meta = {
        "run": run.get("id", "—"),
        "set": f"{run.get('set_name', results.get('set'))} ({results.get('layout', '?')} layout)",
        "images": run.get("n_images", "—"),
        "started": run.get("created", "—"),
        "finished": run.get("finished", "—"),
        "models asked": ", ".join(run.get("models", [])),
    }
    history = (
        _figure(figures.history, "Mean Dice per model over the runs on this set", "History")
        if figures.history
        else "<p>Fewer than two finished runs on this set are stored: no history chart.</p>"
    )
    generated = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>lungseg benchmark report: {escape(str(meta["set"]))}</title>
<style>{STYLE}</style></head>
<body>
<h1>lungseg benchmark report</h1>
<p class="disclaimer">{escape(NOT_A_MEDICAL_DEVICE)}</p>
<dl>{"".join(f"<dt>{escape(k)}</dt><dd>{escape(str(v))}</dd>" for k, v in meta.items())}</dl>
{fallbacks}
<h2>Accuracy, loss and Dice (DSC) per model</h2>
{seed_table(rows)}
{
        _figure(
            figures.metrics,
            "Bar charts of pixel accuracy, loss and Dice per model, lung and infection",
            "Accuracy = pixel accuracy; DSC = Dice; loss = Dice + cross-entropy.",
        )
    }
<h2>Dice per image: COVID-19 vs non-COVID</h2>
{
        _figure(
            figures.dice,
            "Box and strip plots of per-image Dice per model, COVID-19 and "
            "non-COVID, lung and infection",
            "Each dot is one image; boxes show the quartiles.",
        )
    }
<h2>Latency per model</h2>
{
        _figure(
            figures.latency,
            "Bar chart of the benchmark time per image per model",
            "Wall time per image of the benchmark on the service's machine.",
        )
    }
<h2>History</h2>
{history}
<h2>Gallery</h2>
{_gallery(figures.gallery, rows[0]["label"] if rows else "the first model")}
<p><small>Generated {generated} by lungseg {escape(__version__)}
(python -m report).</small></p>
</body></html>
"""
