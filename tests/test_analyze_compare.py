"""`lightning analyze --compare teacher=DIR student=DIR`: per-sequence AUC differences sorted, the attribute
reader and breakdown (LaSOT / UAV123 layouts), the JSON and the sorted bar plots, on results the tests write."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lightning_app.cli import main as lightning
from lightning_app.commands.analyze import read_annotations
from tests.tiny_datasets import frame_box, make_lasot
from trackers.errors import BadFileError
from trackers.evaluation.per_sequence import (
    ATTRIBUTE_NAMES,
    compare_sequences,
    find_attribute_dir,
    read_attribute_file,
)
from trackers.evaluation.plots import GAIN_COLOR, LOSS_COLOR
from trackers.evaluation.result_files import write_raw_results

LENGTHS = {"cat-1": 8, "cat-2": 8, "dog-1": 8, "dog-2": 8}
LASOT_CODES = [c for c, _ in ATTRIBUTE_NAMES["lasot"]]


def _gt(name: str) -> np.ndarray:
    return np.array([frame_box(k) for k in range(LENGTHS[name])])


def _write(folder: Path, shifts: dict[str, float]) -> Path:
    """Raw results: the ground truth shifted right by ``shift`` pixels from frame 1 on (0 = perfect)."""
    for name, shift in shifts.items():
        boxes = _gt(name)
        boxes[1:, 0] += shift
        write_raw_results(folder, name, boxes)
    return folder


def _attributes(folder: Path, flagged: dict[str, list[str]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for seq, codes in flagged.items():
        (folder / f"{seq}.txt").write_text(",".join("1" if c in codes else "0" for c in LASOT_CODES) + "\n")
    return folder


@pytest.fixture
def benchmark(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A tiny LaSOT, a teacher close to the ground truth and a student that loses most on dog-2, gains on cat-2."""
    root = make_lasot(tmp_path / "lasot", LENGTHS)
    teacher = _write(tmp_path / "teacher", {"cat-1": 0.0, "cat-2": 4.0, "dog-1": 1.0, "dog-2": 0.0})
    student = _write(tmp_path / "student", {"cat-1": 0.0, "cat-2": 1.0, "dog-1": 3.0, "dog-2": 8.0})
    return root, teacher, student


def _has_color(img: np.ndarray, color: str, tol: int = 12) -> bool:
    rgb = np.array([int(color[i:i + 2], 16) for i in (1, 3, 5)])
    return bool((np.abs(img[..., :3].astype(int) - rgb).max(axis=-1) <= tol).sum() > 50)


def test_attribute_file_reader(tmp_path: Path) -> None:
    codes = [c for c, _ in ATTRIBUTE_NAMES["uav123"]]
    path = tmp_path / "bike1.txt"
    path.write_text("1,0,0,1,0,0,0,0,0,0,0,1\n")  # UAV123: one comma-separated line of 12 flags
    assert read_attribute_file(path, codes) == {"SV", "FM", "SOB"}
    path.write_text("0 1 0 0 0 0 0 0 0 0 0 0")  # whitespace-separated flags read the same
    assert read_attribute_file(path, codes) == {"ARC"}
    for bad in ("1,0,1\n", "1,0,0,1,0,0,0,0,0,0,0,2\n"):
        path.write_text(bad)
        with pytest.raises(BadFileError, match="bike1.txt.*12 comma-separated 0/1 flags"):
            read_attribute_file(path, codes)


def test_attribute_folders_are_found_in_each_benchmark_layout(tmp_path: Path) -> None:
    assert find_attribute_dir(tmp_path, "lasot") is None
    (tmp_path / "anno" / "UAV123" / "att").mkdir(parents=True)
    assert find_attribute_dir(tmp_path, "uav123") == tmp_path / "anno" / "UAV123" / "att"
    (tmp_path / "annos" / "att").mkdir(parents=True)
    assert find_attribute_dir(tmp_path, "lasot") == tmp_path / "annos" / "att"
    assert find_attribute_dir(tmp_path, "synthtrack") is None


def test_differences_are_sorted_and_attributes_averaged(benchmark: tuple[Path, Path, Path]) -> None:
    root, teacher, student = benchmark
    annotations = read_annotations(root, "lasot")
    flagged = {"cat-1": ["IV"], "cat-2": ["IV", "FM"], "dog-1": ["FM"], "dog-2": ["FM", "OV"]}
    comparison = compare_sequences(annotations, teacher, student, attributes={
        s: frozenset(c) for s, c in flagged.items()})
    rows = {r["sequence"]: r for r in comparison.sequences}
    assert [r["sequence"] for r in comparison.sequences][:2] == ["dog-2", "dog-1"]  # largest losses first
    assert comparison.sequences[-1]["sequence"] == "cat-2" and rows["cat-2"]["diff"] > 0  # the gain last
    assert rows["cat-1"]["diff"] == 0.0 and rows["dog-2"]["teacher"] == rows["cat-1"]["student"]  # both perfect
    diffs = [r["diff"] for r in comparison.sequences]
    assert diffs == sorted(diffs)
    for r in comparison.sequences:
        assert r["diff"] == pytest.approx(r["student"] - r["teacher"])
    assert comparison.mean["student"] == pytest.approx(np.mean([r["student"] for r in comparison.sequences]))
    attrs = {a["code"]: a for a in comparison.attributes}
    assert list(attrs) == ["IV", "FM", "OV"]  # toolkit order; attributes no sequence has are left out
    assert attrs["IV"]["sequences"] == 2 and attrs["FM"]["sequences"] == 3
    for code, seqs in {"IV": ["cat-1", "cat-2"], "FM": ["cat-2", "dog-1", "dog-2"], "OV": ["dog-2"]}.items():
        for tracker in ("teacher", "student"):
            assert attrs[code][tracker] == pytest.approx(np.mean([rows[s][tracker] for s in seqs]))
        assert attrs[code]["diff"] == pytest.approx(attrs[code]["student"] - attrs[code]["teacher"])
    assert attrs["IV"]["diff"] > 0 > attrs["OV"]["diff"]


def test_command_writes_table_json_and_sorted_bar_plots(benchmark: tuple[Path, Path, Path], tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    root, teacher, student = benchmark
    _attributes(root / "annos" / "att", {"cat-1": ["IV"], "cat-2": ["IV", "FM"], "dog-1": ["FM"],
                                         "dog-2": ["FM", "OV"]})
    out = tmp_path / "compare"
    assert lightning(["analyze", "--compare", f"teacher={teacher}", f"student={student}", "--dataset-root",
                      str(root), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    lines = printed.splitlines()
    assert lines[0].split() == ["Sequence", "teacher", "student", "diff"]
    assert [line.split()[0] for line in lines[1:5]] == ["dog-2", "dog-1", "cat-1", "cat-2"]
    assert "FM (Fast Motion)" in printed and "IV (Illumination Variation)" in printed
    written = json.loads((out / "compare.json").read_text())
    assert (written["reference"], written["other"]) == ("teacher", "student")
    assert [r["sequence"] for r in written["sequences"]] == ["dog-2", "dog-1", "cat-1", "cat-2"]
    assert {a["code"] for a in written["attributes"]} == {"IV", "FM", "OV"}
    for name in ("compare_sequences.png", "compare_attributes.png"):
        img = np.asarray(Image.open(out / name).convert("RGB"))
        assert img.std() > 0
        assert _has_color(img, LOSS_COLOR) and _has_color(img, GAIN_COLOR), name  # losses and gains drawn


def test_compare_uses_the_common_sequences_and_names_bad_inputs(benchmark: tuple[Path, Path, Path],
                                                                capsys: pytest.CaptureFixture) -> None:
    root, teacher, student = benchmark
    (student / "dog-1.txt").unlink()
    assert lightning(["analyze", "--compare", f"teacher={teacher}", f"student={student}", "--dataset-root",
                      str(root), "--attributes", "none"]) == 0
    out = capsys.readouterr().out
    assert "1 sequence(s) only in teacher" in out and "mean AUC over 3 sequences" in out
    _attributes(root / "annos" / "att", {"cat-1": ["IV"]})  # cat-2 and dog-2 have no attribute file
    assert lightning(["analyze", "--compare", f"teacher={teacher}", f"student={student}", "--dataset-root",
                      str(root)]) == 2
    assert "no attribute file for 2 compared sequence(s)" in capsys.readouterr().err
    assert lightning(["analyze", "--compare", f"teacher={teacher}", "--dataset-root", str(root)]) == 2
    assert "--compare takes two folders" in capsys.readouterr().err
    assert lightning(["analyze", "--compare", f"teacher={teacher}", f"student={student}"]) == 2
    assert "pass --dataset-root" in capsys.readouterr().err
