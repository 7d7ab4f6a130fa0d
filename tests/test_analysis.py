"""Offline analysis: printed table against the fixtures' pytracking numbers, plots, FPS, rejection, and the
ground truth read by `lightning test`'s readers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image as mpimg

from trackers.evaluation import InvalidResultsError
from datamodules.readers import build_reader
from datamodules.sequences import EvalSequenceDataset
from lightning_app.commands.analyze import analyze_benchmark as analyze
from lightning_app.commands.analyze import read_annotations
from tests.tiny_datasets import frame_box, make_got10k, make_lasot
from trackers.evaluation.analysis import TABLE_COLUMNS
from trackers.evaluation.plots import DPI, FIGURE_SIZE_INCHES, PLOT_SPECS
from trackers.evaluation.result_files import read_raw_results, write_raw_results


def _metric_fixture(fixtures_dir: Path) -> Path:
    root = fixtures_dir / "metrics"
    dirs = sorted(d for d in root.iterdir() if (d / "expected.json").exists()) if root.is_dir() else []
    if not dirs:
        pytest.skip(f"no metric fixture under {root}; set DISTILTRACK_FIXTURES")
    return dirs[0]


def _parse_table(text: str) -> dict[str, dict[str, str]]:
    lines = [line.split() for line in text.strip().splitlines()]
    header = lines[0]
    return {row[0]: dict(zip(header, row)) for row in lines[1:]}


def test_analyze_prints_the_official_pytracking_scores_and_writes_plots(
    fixtures_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    fixture = _metric_fixture(fixtures_dir)
    expected = json.loads((fixture / "expected.json").read_text())
    scorable = [t for t in expected["trackers"] if "raises" not in expected["pytracking"]["default"][t]["overall"]]
    dirs = {t: fixture / "results" / t for t in scorable}
    out = tmp_path / "plots"
    rows = analyze(fixture / "dataset", dirs, out_dir=out, sequences=expected["sequences"])
    table = _parse_table(capsys.readouterr().out)
    tol = expected["pytracking"]["recommended_tolerance"]["scores_and_curves_abs"]
    assert [r["Tracker"] for r in rows] == scorable
    for tracker in scorable:
        ref = expected["pytracking"]["default"][tracker]["overall"]
        for key in TABLE_COLUMNS["pytracking"]:
            assert abs(float(table[tracker][key]) - ref[key]) <= 0.005 + tol, (tracker, key)
        assert table[tracker]["Sequences"] == str(ref["num_sequences"])
        assert table[tracker]["FPS"] == "-"  # the fixture has no time files
    height, width = (round(s * DPI) for s in reversed(FIGURE_SIZE_INCHES))
    for spec in PLOT_SPECS["pytracking"]:
        img = mpimg.imread(out / spec.file_name)
        assert img.shape[:2] == (height, width) and img.shape[2] in (3, 4)
        assert img[..., :3].std() > 0  # something was drawn


def _copy_results(fixture: Path, tracker: str, dst: Path) -> Path:
    shutil.copytree(fixture / "results" / tracker, dst)
    return dst


def test_fps_is_pooled_over_sequences_with_time_files(fixtures_dir: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    fixture = _metric_fixture(fixtures_dir)
    expected = json.loads((fixture / "expected.json").read_text())
    tracker = expected["trackers"][0]
    res = _copy_results(fixture, tracker, tmp_path / "timed")
    first, second = expected["sequences"][:2]
    frames = {}
    for seq, dt in ((first, 0.01), (second, 0.04)):
        boxes = read_raw_results(res / f"{seq}.txt")
        write_raw_results(res, seq, boxes, np.full(len(boxes), dt))
        frames[seq] = (len(boxes), dt)
    rows = analyze(fixture / "dataset", [res], sequences=expected["sequences"], convention="trackingnet")
    pooled = sum(n for n, _ in frames.values()) / sum(n * dt for n, dt in frames.values())
    assert rows[0]["Tracker"] == "timed"
    assert rows[0]["FPS"] == pytest.approx(pooled, rel=1e-4)
    assert _parse_table(capsys.readouterr().out)["timed"]["FPS"] == f"{pooled:.1f}"


def test_a_rejected_sequence_voids_the_tracker_and_names_the_file(fixtures_dir: Path, tmp_path: Path) -> None:
    fixture = _metric_fixture(fixtures_dir)
    expected = json.loads((fixture / "expected.json").read_text())
    clean = [t for t in expected["trackers"] if "raises" not in expected["pytracking"]["default"][t]["overall"]]
    res = _copy_results(fixture, clean[0], tmp_path / "broken")
    seq = expected["sequences"][-1]
    boxes = read_raw_results(res / f"{seq}.txt")
    boxes[len(boxes) // 2, 2] = -5.0  # negative width: pytracking refuses the whole evaluation
    write_raw_results(res, seq, boxes)
    with pytest.raises(InvalidResultsError, match=seq):
        analyze(fixture / "dataset", {"broken": res}, print_table=False)
    (res / f"{expected['sequences'][0]}.txt").unlink()
    with pytest.raises(FileNotFoundError, match=expected["sequences"][0]):
        analyze(fixture / "dataset", {"broken": res}, convention="trackingnet", print_table=False)


def test_got10k_analysis_needs_image_sizes(fixtures_dir: Path, tmp_path: Path) -> None:
    fixture = _metric_fixture(fixtures_dir)
    expected = json.loads((fixture / "expected.json").read_text())
    dataset = tmp_path / "dataset"
    shutil.copytree(fixture / "dataset", dataset)
    results = {t: fixture / "results" / t for t in expected["trackers"]
               if "raises" not in expected["got10k"]["trackers"][t]["overall"]}
    with pytest.raises(FileNotFoundError, match="image_sizes.json"):
        analyze(dataset, results, convention="got10k", print_table=False)
    shutil.copy(fixture / "image_sizes.json", dataset / "image_sizes.json")  # found in the root by default
    rows = analyze(dataset, results, convention="got10k", out_dir=tmp_path / "plots", print_table=False)
    for row in rows:
        ref = expected["got10k"]["trackers"][row["Tracker"]]["overall"]
        assert row["AO"] == pytest.approx(ref["AO"], abs=1e-9)
    assert (tmp_path / "plots" / "success.png").exists()


def test_analysis_reads_the_ground_truth_with_the_test_readers(tmp_path: Path) -> None:
    """One rule for `test` and `analyze`: a flag-length mismatch is repaired and noted, not refused."""
    root = make_lasot(tmp_path / "lasot", {"cat-1": 6, "dog-2": 5}, occluded={"cat-1": [2]})
    (root / "dog" / "dog-2" / "out_of_view.txt").write_text("0,0,0\n")  # 3 flags for 5 frames
    with pytest.warns(UserWarning, match="dog-2"):
        cat, dog = read_annotations(root, "lasot")
    assert (cat.name, dog.name) == ("cat-1", "dog-2")
    np.testing.assert_array_equal(cat.boxes[1], frame_box(1))
    assert cat.visible.tolist() == [True, True, False, True, True, True]
    assert dog.visible.tolist() == [True, True, True, False, False]  # frames without a flag count as absent
    assert cat.image_size == (48, 32)  # from the first frame's header
    got = make_got10k(tmp_path / "val", {"GOT-10k_Val_000001": 4}, uncovered={"GOT-10k_Val_000001": [1]},
                      zero_box={"GOT-10k_Val_000001": [3]})
    (seq,) = read_annotations(got, "got10k")
    assert seq.visible.tolist() == [True, False, True, True]  # cover > 0, whatever the box (the toolkit's rule)
    assert seq.image_size == (48, 32)  # from meta_info.ini
    with pytest.raises(FileNotFoundError, match="GOT-10k_Val_000009"):
        read_annotations(got, "got10k", ["GOT-10k_Val_000009"])
    for reader_type, folder, annotations in (("got10k", got, [seq]), ("lasot", root, [cat, dog])):
        evaluated = EvalSequenceDataset(build_reader(reader_type, folder, split=None))  # what `lightning test` scores
        for item, ann in zip(evaluated, annotations, strict=True):
            assert item.name == ann.name and item.image_size == ann.image_size
            np.testing.assert_array_equal(item.gt_boxes, ann.boxes)
            np.testing.assert_array_equal(item.visible, ann.visible)
