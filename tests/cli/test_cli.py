"""``lungseg segment``: files, folders, zips and NIfTI through the core, outputs named by the
input's number, the summary table, the progress bar and the exit statuses."""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from service.cli import main
from service.cli.output import Progress
from service.encoders import rle
from tests.conftest import FIXTURES_DIR, REPO_ROOT
from tests.imaging.dicom_copies import CHEST, J2K, parse, series_paths

EXAMPLE = "files/nifti/example_ct_sm.nii.gz"
PNG = FIXTURES_DIR / "cxr_covid_1902.png"


@pytest.fixture(scope="module")
def series(data_dir: Path, tmp_path_factory) -> Path:
    """A folder (with a README beside the DICOM files, in a sub-folder) of 8 chest slices."""
    folder = tmp_path_factory.mktemp("Doe_John") / "study"
    folder.mkdir()
    for index, path in enumerate(series_paths(data_dir, CHEST)[28:36]):
        (folder / f"IM{index:03d}").write_bytes(path.read_bytes())
    (folder.parent / "README.txt").write_text("exported from the PACS\n")
    return folder.parent


def _run(capsys, *args: str) -> tuple[int, str, str]:
    status = main(["segment", *args])
    out, err = capsys.readouterr()
    return status, out, err


def test_volumes_images_and_a_failure(capsys, tmp_path, series, data_dir) -> None:
    broken = tmp_path / "broken.dcm"
    broken.write_bytes(b"not an image at all")
    out_dir = tmp_path / "out"
    args = [str(series), str(data_dir / EXAMPLE), str(PNG), str(broken), "--out", str(out_dir)]
    status, out, err = _run(capsys, *args, "--model", "threshold")
    assert status == 1
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "0001.json",
        "0001.nii.gz",
        "0002.json",
        "0002.nii.gz",
        "0003.json",
        "0003.rle.json",
    ]
    lines = out.splitlines()
    assert lines[0].startswith("input kind") and "lung mL" in lines[0] and "left mL" in lines[0]
    assert lines[1].split()[:3] == ["0001", "volume", "8"]
    assert lines[2].split()[:3] == ["0002", "volume", "30"]
    assert lines[3].split()[:2] == ["0003", "image"] and lines[4].startswith("0004  failed")
    assert "lungseg: input 4: unsupported file type" in err and "Traceback" not in err
    measures = json.loads((out_dir / "0001.json").read_text())
    assert measures["kind"] == "volume" and measures["n_slices"] == 8
    assert measures["lungs"]["left"]["volume_ml"] > 0 and measures["model"]["kind"] == "threshold"
    assert len(measures["slices"]) == 8 and "assemble" in measures["timings_ms"]
    labels = nib.Nifti1Image.from_bytes(gzip.decompress((out_dir / "0001.nii.gz").read_bytes()))
    assert labels.shape == (512, 512, 8)
    patient = str(parse(next(p for p in series.rglob("IM*")).read_bytes()).PatientID)
    for path in out_dir.iterdir():  # no identifier in any name or content
        assert "Doe" not in path.name
        assert patient.encode() not in path.read_bytes()
    frames = json.loads((out_dir / "0003.rle.json").read_text())["frames"]
    assert rle.decode(frames[0]["lung"]).shape == (256, 256)


def test_zip_with_rle_and_png_formats(capsys, tmp_path, data_dir) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for index, path in enumerate(series_paths(data_dir, CHEST)[30:34]):
            archive.writestr(f"series/{index}.dcm", path.read_bytes())
    (tmp_path / "upload.zip").write_bytes(buffer.getvalue())
    status, out, _ = _run(
        capsys,
        str(tmp_path / "upload.zip"),
        "--out",
        str(tmp_path),
        "--format",
        "rle",
        "--model",
        "threshold",
    )
    assert status == 0 and out.splitlines()[1].split()[:3] == ["0001", "volume", "4"]
    document = json.loads((tmp_path / "0001.rle.json").read_text())
    assert [s["upload_index"] for s in document["slices"]] == [3, 2, 1, 0]  # sorted along +z
    status, _, _ = _run(capsys, str(PNG), "--out", str(tmp_path / "png"), "--format", "png")
    assert status == 0
    assert sorted(p.name for p in (tmp_path / "png").iterdir()) == [
        "0001.json",
        "0001_infection.png",
        "0001_lung.png",
    ]
    status, _, err = _run(
        capsys, str(tmp_path / "upload.zip"), "--out", str(tmp_path), "--format", "png"
    )
    assert status == 1 and "png output is for images" in err


def test_several_series_need_a_series_uid(capsys, tmp_path, data_dir) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    chest = series_paths(data_dir, CHEST)[30:33]
    for index, path in enumerate([*chest, *series_paths(data_dir, J2K)[:2]]):
        (folder / f"{index}.dcm").write_bytes(path.read_bytes())
    status, _, err = _run(capsys, str(folder), "--out", str(tmp_path / "o"), "--model", "threshold")
    assert status == 1 and "choose one with series_uid" in err
    uid = str(parse(chest[0].read_bytes()).SeriesInstanceUID)
    status, out, _ = _run(
        capsys,
        str(folder),
        "--out",
        str(tmp_path / "o"),
        "--model",
        "threshold",
        "--series-uid",
        uid,
    )
    assert status == 0 and out.splitlines()[1].split()[:3] == ["0001", "volume", "3"]


def test_usage_errors_exit_2(capsys, tmp_path) -> None:
    status, _, err = _run(capsys, str(PNG), "--out", str(tmp_path), "--format", "seg")
    assert status == 1 and "DICOM" in err  # a SEG needs a DICOM source: this input fails
    status, _, err = _run(capsys, str(tmp_path / "missing.dcm"), "--out", str(tmp_path))
    assert status == 2 and "input(s) 1 do not exist" in err and "missing" not in err
    status, _, err = _run(capsys, str(PNG), "--out", str(tmp_path), "--model", "transformer")
    assert status == 2 and "not installed" in err
    with pytest.raises(SystemExit) as caught:
        main(["segment", str(PNG)])  # no --out
    assert caught.value.code == 2


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_only_on_a_terminal() -> None:
    shown = _Terminal()
    bar = Progress("0001", shown)
    bar(8, 64)
    bar(64, 64)
    bar.close()
    assert shown.getvalue().endswith(f"\r0001 [{'#' * 30}] 64/64 slices\n")
    assert "\r0001 [###-" in shown.getvalue()
    quiet = io.StringIO()
    Progress("0001", quiet)(1, 2)
    assert quiet.getvalue() == ""


def test_console_script_and_subprocess(tmp_path, data_dir) -> None:
    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["lungseg"] == "service.cli:main"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "service.cli",
            "segment",
            str(data_dir / EXAMPLE),
            "--out",
            str(tmp_path),
            "--model",
            "threshold",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO_ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1].split()[:3] == ["0001", "volume", "30"]
    assert done.stderr == ""  # not a terminal: no progress bar
    assert (tmp_path / "0001.nii.gz").is_file()
    np.testing.assert_array_equal(
        nib.load(tmp_path / "0001.nii.gz").affine, nib.load(data_dir / EXAMPLE).affine
    )


def test_seg_output_for_a_series_and_an_image(tmp_path, data_dir):
    import highdicom as hd

    series = data_dir / "files" / "ct-series-chest-hu"
    image = data_dir / "files" / "dicom" / "CT_small.dcm"
    code = main(
        [
            "segment",
            str(series),
            str(image),
            "--out",
            str(tmp_path),
            "--format",
            "seg",
            "--model",
            "threshold",
        ]
    )
    assert code == 0
    seg = hd.seg.segread(tmp_path / "0001.seg.dcm")
    assert len(seg.get_source_image_uids()) == 64
    assert (tmp_path / "0002.seg.dcm").is_file()
