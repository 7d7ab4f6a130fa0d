"""Every config under configs/ parses through the parser `lightning fit` uses, in the context it is made for,
and the tools build exactly what `fit` builds from the same files."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch

from datamodules.datamodule import TrackingDataModule
from lightning_app.cli import run_lightning_cli
from lightning_app.config_loading import (
    CROP_SIZE_LINKS,
    build_datamodule_from_configs,
    build_from_configs,
    build_model_from_configs,
    parse_configs,
)
from lightning_app.pipeline.chain import load_chain
from trackers.errors import SetupError

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
SMOKE = "configs/presets/cpu_smoke.yaml"
SMOKE_MIXFORMERV2 = "configs/presets/cpu_smoke_mixformerv2"
SMOKE_STAGE1 = [SMOKE, f"{SMOKE_MIXFORMERV2}/bins.yaml", f"{SMOKE_MIXFORMERV2}/stage1.yaml"]
EXPERIMENTS = sorted(f"configs/{p.name}" for p in CONFIGS.glob("*.yaml"))
# Value files: the value of one key (a list), loaded where an experiment or fragment names them.
VALUE_DIRS = ("callbacks", "datasets")
# Fragments and the configs they follow (their documented use).
FRAGMENT_CONTEXTS: dict[str, list[str]] = {
    **{f"configs/benchmarks/{p.name}": ["configs/ostrack_256.yaml"] for p in (CONFIGS / "benchmarks").glob("*.yaml")},
    **{f"configs/data/{p.name}": ["configs/ostrack_256.yaml"] for p in (CONFIGS / "data").glob("*.yaml")},
    "configs/baselines/first_box.yaml": ["configs/ostrack_256.yaml"],
    "configs/trainer/wandb.yaml": ["configs/mixformerv2_b.yaml"],
    "configs/presets/full_forward.yaml": ["configs/mixformerv2_b_score.yaml"],
    "configs/presets/ostrack_tiny.yaml": ["configs/ostrack_256.yaml", SMOKE],
    **{f"configs/compresstracker/{p.name}": ["configs/compresstracker_4.yaml"] for p in (CONFIGS / "compresstracker").glob("*.yaml")},
    "configs/presets/cpu_smoke_compresstracker/student.yaml": ["configs/compresstracker_4.yaml", SMOKE],
    "configs/presets/cpu_smoke_compresstracker/teacher.yaml": ["configs/ostrack_256.yaml", SMOKE],
    "configs/presets/dytrack_tiny.yaml": ["configs/dytrack_256.yaml", SMOKE],
    "configs/presets/cpu_smoke_dytrack.yaml": ["configs/dytrack_256.yaml", SMOKE, "configs/presets/dytrack_tiny.yaml"],
    "configs/sweeps/fragments/tiny_run.yaml": ["configs/ostrack_256.yaml", SMOKE, "configs/presets/ostrack_tiny.yaml"],
    "configs/ablations/compresstracker_mini/replacement_2x.yaml": [
        "configs/compresstracker_4.yaml", SMOKE, "configs/ablations/compresstracker_mini/common.yaml"],
}
# Sweep files (`lightning sweep`): every run of each parses with its varied values as overrides.
SWEEPS = sorted(f"configs/sweeps/{p.name}" for p in (CONFIGS / "sweeps").glob("*.yaml"))
DATA_ONLY = ("configs/presets/data_bench_mixformerv2.yaml",)
CHAINS = sorted(p.stem for p in (CONFIGS / "pipelines").glob("*.yaml"))


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)  # configs and chains name each other relative to the checkout


def _chain_cases() -> list[tuple[str, list[str]]]:
    cases = []
    for name in CHAINS:
        for stage in load_chain(str(CONFIGS / "pipelines" / f"{name}.yaml")).stages:
            cases.append((f"{name}:{stage.name}", stage.config_files()))
            if SMOKE not in stage.config_files():
                cases.append((f"{name}:{stage.name}+cpu_smoke", stage.config_files([SMOKE])))
    return cases


CHAIN_CASES = _chain_cases()
PARSE_CASES = (
    [(Path(e).stem, [e]) for e in EXPERIMENTS]
    + [(f"{Path(e).stem}+cpu_smoke", [e, SMOKE]) for e in EXPERIMENTS]
    + [(f"{Path(f).stem} after {'+'.join(Path(c).stem for c in ctx)}", [*ctx, f])
       for f, ctx in FRAGMENT_CONTEXTS.items()]
    + CHAIN_CASES
)


def _value(cfg, key: str):  # noqa: ANN001, ANN202 - a jsonargparse Namespace and whatever it holds
    node = cfg
    for part in key.split("."):
        node = getattr(node, part, None) if node is not None else None
    return node


@pytest.mark.parametrize("configs", [c for _, c in PARSE_CASES], ids=[name for name, _ in PARSE_CASES])
def test_config_parses_with_the_crop_sizes_linked(configs: list[str]) -> None:
    cfg = parse_configs(configs)
    assert cfg.model is not None and cfg.data is not None
    for source, targets in CROP_SIZE_LINKS.items():
        size = _value(cfg, source)
        assert isinstance(size, int)
        for target in targets:
            assert _value(cfg, target) in (None, size), target  # None: the method has no such key


def test_every_config_under_configs_is_covered() -> None:
    """A new config must get a context above (or be named by a chain), so it is parsed here."""
    covered = {c for _, configs in PARSE_CASES for c in configs} | set(DATA_ONLY)
    covered |= {f"configs/pipelines/{name}.yaml" for name in CHAINS}
    covered |= set(SWEEPS)
    texts = "\n".join((REPO / c).read_text() for c in covered)
    for folder in VALUE_DIRS:
        for path in (CONFIGS / folder).glob("*.yaml"):
            assert f"{folder}/{path.name}" in texts, f"{path} is named by no config"
            covered.add(f"configs/{folder}/{path.name}")
    every = {str(p.relative_to(REPO)) for p in CONFIGS.rglob("*.yaml")}
    assert every - covered == set()


@pytest.mark.parametrize("sweep", SWEEPS)
def test_every_run_of_a_sweep_parses_with_its_values(sweep: str) -> None:
    from lightning_app.sweep.spec import SEED_KEY, load_sweep, override_args

    loaded = load_sweep(sweep)
    for run in loaded.runs:
        seed = [] if run.seed is None else [f"--{SEED_KEY}", str(run.seed)]
        cfg = parse_configs(list(loaded.configs), [*override_args(run.values), *seed])
        for key, value in run.values.items():
            assert _value(cfg, key) == value, (run.name, key)


@pytest.mark.parametrize("config", DATA_ONLY)
def test_data_only_preset_builds_its_data_module(config: str) -> None:
    dm = build_datamodule_from_configs([config])
    assert isinstance(dm, TrackingDataModule) and dm.search.size == 288 and dm.template.number == 2


def test_a_bad_key_is_one_line_naming_it() -> None:
    with pytest.raises(SetupError, match=r"model\.network: Option 'no_such_arg' is not accepted") as err:
        parse_configs(["configs/ostrack_256.yaml"], ["--model.init_args.network.init_args.no_such_arg=1"])
    assert "\n" not in str(err.value)
    with pytest.raises(SetupError, match="not found"):
        parse_configs(["configs/no_such_experiment.yaml"])


def test_overrides_go_through_the_parser_like_fit_arguments() -> None:
    smoke_ostrack = ["configs/ostrack_256.yaml", SMOKE]
    model, dm = build_from_configs(
        smoke_ostrack, ["--model.init_args.network.init_args.depth=10", "--trainer.max_epochs=1",
                        "--data.init_args.search.size=96"]
    )
    assert len(model.network.backbone.blocks) == 10
    assert dm.search.size == model.tracker_config.search_size == 96  # the link follows the override
    assert build_model_from_configs(smoke_ostrack).tracker_config.search_size == 128


def test_a_fragment_overrides_one_layer_decay_argument() -> None:
    cfg = parse_configs(["configs/mixformerv2_b.yaml", SMOKE, "configs/presets/cpu_smoke_mixformerv2/depth_pruning.yaml"])
    decay = cfg.layer_decay.init_args
    assert (list(decay.blocks), decay.decay_epochs, decay.remove_after_epoch) == ([0, 3, 6, 9], 2, 3)
    assert decay.schedule == "official" and cfg.snapshots is None
    assert parse_configs(["configs/ostrack_256.yaml"]).layer_decay is None


# ---------------------------------------------------------------------------------------------
# The tools build what `fit` builds
# ---------------------------------------------------------------------------------------------


def _fit_model(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, args: list[str]
) -> tuple[L.LightningModule, list, L.LightningDataModule]:
    """The model, callbacks and data module `lightning fit` hands to ``Trainer.fit`` (which is stopped there)."""
    seen: dict = {}

    def fake_fit(trainer: L.Trainer, model: L.LightningModule, **kwargs) -> None:  # noqa: ANN003
        seen.update(model=model, callbacks=list(trainer.callbacks), datamodule=kwargs.get("datamodule"))

    monkeypatch.setattr(L.Trainer, "fit", fake_fit)
    monkeypatch.setattr(TrackingDataModule, "check_roots", lambda self, stage: None)
    run_lightning_cli(["fit", *args, f"--trainer.default_root_dir={tmp_path}"])
    return seen["model"], seen["callbacks"], seen["datamodule"]


def _assert_same_model(a: L.LightningModule, b: L.LightningModule) -> None:
    assert type(a) is type(b)
    assert dict(a.hparams) == dict(b.hparams)
    shapes = {k: tuple(v.shape) for k, v in a.state_dict().items()}
    assert shapes == {k: tuple(v.shape) for k, v in b.state_dict().items()} and shapes


@pytest.fixture
def teacher_checkpoint(tmp_path: Path) -> Path:
    """A tiny MixViT as the `mixvit_b` smoke stage would save it."""
    network = build_model_from_configs(["configs/mixvit_b.yaml", SMOKE]).network
    path = tmp_path / "mixvit.ckpt"
    torch.save({"state_dict": {"network." + k: v for k, v in network.state_dict().items()}}, path)
    return path


def test_tools_build_the_ostrack_that_fit_builds(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    configs = ["configs/ostrack_256.yaml", SMOKE]
    fit_model, callbacks, fit_data = _fit_model(monkeypatch, tmp_path, [a for c in configs for a in ("--config", c)])
    model, data = build_from_configs(configs)
    _assert_same_model(model, fit_model)
    assert (data.template, data.search, data.datasets) == (fit_data.template, fit_data.search, fit_data.datasets)
    names = [type(c).__name__ for c in callbacks]
    assert "CandidateEliminationSchedule" in names and "LayerDecay" not in names  # a keyed callback, once


def test_tools_build_the_mixformerv2_stage_that_fit_builds(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                         teacher_checkpoint: Path) -> None:
    configs = ["configs/mixformerv2_b_stage1.yaml", *SMOKE_STAGE1]  # bins: null -> the teacher's map side
    overrides = [f"--model.init_args.teacher_checkpoint={teacher_checkpoint}"]
    fit_model, _, _ = _fit_model(monkeypatch, tmp_path, [a for c in configs for a in ("--config", c)] + overrides)
    model = build_model_from_configs(configs, overrides)
    _assert_same_model(model, fit_model)
    assert model.teacher.feat_size == model.network.num_bins == 32


def test_the_layer_decay_key_gives_fit_one_layer_decay_callback(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                               teacher_checkpoint: Path) -> None:
    stage1 = build_model_from_configs(
        ["configs/mixformerv2_b_stage1.yaml", *SMOKE_STAGE1],
        [f"--model.init_args.teacher_checkpoint={teacher_checkpoint}"],
    )
    student = tmp_path / "stage1.ckpt"
    torch.save({"state_dict": {"network." + k: v for k, v in stage1.network.state_dict().items()}}, student)
    configs = ["configs/mixformerv2_b.yaml", SMOKE, f"{SMOKE_MIXFORMERV2}/bins.yaml", f"{SMOKE_MIXFORMERV2}/depth_pruning.yaml"]
    args = [a for c in configs for a in ("--config", c)] + [f"--model.init_args.teacher_checkpoint={student}"]
    _, callbacks, _ = _fit_model(monkeypatch, tmp_path, args)
    (decay,) = [c for c in callbacks if type(c).__name__ == "LayerDecay"]
    assert (list(decay.blocks), decay.decay_epochs, decay.remove_after_epoch) == ([0, 3, 6, 9], 2, 3)
    assert not any(type(c).__name__ == "ModelCheckpoint" and "snapshot" in str(c.filename) for c in callbacks)


def test_a_crop_size_set_outside_data_is_refused_unless_it_agrees(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture) -> None:
    """A link overwrites its target: a size given there would silently do nothing."""
    ostrack = ["configs/ostrack_256.yaml", SMOKE]
    with pytest.raises(SetupError, match=r"crop sizes are set once, in data\.init_args\.search\.size \(128\)"):
        parse_configs(ostrack, ["--model.init_args.network.init_args.search_size=320"])
    stale = tmp_path / "stale.yaml"
    stale.write_text("model:\n  init_args:\n    tracker: {search_size: 200}\n")
    with pytest.raises(SetupError, match=r"stale\.yaml: model\.init_args\.tracker\.search_size is 200"):
        build_model_from_configs([*ostrack, str(stale)])
    assert parse_configs(ostrack, ["--model.init_args.tracker.search_size", "128"]).data.init_args.search.size == 128
    from lightning_app import cli

    code = cli.main(["fit", "--config", ostrack[0], "--config", ostrack[1],
                     "--model.init_args.tracker.template_size=32"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "data.init_args.template.size (64)" in err[0]
