"""TrackingDataModule: TrackingBatch layout, val/test loaders, DDP sequence split, config errors."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from datamodules.datamodule import TrackingDataModule
from datamodules.readers import DatasetRootError
from datamodules.sequences import EvalSequence, RankStridedSampler
from datamodules.synthtrack import write_synthtrack
from trackers.types import TrackingBatch


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthtrack(tmp_path_factory.mktemp("synth_dm"), num_train=3, num_test=3, length=24,
                            image_size=(96, 72), seed=1)


def _module(root: Path, **overrides) -> TrackingDataModule:  # noqa: ANN003
    args = dict(
        datasets=[{"type": "synthtrack", "root": str(root), "split": "train"}],
        val_datasets=[{"type": "synthtrack", "root": str(root), "split": "test"}],
        test={"type": "synthtrack", "root": str(root), "split": "test"},
        template={"size": 32, "factor": 2.0, "number": 2},
        search={"size": 64, "factor": 4.0, "center_jitter": 3.0, "scale_jitter": 0.25},
        samples_per_epoch=12, val_samples_per_epoch=8, batch_size=4, num_workers=0, pin_memory=False,
    )
    args.update(overrides)
    return TrackingDataModule(**args)


def test_train_batch_is_a_tracking_batch(synth_root: Path) -> None:
    dm = _module(synth_root, normalize_on_device=True)
    dm.setup("fit")
    loader = dm.train_dataloader()
    batches = list(loader)
    assert len(batches) == len(loader) == 3
    raw = batches[0]
    assert raw["search"].dtype == raw["template"].dtype == torch.uint8  # the workers ship uint8 crops
    assert raw["template_brightness"].shape == (4, 2) and raw["search_brightness"].shape == (4,)
    batch = dm.on_after_batch_transfer(raw, 0)  # what Lightning calls on the device
    assert set(batch) == set(TrackingBatch.__annotations__)
    expected = {
        "template": ((4, 2, 3, 32, 32), torch.float32),
        "template_box": ((4, 2, 4), torch.float32),
        "template_mask": ((4, 2, 32, 32), torch.bool),
        "search": ((4, 3, 64, 64), torch.float32),
        "search_box": ((4, 4), torch.float32),
        "search_mask": ((4, 64, 64), torch.bool),
        "search_visible": ((4,), torch.bool),
    }
    for key, (shape, dtype) in expected.items():
        assert tuple(batch[key].shape) == shape and batch[key].dtype == dtype, key
    assert batch["dataset"] == ["synthtrack"] * 4
    assert batch["search_visible"].all()
    assert batch["search"].abs().max() < 3.0  # ImageNet-normalised, not raw pixels


def test_device_normalisation_equals_worker_normalisation(synth_root: Path) -> None:
    on_device, in_worker = _module(synth_root, normalize_on_device=True), _module(synth_root)
    assert not in_worker.normalizes_on_device()  # unset and no trainer: the workers normalise
    in_worker.trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device("cpu")))
    assert not in_worker.normalizes_on_device()  # a CPU run keeps the lookup tables
    in_worker.trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device("cuda", 0)))
    assert in_worker.normalizes_on_device()  # on an accelerator the workers ship uint8
    in_worker.trainer = None
    for dm in (on_device, in_worker):
        dm.setup("fit")
    raw = next(iter(on_device.train_dataloader()))
    assert raw["search_brightness"].unique().numel() > 1  # brightness jitter is pending, per crop
    moved = on_device.on_after_batch_transfer(raw, 0)
    expected = next(iter(in_worker.train_dataloader()))
    assert set(moved) == set(expected)
    for key in ("template", "search"):
        assert moved[key].dtype == torch.float32
        torch.testing.assert_close(moved[key], expected[key], rtol=0, atol=0)
    val = next(iter(on_device.val_dataloader()))
    torch.testing.assert_close(on_device.on_after_batch_transfer(val, 0)["search"],
                               next(iter(in_worker.val_dataloader()))["search"], rtol=0, atol=0)


def test_train_epochs_differ_and_val_is_fixed(synth_root: Path) -> None:
    dm = _module(synth_root)
    dm.setup("fit")
    train, val = dm.train_dataloader(), dm.val_dataloader()
    first = next(iter(train))["search"]
    train.sampler.set_epoch(1)
    assert not torch.equal(first, next(iter(train))["search"])
    val_first = next(iter(val))["search"]
    val.sampler.set_epoch(3)
    assert torch.equal(val_first, next(iter(val))["search"])


def test_unset_seed_follows_seed_everything(synth_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Seeds of an ablation must differ in their training pairs, not only in their initialisation."""
    from lightning.fabric.utilities.seed import seed_everything

    def first_search(**overrides) -> torch.Tensor:  # noqa: ANN003
        dm = _module(synth_root, **overrides)
        dm.setup("fit")
        return next(iter(dm.train_dataloader()))["search"]

    monkeypatch.delenv("PL_GLOBAL_SEED", raising=False)
    unseeded = first_search()
    seed_everything(0)
    assert torch.equal(first_search(), unseeded)  # no seed_everything behaves as seed 0
    assert torch.equal(first_search(seed=0), unseeded)
    seed_everything(1)
    assert not torch.equal(first_search(), unseeded)
    assert torch.equal(first_search(seed=0), unseeded)  # an explicit data seed wins


def test_defaults_follow_ostrack_256() -> None:
    dm = TrackingDataModule()
    template, search = dm.template, dm.search
    assert (template.size, template.factor, template.center_jitter, template.scale_jitter) == (128, 2.0, 0, 0)
    assert (search.size, search.factor, search.center_jitter, search.scale_jitter) == (256, 4.0, 3.0, 0.25)
    assert (dm.max_gap, dm.samples_per_epoch, dm.val_samples_per_epoch) == (200, 60_000, 10_000)
    assert (dm.joint.grayscale_prob, dm.joint.hflip_prob) == (0.05, 0.5)
    assert (dm.train_crop_aug.brightness, dm.train_crop_aug.hflip_prob) == (0.2, 0.5)


def test_test_loader_yields_whole_sequences(synth_root: Path) -> None:
    dm = _module(synth_root, test={"type": "synthtrack", "root": str(synth_root), "max_sequences": 2})
    dm.setup("test")
    items = list(dm.test_dataloader())
    assert len(items) == 2 and all(isinstance(s, EvalSequence) for s in items)
    seq = items[0]
    assert len(seq) == 24 and seq.gt_boxes.shape == (24, 4) and seq.gt_boxes.dtype == np.float64
    assert seq.visible.dtype == bool and seq.image_size == (96, 72)
    frame = seq.load_frame(5)
    assert frame.shape == (72, 96, 3) and frame.dtype == np.uint8
    expected = (synth_root / "test_split.txt").read_text().split()[:2]
    assert [s.name for s in items] == expected


def test_sequences_split_across_ranks_without_duplicates() -> None:
    shards = [list(RankStridedSampler(7, num_replicas=3, rank=r)) for r in range(3)]
    assert sorted(sum(shards, [])) == list(range(7))
    assert [len(s) for s in shards] == [3, 2, 2]


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ({"datasets": [{"type": "synthtrack", "root": "ROOT"}, {"type": "lasot", "root": "missing/lasot"}]},
         "data.init_args.datasets[1].root"),
        ({"val_datasets": [{"type": "synthtrack", "root": "missing/val"}]}, "data.init_args.val_datasets[0].root"),
    ],
)
def test_missing_root_names_the_config_key(synth_root: Path, override: dict, key: str) -> None:
    for spec in override.get("datasets", []):
        spec["root"] = spec["root"].replace("ROOT", str(synth_root))
    dm = _module(synth_root, **override)
    with pytest.raises(DatasetRootError) as err:
        dm.setup("fit")
    assert key in str(err.value) and "\n" not in str(err.value)


def test_missing_test_root_names_the_config_key(synth_root: Path) -> None:
    dm = _module(synth_root, test={"type": "synthtrack", "root": "missing/bench"})
    with pytest.raises(DatasetRootError, match=r"missing/bench.*data\.init_args\.test\.root"):
        dm.setup("test")


def test_bad_spec_keys_are_named(synth_root: Path) -> None:
    with pytest.raises(ValueError, match="unknown DatasetSpec keys \\['rooot'\\]"):
        _module(synth_root, datasets=[{"type": "synthtrack", "rooot": "x"}])
    with pytest.raises(ValueError, match=r"unknown dataset type 'vot'.*datasets\[0\]\.type"):
        _module(synth_root, datasets=[{"type": "vot", "root": str(synth_root)}]).setup("fit")


@pytest.fixture(scope="module")
def synth_got10k(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same SynthTrack data written in the GOT-10k layout (train/ and val/ with list.txt)."""
    return write_synthtrack(tmp_path_factory.mktemp("synth_got"), num_train=3, num_test=1, length=24,
                            image_size=(96, 72), seed=2, layout="got10k")


def test_mixed_lasot_and_got10k_layout_datasets_feed_one_batch_stream(synth_root: Path, synth_got10k: Path) -> None:
    dm = _module(synth_root, datasets=[{"type": "synthtrack", "root": str(synth_root), "split": "train"},
                                       {"type": "got10k", "root": str(synth_got10k / "train"), "split": None}],
                 val_datasets=[{"type": "got10k", "root": str(synth_got10k / "val"), "split": None}],
                 samples_per_epoch=24, batch_size=8)
    dm.setup("fit")
    sources = []
    for batch in dm.train_dataloader():
        assert batch["template"].shape == (8, 2, 3, 32, 32) and torch.isfinite(batch["search"]).all()
        sources += batch["dataset"]
    assert set(sources) == {"synthtrack", "got10k"}
    assert next(iter(dm.val_dataloader()))["dataset"] == ["got10k"] * 8


def test_score_stage_sampling_gives_negatives(synth_root: Path) -> None:
    dm = _module(synth_root, sampler_mode="trident_pro", positive_prob=0.5, samples_per_epoch=32, batch_size=8)
    dm.setup("fit")
    visible = torch.cat([b["search_visible"] for b in dm.train_dataloader()])
    assert visible.dtype == torch.bool and 0 < int(visible.sum()) < 32
    with pytest.raises(ValueError, match="sampler_mode 'trident_max'"):
        _module(synth_root, sampler_mode="trident_max")


@pytest.mark.parametrize("fragment", ["configs/data/got10k_lasot_trackingnet_coco.yaml",
                                      "configs/data/got10k_only.yaml"])
def test_data_fragments_compose_with_an_experiment(fragment: str) -> None:
    from lightning_app.commands.benchmark_data import build_datamodule

    root = Path(__file__).resolve().parents[1]
    dm = build_datamodule([str(root / "configs/ostrack_256.yaml"), str(root / fragment)])
    types = [(d.type, d.split) for d in dm.datasets]
    if "only" in fragment:
        assert types == [("got10k", "train_full")] and dm.val_datasets[0].split is None
    else:
        assert types == [("lasot", "train"), ("got10k", "vottrain"), ("coco", "train2017"),
                         ("trackingnet", "0,1,2,3,4,5,6,7,8,9,10,11")]
        assert [d.ratio for d in dm.datasets] == [1, 1, 1, 1] and dm.val_datasets[0].split == "votval"
    assert dm.template.size == 128  # the experiment's crop settings are kept


def test_data_benchmark_compares_the_same_samples(synth_root: Path, tmp_path: Path) -> None:
    from lightning_app.commands.benchmark_data import run_data_benchmark

    override = tmp_path / "root.yaml"
    override.write_text(f"data:\n  init_args:\n    datasets:\n      - {{type: synthtrack, root: {synth_root}}}\n"
                        "    template: {size: 32, factor: 2.0, number: 2}\n    search: {size: 48, factor: 5.0}\n")
    root = Path(__file__).resolve().parents[1]
    result = run_data_benchmark([str(root / "configs/presets/data_bench_mixformerv2.yaml"), str(override)], 4)
    figures = result.as_dict()
    assert figures["num_samples"] == 4 and figures["speedup"] > 0 and figures["frame_sizes"] == {"96x72": 12}
    assert result.box_max_abs_diff < 1e-6 and result.pixel_mean_abs_diff < 3.0
    assert "samples/s/worker" in result.table() and sum(result.decode_reductions.values()) == 12
