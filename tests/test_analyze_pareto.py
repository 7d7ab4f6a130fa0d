"""`lightning analyze --pareto`: front marking (ties, dominated points), the join of metrics.json with speed
records (tracker and model JSON, record selection), one-line errors, and the plot / table / JSON it writes."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lightning_app.cli import main as lightning
from trackers.errors import SetupError
from trackers.evaluation.pareto import (
    TRACKER_SPEED_FILE,
    mark_front,
    pareto_points,
    parse_point_spec,
)
from trackers.evaluation.plots import FRONT_COLOR, OFF_FRONT_COLOR
from trackers.evaluation.result_files import METRICS_FILE


def _results(root: Path, name: str, auc: float, benchmark: str = "synthtrack", run: str | None = None) -> Path:
    """A results folder as `lightning test` leaves it: <run>/results/<benchmark>/<tracker>/metrics.json."""
    folder = root / (run or name) / "results" / benchmark / name
    folder.mkdir(parents=True)
    record = {"benchmark": benchmark, "tracker": name,
              "metrics": {"pytracking": {"AUC": auc, "Precision": auc + 1.0, "num_sequences": 3.0}}}
    (folder / METRICS_FILE).write_text(json.dumps(record))
    return folder


def _tracker_record(name: str, fps: float, precision: str = "fp32", backend: str = "torch") -> dict:
    """A `lightning benchmark tracker --json` record (the contract's keys)."""
    timing = {"median_ms": 1e3 / fps, "p10_ms": 1.0, "p90_ms": 2.0, "p99_ms": 3.0, "mean_ms": 1e3 / fps}
    return {"name": name, "precision": precision, "backend": backend, "device": "cpu", "fps": fps,
            "network_fps": 2 * fps, "end_to_end": timing, "network": timing, "overhead_share": 0.2,
            "environment": {"threads": 2}}


def _model_record(name: str, fps: float) -> dict:
    """A `lightning benchmark model --json` record (SpeedReport.as_dict: no precision / backend)."""
    return {"name": name, "params_m": 1.0, "gflops": 0.1, "gmacs": 0.05, "latency_ms_median": 1e3 / fps,
            "latency_ms_p90": 1e3 / fps, "fps": fps, "device": "cpu"}


def _rgb(color: str) -> np.ndarray:
    return np.array([int(color[i:i + 2], 16) for i in (1, 3, 5)])


def _has_color(img: np.ndarray, color: str, tol: int = 12) -> bool:
    return bool((np.abs(img[..., :3].astype(int) - _rgb(color)).max(axis=-1) <= tol).any())


def test_front_keeps_undominated_points_and_ties() -> None:
    scores = [50.0, 40.0, 40.0, 30.0, 50.0, 20.0, 45.0]
    fps = [100.0, 200.0, 200.0, 150.0, 90.0, 300.0, 100.0]
    # 0: best AUC at 100 FPS; 1 and 2: equal (neither dominates the other); 3: beaten by 1 on both;
    # 4: same AUC as 0 but slower; 5: fastest; 6: same FPS as 0 with lower AUC.
    assert mark_front(scores, fps) == [True, True, True, False, False, True, False]
    assert mark_front([10.0], [5.0]) == [True]
    assert mark_front([], []) == []


def test_point_specs_name_folders_speed_files_and_selectors(tmp_path: Path) -> None:
    spec = parse_point_spec("student=runs/a,speed/s.json,precision=int8,record=2")
    assert (spec.name, spec.results, spec.speed_json) == ("student", Path("runs/a"), Path("speed/s.json"))
    assert spec.select == (("precision", "int8"), ("record", "2"))
    bare = parse_point_spec("runs/ostrack")
    assert (bare.name, bare.speed_json, bare.select) == ("ostrack", None, ())
    assert parse_point_spec("runs/x/metrics.json").name == "x"
    with pytest.raises(SetupError, match="colour=red"):
        parse_point_spec("a=runs/a,s.json,colour=red")


def test_points_join_metrics_with_tracker_and_model_records(tmp_path: Path) -> None:
    teacher = _results(tmp_path, "teacher", 60.0)
    student = _results(tmp_path, "student", 55.0)
    baseline = _results(tmp_path, "slow", 50.0)
    # the tracker JSON beside metrics.json (the default), with three precisions of one tracker
    (student / TRACKER_SPEED_FILE).write_text(json.dumps([
        _tracker_record("student", 100.0), _tracker_record("student", 180.0, "bf16"),
        _tracker_record("student", 250.0, "int8")]))
    model_json = tmp_path / "model_speed.json"
    model_json.write_text(json.dumps([_model_record("teacher_cfg", 40.0), _model_record("slow_cfg", 30.0),
                                      {"early_exit": "section without name/fps"}]))
    specs = [parse_point_spec(s) for s in (
        f"teacher={tmp_path / 'teacher'},{model_json},record=teacher_cfg",  # a run folder: metrics.json found below
        f"student_int8={student},precision=int8",
        f"student_bf16={student / METRICS_FILE},precision=bf16,backend=torch",
        f"slow={baseline},{model_json},record=2")]
    points = {p.name: p for p in pareto_points(specs)}
    assert points["teacher"].metrics_file == str(teacher / METRICS_FILE)
    assert (points["teacher"].score, points["teacher"].fps) == (60.0, 40.0)
    assert (points["teacher"].precision, points["teacher"].backend, points["teacher"].timing) == ("fp32", "torch",
                                                                                                  "network")
    assert (points["student_int8"].fps, points["student_int8"].precision) == (250.0, "int8")
    assert points["student_int8"].timing == "end-to-end"
    assert points["student_bf16"].label == "student_bf16"  # the name carries its runtime already
    assert dataclasses.replace(points["student_bf16"], name="student").label == "student (bf16, torch)"
    assert (points["slow"].fps, points["slow"].speed_record) == (30.0, "slow_cfg")
    assert {n: p.on_front for n, p in points.items()} == {"teacher": True, "student_int8": True,
                                                          "student_bf16": False, "slow": False}


def test_runs_at_other_precisions_find_their_record_in_the_fp32_folder(tmp_path: Path) -> None:
    """`benchmark tracker` writes every precision's record beside the fp32 results, named like the
    results folders that `lightning test --precision/--backend` suffixes."""
    fp32 = _results(tmp_path, "ostrack", 60.0, run="run")
    int8 = _results(tmp_path, "ostrack_int8", 59.0, run="run")
    ort = _results(tmp_path, "ostrack_int8_onnxruntime", 58.5, run="run")
    (fp32 / TRACKER_SPEED_FILE).write_text(json.dumps([
        _tracker_record("ostrack", 100.0), _tracker_record("ostrack_bf16", 150.0, "bf16"),
        _tracker_record("ostrack_int8", 200.0, "int8"),
        _tracker_record("ostrack_int8_onnxruntime", 90.0, "int8", "onnxruntime")]))
    points = pareto_points([parse_point_spec(f"{n}={d}") for n, d in (("fp32", fp32), ("int8", int8),
                                                                      ("ort", ort))])
    assert [(p.fps, p.precision, p.backend) for p in points] == [(100.0, "fp32", "torch"), (200.0, "int8", "torch"),
                                                                  (90.0, "int8", "onnxruntime")]
    assert {p.speed_file for p in points} == {str(fp32 / TRACKER_SPEED_FILE)}
    assert [p.on_front for p in points] == [True, True, False]


def test_missing_and_broken_inputs_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    student = _results(tmp_path, "student", 55.0)
    (student / TRACKER_SPEED_FILE).write_text(json.dumps([_tracker_record("student", 100.0),
                                                          _tracker_record("student", 200.0, "bf16")]))
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    nothing = tmp_path / "empty_run"
    nothing.mkdir()
    no_speed = _results(tmp_path, "no_speed", 40.0)
    cases = {
        f"a={nothing}": "no metrics.json in or below",
        f"a={tmp_path / 'absent'}": "does not exist",
        f"a={no_speed}": f"no speed JSON {no_speed / TRACKER_SPEED_FILE}",
        f"a={student},{broken}": "is not readable JSON",
        f"a={student}": "2 speed records match any",
        f"a={student},precision=int8": "no speed record matching precision=int8",
    }
    for spec, message in cases.items():
        assert lightning(["analyze", "--pareto", spec]) == 2, spec
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and message in err and "\n" not in err, (spec, err)
    assert lightning(["analyze", "--pareto", f"a={student},precision=bf16", "--score", "got10k.AO"]) == 2
    assert "no metrics.got10k.AO" in capsys.readouterr().err
    lasot = _results(tmp_path, "on_lasot", 50.0, benchmark="lasot")
    (lasot / TRACKER_SPEED_FILE).write_text(json.dumps([_tracker_record("on_lasot", 10.0)]))
    assert lightning(["analyze", "--pareto", f"a={student},precision=bf16", f"b={lasot}"]) == 2
    assert "different benchmarks (a: synthtrack, b: lasot)" in capsys.readouterr().err


def test_command_prints_the_table_and_writes_plot_and_json(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    speeds = {"teacher": (60.0, 50.0), "student": (55.0, 150.0), "pruned": (50.0, 120.0), "tiny": (30.0, 400.0)}
    args = []
    for name, (auc, fps) in speeds.items():
        folder = _results(tmp_path, name, auc)
        (folder / TRACKER_SPEED_FILE).write_text(json.dumps([_tracker_record(name, fps)]))
        args.append(f"{name}={folder}")
    out = tmp_path / "front"
    assert lightning(["analyze", "--pareto", *args, "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["Tracker", "AUC", "FPS"]
    rows = {line.split()[0]: line.split() for line in lines[1:5]}
    assert [line.split()[0] for line in lines[1:5]] == ["teacher", "student", "pruned", "tiny"]  # best AUC first
    assert {n: r[-1] == "*" for n, r in rows.items()} == {"teacher": True, "student": True, "pruned": False,
                                                          "tiny": True}
    written = json.loads((out / "pareto.json").read_text())
    assert written["score"] == "pytracking.AUC"
    assert {p["name"]: p["on_front"] for p in written["points"]} == {"teacher": True, "student": True,
                                                                     "pruned": False, "tiny": True}
    assert {p["name"]: (p["score"], p["fps"]) for p in written["points"]} == speeds
    assert (out / "pareto.txt").read_text().splitlines() == lines[:5]
    img = np.asarray(Image.open(out / "pareto.png").convert("RGB"))
    assert img.shape[0] > 100 and img.shape[1] > 100 and img.std() > 0
    assert _has_color(img, FRONT_COLOR) and _has_color(img, OFF_FRONT_COLOR)  # front and dominated points drawn
