"""`lightning pipeline`: stage order, checkpoint passing, preset companions, reuse, evaluation and its table.

`lightning fit` / `lightning test` are replaced by a fake runner that writes what they would write
(the stage checkpoint, the test's metrics.json); no network is trained here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lightning_app.pipeline.chain import Chain, Comparison, Stage, load_chain
from lightning_app.config_loading import build_model_from_configs
from lightning_app.pipeline.evaluate import NoTracker, StageEval, headline_scores, measure_speed
from lightning_app.pipeline.report import format_comparisons, format_spreads, format_summary, write_summary
from lightning_app.pipeline.runner import StageJob, run_chain
from trackers.errors import SetupError
from trackers.evaluation.speed import SpeedReport

REPO = Path(__file__).resolve().parents[1]


def _arg(cmd: list[str], flag: str) -> str:
    return next(a.split("=", 1)[1] for a in cmd if a.startswith(f"{flag}="))


def _configs(cmd: list[str]) -> list[str]:
    return [cmd[i + 1] for i, a in enumerate(cmd) if a == "--config"]


class FakeLightning:
    """Stands in for the `lightning fit` / `lightning test` subprocesses of the stages."""

    def __init__(self, failing_tests: tuple[str, ...] = ()) -> None:
        self.calls: list[list[str]] = []
        self.failing_tests = failing_tests

    def __call__(self, cmd: list[str]) -> int:
        self.calls.append(cmd)
        stage = Path(_arg(cmd, "--trainer.default_root_dir")).name
        if cmd[3] == "fit":
            out = Path(_arg(cmd, "--trainer.callbacks.path"))
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(b"ckpt")
            return 0
        if stage in self.failing_tests:
            return 1
        raw = Path(_arg(cmd, "--model.init_args.results_dir")) / "synthtrack" / "tiny"
        raw.mkdir(parents=True, exist_ok=True)
        auc = 10.0 * (len(self.calls))  # a different score per call
        scores = {"AUC": auc, "OP50": 1.0, "Precision": auc + 1, "NormPrecision": auc + 2}
        (raw / "metrics.json").write_text(json.dumps({"benchmark": "synthtrack", "metrics": {"pytracking": scores}}))
        return 0

    def stages(self, subcommand: str) -> list[str]:
        return [Path(_arg(c, "--trainer.default_root_dir")).name for c in self.calls if c[3] == subcommand]


def fake_speed(job) -> SpeedReport:  # noqa: ANN001
    return SpeedReport(job.name, params_m=1.5, gflops=0.2, gmacs=0.1, latency_ms_median=4.0, latency_ms_p90=5.0,
                       fps=250.0, device="cpu")


@pytest.fixture
def chain(tmp_path: Path) -> Chain:
    return Chain(
        "toy",
        tmp_path / "root",
        (
            Stage("a", "a.yaml"),
            Stage("b", "b.yaml", {"model.init_args.teacher_checkpoint": "a"}),
            Stage("c", "c.yaml", {"model.init_args.init_checkpoint": "b"}),
        ),
    )


def test_stages_run_in_order_each_fed_by_the_previous_checkpoint_then_evaluated(chain):
    fake = FakeLightning()
    run = run_chain(chain, extra_configs=["smoke.yaml"], runner=fake, measure=fake_speed)
    assert [(c[3], Path(_arg(c, "--trainer.default_root_dir")).name) for c in fake.calls] == [
        ("fit", "a"), ("test", "a"), ("fit", "b"), ("test", "b"), ("fit", "c"), ("test", "c"),
    ]  # fmt: skip
    fit_b, test_b = fake.calls[2], fake.calls[3]
    assert run.checkpoints["a"] == str(chain.root / "a" / "final.ckpt")
    assert _arg(fit_b, "--model.init_args.teacher_checkpoint") == run.checkpoints["a"]
    assert _arg(fake.calls[4], "--model.init_args.init_checkpoint") == run.checkpoints["b"]
    assert _configs(fit_b) == _configs(test_b) == ["b.yaml", "smoke.yaml"]
    assert _arg(test_b, "--model.init_args.teacher_checkpoint") == run.checkpoints["a"]  # a student needs its teacher
    assert _arg(test_b, "--ckpt_path") == run.checkpoints["b"]
    assert _arg(test_b, "--model.init_args.results_dir") == str(chain.root / "b" / "results")
    assert not any(a.startswith("--trainer.callbacks") for a in test_b)
    assert json.loads((chain.root / "b" / "stage.json").read_text())["checkpoint"] == run.checkpoints["b"]
    assert run.evaluations["b"].scores == {"AUC": 40.0, "Precision": 41.0, "NormPrecision": 42.0}
    assert run.evaluations["b"].speed.fps == 250.0 and run.evaluations["b"].notes == []


def test_until_stops_and_no_eval_skips_evaluation(chain):
    fake = FakeLightning()
    run = run_chain(chain, until="b", evaluate=False, runner=fake, measure=fake_speed)
    assert fake.stages("fit") == ["a", "b"] and fake.stages("test") == []
    assert list(run.checkpoints) == ["a", "b"] and run.evaluations == {}


def test_use_replaces_a_stage_by_an_official_checkpoint(chain, tmp_path):
    official = tmp_path / "mixformer_vit_base_online.pth.tar"
    official.write_bytes(b"x")
    fake = FakeLightning()
    run = run_chain(chain, use={"a": str(official)}, runner=fake, measure=fake_speed)
    assert fake.stages("fit") == ["b", "c"] and fake.stages("test") == ["b", "c"]
    assert _arg(fake.calls[0], "--model.init_args.teacher_checkpoint") == str(official)
    assert run.evaluations["a"].notes == ["given checkpoint, not evaluated"] and run.evaluations["a"].speed is None
    with pytest.raises(SetupError, match="does not exist"):
        run_chain(chain, use={"a": str(tmp_path / "missing.pth.tar")}, runner=fake, measure=fake_speed)
    with pytest.raises(SetupError, match="no stage 'z'"):
        run_chain(chain, use={"z": str(official)}, runner=fake, measure=fake_speed)


def test_finished_stages_are_reused_rerun_on_request_and_refused_when_made_otherwise(chain):
    fake = FakeLightning()
    first = run_chain(chain, extra_configs=["smoke.yaml"], runner=fake, measure=fake_speed)
    stale = chain.root / "b" / "results" / "synthtrack" / "tiny" / "seq-1.txt"
    stale.write_text("1 2 3 4\n")
    fake.calls.clear()
    again = run_chain(chain, extra_configs=["smoke.yaml"], runner=fake, measure=fake_speed)
    assert again.checkpoints == first.checkpoints
    assert fake.stages("fit") == [] and fake.stages("test") == ["a", "b", "c"]  # reused, still evaluated
    assert stale.is_file()  # the test resumes from the same checkpoint's results
    fake.calls.clear()
    run_chain(chain, extra_configs=["smoke.yaml"], rerun=["b"], runner=fake, measure=fake_speed)
    assert fake.stages("fit") == ["b"]
    assert not stale.exists()  # results of the replaced checkpoint are not resumed
    with pytest.raises(SetupError, match="other configs"):
        run_chain(chain, runner=fake, measure=fake_speed)


def test_failed_training_stops_the_chain_and_is_not_recorded(chain):
    def runner(cmd: list[str]) -> int:
        return 1 if Path(_arg(cmd, "--trainer.default_root_dir")).name == "b" else FakeLightning()(cmd)

    with pytest.raises(SetupError, match="stage 'b' failed"):
        run_chain(chain, runner=runner, measure=fake_speed)
    assert (chain.root / "a" / "stage.json").is_file() and not (chain.root / "b" / "stage.json").exists()


def test_evaluation_failures_are_reported_and_the_chain_goes_on(chain):
    def speed(job) -> SpeedReport:  # noqa: ANN001
        if job.name == "c":
            raise RuntimeError("size mismatch for network.blocks.0\nmore detail")
        return fake_speed(job)

    run = run_chain(chain, runner=FakeLightning(failing_tests=("b",)), measure=speed)
    assert list(run.checkpoints) == ["a", "b", "c"]
    assert run.evaluations["b"].scores == {} and "exited with status 1" in run.evaluations["b"].notes[0]
    assert run.evaluations["c"].speed is None and run.evaluations["c"].scores["AUC"] > 0
    assert run.evaluations["c"].notes == ["latency failed: RuntimeError: size mismatch for network.blocks.0"]
    table = format_summary(run.evaluations).splitlines()
    assert "test failed" in table[3] and "latency failed" in table[4]


def test_a_stage_without_tracker_is_neither_timed_nor_tested(chain):
    def speed(job) -> SpeedReport:  # noqa: ANN001
        if job.name == "a":
            raise NoTracker(job.name)
        return fake_speed(job)

    fake = FakeLightning()
    run = run_chain(chain, runner=fake, measure=speed)
    assert fake.stages("test") == ["b", "c"]
    assert run.evaluations["a"].notes == ["no tracker"] and run.evaluations["a"].scores == {}
    assert format_summary(run.evaluations).splitlines()[2].split() == ["a", *"-" * 6, "no", "tracker"]


def test_companion_fragments_follow_their_preset_matched_by_resolved_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "presets").mkdir()
    stage = Stage("b", "b.yaml", configs=("always.yaml",), presets={"presets/smoke.yaml": ("presets/smoke_b.yaml",)})
    assert stage.config_files(["first.yaml", "./presets/../presets/smoke.yaml", "last.yaml"]) == [
        "b.yaml", "always.yaml", "first.yaml", "./presets/../presets/smoke.yaml", "presets/smoke_b.yaml", "last.yaml",
    ]  # fmt: skip
    assert stage.config_files([str(tmp_path / "presets" / "smoke.yaml")])[-1] == "presets/smoke_b.yaml"
    assert stage.config_files(["presets/other.yaml"]) == ["b.yaml", "always.yaml", "presets/other.yaml"]

    chain = Chain("toy", tmp_path / "root", (Stage("a", "a.yaml"), stage))
    fake = FakeLightning()
    run_chain(chain, stage_configs={"b": ["presets/smoke.yaml"]}, runner=fake, measure=fake_speed)
    assert [_configs(c) for c in fake.calls] == [
        ["a.yaml"], ["a.yaml"],
        ["b.yaml", "always.yaml", "presets/smoke.yaml", "presets/smoke_b.yaml"],
        ["b.yaml", "always.yaml", "presets/smoke.yaml", "presets/smoke_b.yaml"],
    ]  # fmt: skip


def test_chain_yaml_presets_are_read_and_checked(tmp_path):
    path = tmp_path / "chain.yaml"
    path.write_text(
        "stages:\n"
        "  - {name: a, config: a.yaml}\n"
        "  - {name: b, config: b.yaml, inputs: {model.init_args.teacher_checkpoint: a},\n"
        "     presets: {p.yaml: [p_b.yaml]}}\n"
    )
    assert load_chain(str(path)).stage("b").presets == {"p.yaml": ("p_b.yaml",)}
    path.write_text("stages:\n  - {name: a, config: a.yaml, presets: {p.yaml: p_b.yaml}}\n")
    with pytest.raises(SetupError, match="presets"):
        load_chain(str(path))
    path.write_text("stages:\n  - {name: a, config: a.yaml, inputs: {model.init_args.teacher_checkpoint: b}}\n")
    with pytest.raises(SetupError, match="not an earlier stage"):
        load_chain(str(path))


@pytest.mark.parametrize("name", ["mixformerv2_b", "mixformerv2_s"])
def test_shipped_chains_name_existing_configs_and_cpu_smoke_companions(name, monkeypatch):
    monkeypatch.chdir(REPO)
    chain = load_chain(name)
    smoke = "configs/presets/cpu_smoke.yaml"
    for stage in chain.stages:
        files = stage.config_files([smoke])
        assert all((REPO / f).is_file() for f in files), files
        assert files[:3] == [stage.config, smoke, "configs/presets/cpu_smoke_mixformerv2/chain.yaml"]
        if stage.name != "mixvit_b":  # cpu_smoke alone shrinks the MixViT teacher run; MixFormerV2 bins follow the teacher
            assert files[3] == "configs/presets/cpu_smoke_mixformerv2/bins.yaml"
            assert all(f.startswith("configs/presets/cpu_smoke_mixformerv2/") for f in files[4:])


def test_summary_table_from_given_metrics():
    speed = SpeedReport("b", params_m=0.52, gflops=0.3, gmacs=0.15, latency_ms_median=3.214, latency_ms_p90=4.0,
                        fps=311.1, device="cpu")
    table = format_summary({
        "a": StageEval({"AUC": 61.234, "Precision": 60.0, "NormPrecision": 70.5}, speed),
        "b": StageEval(notes=["given checkpoint, not evaluated"]),
    }).splitlines()
    assert table[0].split() == ["stage", "AUC", "Precision", "NormPrecision", "latency", "ms", "FPS", "params(M)",
                                "note"]
    assert table[2].split() == ["a", "61.23", "60.00", "70.50", "3.21", "311.1", "0.520"]
    assert table[3].split()[:7] == ["b", "-", "-", "-", "-", "-", "-"] and table[3].endswith("not evaluated")
    assert "cpu" in table[-1]


def test_headline_scores_prefer_pytracking_and_refuse_server_scored_benchmarks():
    record = {"metrics": {"got10k": {"AO": 50.0}, "pytracking": {"AUC": 55.0, "Precision": 50.0, "OP50": 1.0}}}
    assert headline_scores(record) == {"AUC": 55.0, "Precision": 50.0}
    with pytest.raises(SetupError, match="got10k_test"):
        headline_scores({"benchmark": "got10k_test", "metrics": {}})


def test_speed_is_measured_on_the_model_of_the_fit_command_line(tmp_path):
    """The in-process measurement gets the same inputs and extra arguments as the stage's `fit`."""
    job = StageJob("b", ("b.yaml", "smoke.yaml"), {"model.init_args.teacher_checkpoint": "t.ckpt"}, tmp_path / "b",
                   ("--model.init_args.network.init_args.depth=2", "--trainer.max_epochs", "2"))
    fit = job.fit_command()
    assert job.override_args() == ["--model.init_args.teacher_checkpoint=t.ckpt",
                                   "--model.init_args.network.init_args.depth=2", "--trainer.max_epochs", "2"]
    assert all(arg in fit for arg in job.override_args())
    assert _configs(fit) == list(job.configs)


def test_speed_of_a_trained_stage_is_measured_on_its_restored_checkpoint(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    configs = ("configs/ostrack_256.yaml", "configs/presets/cpu_smoke.yaml")
    network = "--model.init_args.network.init_args"
    job = StageJob("ostrack", configs, {}, tmp_path / "ostrack",
                   (f"{network}.depth=3", f"{network}.ce_loc=[1]", f"{network}.ce_keep_ratio=[0.7]"))
    trained = build_model_from_configs(list(configs), job.override_args())
    job.stage_dir.mkdir(parents=True)
    torch.save({"state_dict": trained.state_dict()}, job.checkpoint)
    report = measure_speed(job, warmup=0, iters=1)
    assert report.name == "ostrack" and report.latency_ms_median > 0
    assert round(report.params_m * 1e6) == sum(p.numel() for p in trained.network.parameters())
    job.checkpoint.write_bytes(b"not a checkpoint")
    with pytest.raises(Exception):  # noqa: B017 - reported as "latency failed" by evaluate_stage
        measure_speed(job, warmup=0, iters=1)


def test_comparisons_are_checked_and_printed_with_difference_and_ratio(tmp_path):
    path = tmp_path / "chain.yaml"
    stages = "stages:\n  - {name: a, config: a.yaml}\n  - {name: b, config: b.yaml}\n  - {name: c, config: c.yaml}\n"
    path.write_text(stages + "comparisons:\n  - {label: '(b) pruned', stage: b, baseline: a}\n")
    chain = load_chain(str(path))
    assert chain.comparisons == (Comparison("(b) pruned", "b", "a"),)
    path.write_text(stages + "comparisons:\n  - {label: x, stage: b, baseline: z}\n")
    with pytest.raises(SetupError, match="'z', which is not a stage"):
        load_chain(str(path))
    evaluations = {"a": StageEval({"AUC": 40.0}), "b": StageEval({"AUC": 38.5}), "c": StageEval(notes=["failed"])}
    comparisons = (Comparison("(b) pruned", "b", "a"), Comparison("(c)", "b", "c"))
    toy = Chain("toy", tmp_path / "out", chain.stages, comparisons)
    assert format_comparisons(toy, evaluations) == [
        "(b) pruned: b AUC 38.50 vs a 40.00: -1.50 points, 96.2%",
        "(c): no AUC for c",
    ]
    written = json.loads(write_summary(toy, evaluations).read_text())
    assert written["stages"]["b"]["scores"] == {"AUC": 38.5}
    assert written["comparisons"][0]["line"].endswith("96.2%") and written["comparisons"][0]["ratio"]["values"] == [
        pytest.approx(96.25)]


def test_seeded_chain_runs_each_arm_per_seed_from_the_same_seeds_inputs_and_reports_spreads(tmp_path):
    chain = Chain(
        "toy", tmp_path / "root",
        (Stage("t", "t.yaml", shared=True), Stage("a", "a.yaml", {"model.init_args.teacher_checkpoint": "t"}),
         Stage("b", "b.yaml", {"model.init_args.teacher_checkpoint": "a"})),
        (Comparison("b vs a", "b", "a"), Comparison("b vs t", "b", "t")),
        seeds=(3, 7), baselines={"first_box": "first_box.yaml"},
    )  # fmt: skip
    fake = FakeLightning()
    run = run_chain(chain, runner=fake, measure=fake_speed)
    fits = [c for c in fake.calls if c[3] == "fit"]
    assert [str(Path(_arg(c, "--trainer.default_root_dir")).relative_to(chain.root)) for c in fits] == [
        "t", "a/seed3", "a/seed7", "b/seed3", "b/seed7"]
    assert [_arg(c, "--seed_everything") for c in fits[1:]] == ["3", "7", "3", "7"]
    assert not any(a.startswith("--seed_everything") for a in fits[0])  # the shared stage keeps its config's seed
    assert _arg(fits[1], "--model.init_args.teacher_checkpoint") == run.checkpoints["t"]
    assert _arg(fits[4], "--model.init_args.teacher_checkpoint") == run.checkpoints["a/seed7"]
    baseline = fake.calls[-1]
    assert baseline[3] == "test" and _configs(baseline) == ["t.yaml", "first_box.yaml"]
    assert not any(a.startswith("--ckpt_path") for a in baseline)
    assert run.evaluations["first_box"].notes == ["baseline"]

    evaluations = {"t": StageEval({"AUC": 50.0}), "a/seed3": StageEval({"AUC": 40.0}),
                   "a/seed7": StageEval({"AUC": 44.0}), "b/seed3": StageEval({"AUC": 30.0}),
                   "b/seed7": StageEval({"AUC": 34.0}), "first_box": StageEval({"AUC": 5.0}, notes=["baseline"])}
    lines = format_comparisons(chain, evaluations)
    assert lines[0] == "b vs a: b AUC 32.00 +- 2.83 (30.00, 34.00) vs a 42.00 +- 2.83 (40.00, 44.00): " \
                       "-10.00 +- 0.00 (-10.00, -10.00) points, 76.1 +- 1.6% (75.0, 77.3)"
    assert lines[1].startswith("b vs t: b AUC 32.00 +- 2.83 (30.00, 34.00) vs t 50.00 +- 0.00 (50.00, 50.00)")
    spreads = format_spreads(chain, evaluations)
    assert spreads[1] == "a: AUC 42.00 +- 2.83 (40.00, 44.00); 8.40 +- 0.57x (8.00, 8.80) first_box"
    summary = json.loads(write_summary(chain, evaluations).read_text())
    assert summary["auc_over_seeds"]["b"] == {"mean": 32.0, "std": pytest.approx(2.828, abs=1e-3),
                                              "values": [30.0, 34.0]}
    assert summary["baseline_multiples"]["first_box"]["t"]["values"] == [10.0]
    assert summary["comparisons"][0]["difference"]["values"] == [-10.0, -10.0]


def test_chain_yaml_seeds_shared_stages_and_baselines_are_read_and_checked(tmp_path):
    path = tmp_path / "chain.yaml"
    stages = "stages:\n  - {name: t, config: t.yaml, shared: true}\n  - {name: a, config: a.yaml}\n"
    path.write_text(stages + "seeds: [0, 1]\nbaselines: {first_box: f.yaml}\n")
    chain = load_chain(str(path))
    assert chain.seeds == (0, 1) and chain.baselines == {"first_box": "f.yaml"} and chain.stage("t").shared
    assert chain.stage_seeds("t") == (None,) and chain.instance("a", 1) == "a/seed1" and chain.instance("t", 1) == "t"
    for bad in ("seeds: [0, 0]\n", "seeds: 2\n", "baselines: {a: f.yaml}\n"):
        path.write_text(stages + bad)
        with pytest.raises(SetupError, match="seeds|baselines"):
            load_chain(str(path))


def test_the_miniature_ablation_chain_compares_its_arms(monkeypatch):
    monkeypatch.chdir(REPO)
    chain = load_chain("mixformerv2_mini_ablation")
    assert {(c.stage, c.baseline) for c in chain.comparisons} == {
        ("stage1_kd", "stage1_no_kd"), ("depth_progressive", "stage1_kd"), ("depth_progressive", "depth_kept_init")}
    for stage in chain.stages:
        assert all((REPO / f).is_file() for f in stage.config_files()), stage.name


def test_seed_option_runs_one_seed_of_a_seeded_chain(tmp_path, capsys):
    from lightning_app.commands.pipeline import main

    path = tmp_path / "chain.yaml"
    path.write_text("seeds: [0, 1]\nstages:\n  - {name: t, config: t.yaml, shared: true}\n"
                    "  - {name: a, config: a.yaml, inputs: {model.init_args.teacher_checkpoint: t}}\n")
    assert main([str(path), "--root", str(tmp_path / "out"), "--seed", "1", "--dry-run", "--no-eval"]) == 0
    printed = [line.split(":")[0] for line in capsys.readouterr().out.splitlines() if line.startswith("[pipeline]")]
    assert printed == ["[pipeline] t", "[pipeline] a/seed1"]
    with pytest.raises(SetupError, match="--seed 5: chain chain has seeds"):
        main([str(path), "--seed", "5", "--dry-run"])
