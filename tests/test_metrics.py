"""OPE metrics: every metric fixture under <fixtures>/metrics, the protocol rules one by one, and the
torchmetrics wrappers' accumulation across ranks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lightning_app.commands.analyze import read_annotations
from trackers.evaluation import build_ope_metric
from trackers.evaluation import metrics_got10k, metrics_pytracking, metrics_trackingnet
from trackers.evaluation.analysis import evaluate_results
from trackers.evaluation.metrics_pytracking import InvalidResultsError

# ----------------------------------------------------------------------------------------------
# Fixtures of the official implementations
# ----------------------------------------------------------------------------------------------


def metric_fixture_dirs(fixtures_dir: Path) -> list[Path]:
    root = fixtures_dir / "metrics"
    dirs = sorted(d for d in root.iterdir() if (d / "expected.json").exists()) if root.is_dir() else []
    if not dirs:
        pytest.skip(f"no metric fixture (a dir with expected.json) under {root}; set DISTILTRACK_FIXTURES")
    return dirs


def _outcome(annotations, results_dir: Path, convention: str, **options):
    """The overall scores, or the exception the evaluation raised (rejected sequences included)."""
    try:
        report = evaluate_results(annotations, results_dir, convention, **options)
    except (ValueError, FileNotFoundError) as err:
        return err
    return InvalidResultsError(report.errors) if report.errors else report.overall


def _assert_scores(got, expected: dict, tol: dict[str, float], where: str) -> None:
    if "raises" in expected:
        assert isinstance(got, Exception), f"{where}: official code raises {expected['raises']!r}, we returned scores"
        return
    assert not isinstance(got, Exception), f"{where}: raised {got!r}"
    for key, value in expected.items():
        if key == "raised_by_sequences":
            continue
        np.testing.assert_allclose(np.asarray(got[key], dtype=np.float64), np.asarray(value, dtype=np.float64),
                                   rtol=0, atol=tol.get(key, tol["default"]), err_msg=f"{where}: {key}")


def _check_tracker(fixture: Path, annotations, tracker: str, expected: dict, convention: str, tol: dict,
                   **options) -> None:
    results = fixture / "results" / tracker
    where = f"{fixture.name}/{tracker}/{convention}{options or ''}"
    _assert_scores(_outcome(annotations, results, convention, **options), expected["overall"], tol, where)
    by_name = {a.name: a for a in annotations}
    for seq, exp_seq in expected["sequences"].items():
        got = _outcome([by_name[seq]], results, convention, **options)
        _assert_scores(got, exp_seq, tol, f"{where}/{seq}")


def test_every_metric_fixture_matches_the_official_toolkits(fixtures_dir: Path) -> None:
    for fixture in metric_fixture_dirs(fixtures_dir):
        expected = json.loads((fixture / "expected.json").read_text())
        annotations = read_annotations(fixture / "dataset", "lasot", expected["sequences"],
                                       fixture / "image_sizes.json")
        pt = expected["pytracking"]
        thresholds = pt["thresholds"]
        np.testing.assert_allclose(metrics_pytracking.OVERLAP_THRESHOLDS, thresholds["overlap"], rtol=0, atol=1e-15)
        np.testing.assert_allclose(metrics_pytracking.CENTER_THRESHOLDS, thresholds["center"], rtol=0, atol=1e-15)
        np.testing.assert_allclose(metrics_pytracking.NORM_CENTER_THRESHOLDS, thresholds["center_norm"],
                                   rtol=0, atol=1e-15)
        pt_tol = {"default": pt["recommended_tolerance"]["scores_and_curves_abs"],
                  "avg_overlap": pt["recommended_tolerance"]["avg_overlap_abs"]}
        got_tol = {"default": expected["got10k"]["recommended_tolerance"]["abs"]}
        tn_tol = {"default": expected["trackingnet"]["recommended_tolerance"]["abs"]}
        for tracker in expected["trackers"]:
            for variant, exclude in (("default", False), ("exclude_invalid_frames", True)):
                _check_tracker(fixture, annotations, tracker, pt[variant][tracker], "pytracking", pt_tol,
                               exclude_invalid_frames=exclude)
            _check_tracker(fixture, annotations, tracker, expected["got10k"]["trackers"][tracker], "got10k", got_tol)
            _check_tracker(fixture, annotations, tracker, expected["trackingnet"]["trackers"][tracker],
                           "trackingnet", tn_tol)


# ----------------------------------------------------------------------------------------------
# Sanity cases (spec tracking_ecosystem §8.4) and single rules
# ----------------------------------------------------------------------------------------------


def _track(n: int = 40, seed: int = 0) -> np.ndarray:
    """A random-walk GT track of positive integer boxes."""
    rng = np.random.default_rng(seed)
    xy = 100 + np.cumsum(rng.integers(-3, 4, size=(n, 2)), 0)
    wh = 30 + rng.integers(0, 10, size=(n, 2))
    return np.concatenate([xy, wh], 1).astype(np.float64)


def _pytracking(pred, gt, visible=None, **kw) -> dict:
    return metrics_pytracking.sequence_scores(metrics_pytracking.sequence_curves(pred, gt, visible, **kw))


def test_identity_predictions_score_the_protocol_maxima() -> None:
    gt = _track()
    pt = _pytracking(gt, gt, np.ones(len(gt), bool))
    assert pt["AUC"] == pytest.approx(100 * 20 / 21, abs=1e-4)  # S(1.0) = 0: 95.24, not 100
    assert pt["Precision"] == pt["NormPrecision"] == pt["OP50"] == pt["OP75"] == pytest.approx(100)
    assert metrics_got10k.summarize(metrics_got10k.sequence_ious(gt, gt, None, (640, 480)))["AO"] == pytest.approx(1)
    strict = metrics_trackingnet.sequence_scores(metrics_trackingnet.sequence_curves(gt, gt, strict_success=True))
    current = metrics_trackingnet.sequence_scores(metrics_trackingnet.sequence_curves(gt, gt))
    assert strict["Success"] == pytest.approx(97.5)  # devkit before its >= change (spec §8.4)
    assert current["Success"] == pytest.approx(100.0)  # current devkit: IoU >= 1 counts
    assert current["Precision"] == current["NormPrecision"] == pytest.approx(100.0)


@pytest.mark.parametrize("bad", ["nan", "negative_w", "negative_h_on_extra_line"])
def test_pytracking_rejects_invalid_results(bad: str) -> None:
    gt = _track(10)
    pred = np.concatenate([gt, gt[-1:]]) if bad == "negative_h_on_extra_line" else gt.copy()
    pred[{"nan": (3, 0), "negative_w": (4, 2), "negative_h_on_extra_line": (10, 3)}[bad]] = \
        np.nan if bad == "nan" else -1
    with pytest.raises(InvalidResultsError):
        metrics_pytracking.sequence_curves(pred, gt)


def test_pytracking_truncates_extra_lines_and_rejects_missing_ones() -> None:
    gt = _track(20)
    pred = gt + 2
    exact = metrics_pytracking.sequence_curves(pred, gt)
    longer = metrics_pytracking.sequence_curves(np.concatenate([pred, pred[:5] * 3]), gt)
    np.testing.assert_array_equal(exact.success, longer.success)
    with pytest.raises(InvalidResultsError):
        metrics_pytracking.sequence_curves(pred[:-1], gt)
    padded = metrics_pytracking.sequence_curves(pred[:-1], gt, dataset="otb")  # other datasets zero-pad
    assert padded.success[0] == pytest.approx(exact.success[0] - 1 / len(gt))


def test_zero_size_boxes_cascade_before_the_first_frame_is_reset() -> None:
    gt = _track(6)
    pred = gt + 1
    pred[2, 2] = 0  # zero width, then zero height right after: both take frame 1's box
    pred[3, 3] = 0
    pred[1, 2] = 0  # frame 1 takes the tracker's own frame 0, not the GT that replaces it
    out = metrics_pytracking.prepare_predictions(pred, gt)
    np.testing.assert_array_equal(out[0], gt[0])
    for i in (1, 2, 3):
        np.testing.assert_array_equal(out[i], pred[0])
    np.testing.assert_array_equal(out[4:], pred[4:])


def test_absent_and_degenerate_frames_follow_the_pytracking_quirks() -> None:
    gt = _track(20)
    visible = np.ones(20, bool)
    visible[5] = False  # absent: miss everywhere (LaSOT +inf rule)
    gt[9, 0] = 0  # visible but x = 0: invalid -> miss for success/precision, hit for norm. precision
    curves = metrics_pytracking.sequence_curves(gt, gt, visible)
    n = 20
    np.testing.assert_allclose(curves.success[:-1], (n - 2) / n, rtol=1e-6)
    np.testing.assert_allclose(curves.precision, (n - 2) / n, rtol=1e-6)
    np.testing.assert_allclose(curves.norm_precision, (n - 1) / n, rtol=1e-6)
    excluded = metrics_pytracking.sequence_curves(gt, gt, visible, exclude_invalid_frames=True)
    np.testing.assert_allclose(excluded.norm_precision, (n - 1) / (n - 2), rtol=1e-6)  # above 100 %
    assert metrics_pytracking.frame_errors(gt, gt, visible).valid.sum() == n - 2
    ostrack = metrics_pytracking.sequence_curves(gt, gt, visible, require_positive_xy=False)
    np.testing.assert_allclose(ostrack.precision, (n - 1) / n, rtol=1e-6)  # OSTrack checks w, h only


def test_pytracking_centre_and_iou_use_the_inclusive_pixel_convention() -> None:
    gt = np.array([[10.0, 20.0, 10.0, 4.0]] * 2)
    pred = np.array([[10.0, 20.0, 10.0, 4.0], [15.0, 20.0, 10.0, 4.0]])
    err = metrics_pytracking.frame_errors(pred, gt)
    assert err.iou[1] == pytest.approx(20 / 60)
    assert err.center_error[1] == pytest.approx(5.0)
    assert err.norm_center_error[1] == pytest.approx(0.5)


def test_got10k_excludes_frame0_and_absent_frames_clips_and_pools_frames() -> None:
    gt = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10], [90, 10, 20, 10]], float)
    pred = np.array([[50, 50, 5, 5], [0, 0, 10, 10], [0, 0, 5, 10], [95, 10, 10, 10]], float)
    cover = np.array([8, 8, 0, 8])
    ious = metrics_got10k.sequence_ious(pred, gt, cover, image_size=(100, 50))
    np.testing.assert_allclose(ious, [1.0, 0.5])  # frame 0 and the cover-0 frame dropped; GT cut at x=100
    shifted = metrics_got10k.frame_ious(np.array([[-5.0, 0, 10, 10]]), np.array([[0.0, 0, 10, 10]]), (100, 100))
    assert shifted[0] == pytest.approx(1.0)  # a box out on the left is shifted into the image, not cut
    pooled = metrics_got10k.summarize(np.concatenate([ious, np.zeros(6)]))
    assert pooled["AO"] == pytest.approx(1.5 / 8)  # frame-pooled, not the mean of sequence means
    assert pooled["SR0.75"] == pytest.approx(1 / 8)


def test_trackingnet_rounds_half_to_even_and_uses_areas() -> None:
    gt = np.array([[12.0, 14.0, 20.0, 20.0]] * 3)
    pred = np.array([[0, 0, 1, 1], [12.5, 13.5, 20.0, 20.0], [13.5, 14.0, 20.0, 20.0]])
    curves = metrics_trackingnet.sequence_curves(pred, gt)
    assert curves.success[-1] == pytest.approx(2 / 3)  # 12.5 -> 12 and 13.5 -> 14: exact; 13.5 -> 14 != 12
    curve = np.linspace(1, 0, 21)
    assert metrics_trackingnet.curve_area(curve) == pytest.approx(50.0)
    float_gt = metrics_trackingnet.sequence_curves(np.array([[0, 0, 1, 1], [12, 14, 20, 20]]), gt[:2] + 0.5)
    assert float_gt.success[-1] == pytest.approx(1.0)  # the GT is rounded too (12.5 -> 12, 14.5 -> 14)
    short = metrics_trackingnet.sequence_curves(pred[:2], gt)  # a missing line is a miss, not an error
    assert short.precision[-1] == pytest.approx(2 / 3) and short.covered_frames == 2


# ----------------------------------------------------------------------------------------------
# torchmetrics wrappers
# ----------------------------------------------------------------------------------------------


def _sequences(k: int = 4) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    out = []
    for s in range(k):
        gt = _track(15 + 5 * s, seed=s)
        rng = np.random.default_rng(100 + s)
        pred = gt + rng.normal(0, 4 + 2 * s, gt.shape)
        pred[:, 2:] = np.abs(pred[:, 2:])
        visible = rng.random(len(gt)) > 0.1
        visible[0] = True
        out.append((pred, gt, visible))
    return out


@pytest.mark.parametrize("convention", ["pytracking", "got10k", "trackingnet"])
def test_metric_states_merged_across_ranks_equal_one_process(convention: str) -> None:
    seqs = _sequences()
    single = build_ope_metric(convention, return_curves=True)
    rank0, rank1 = build_ope_metric(convention, return_curves=True), build_ope_metric(convention, return_curves=True)
    for i, (pred, gt, vis) in enumerate(seqs):
        single.update(pred, gt, vis, image_size=(320, 240), name=f"s{i}")
        (rank0 if i % 2 else rank1).update(pred, gt, vis, image_size=(320, 240), name=f"s{i}")
    rank0.merge_state(rank1)  # applies each state's dist_reduce_fx, as a DDP sync does
    expected, got = single.compute(), rank0.compute()
    assert set(got) == set(expected)
    for key in expected:
        np.testing.assert_allclose(got[key].numpy(), expected[key].numpy(), atol=1e-5, err_msg=key)
    assert int(got["num_sequences"]) == len(seqs)


def test_pytracking_metric_equals_the_functional_core_and_names_bad_sequences() -> None:
    import torch

    seqs = _sequences()
    metric = build_ope_metric("pytracking")
    for pred, gt, vis in seqs:
        metric.update(torch.as_tensor(pred), torch.as_tensor(gt), torch.as_tensor(vis))
    curves = [metrics_pytracking.sequence_curves(p, g, v) for p, g, v in seqs]
    ref = metrics_pytracking.summarize(*(np.stack([getattr(c, k) for c in curves])
                                         for k in ("success", "precision", "norm_precision")))
    out = metric.compute()
    assert all(out[k].ndim == 0 for k in out)  # ready for log_dict
    for key in ("AUC", "OP50", "OP75", "Precision", "NormPrecision"):
        assert float(out[key]) == pytest.approx(ref[key], abs=1e-9)
    bad = seqs[0][0].copy()
    bad[3, 2] = -4
    with pytest.raises(InvalidResultsError, match="airplane-1"):
        metric.update(bad, seqs[0][1], name="airplane-1")
    with pytest.raises(ValueError, match="convention"):
        build_ope_metric("vot")
