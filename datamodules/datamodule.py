"""TrackingDataModule: the training/validation pair pipeline and the evaluation sequences.

Defaults are the OSTrack-256 recipe (spec tracking_ecosystem §3.8): template 128 @ 2.0 without
jitter, search 256 @ 4.0 with centre/scale jitter 3 / 0.25, causal sampling with max gap 200, 60k
samples per epoch (global, split across DDP ranks), grayscale 0.05, flips 0.5, brightness 0.2. A
config overrides any of them (LightningCLI ``data.init_args.*``); MixFormerV2's score stage sets
``sampler_mode: trident_pro`` and ``positive_prob: 0.5``. Frames are decoded at up to
1/``max_decode_reduction`` scale when every crop of the frame is downscaled at least that much
(1 disables it). With ``normalize_on_device`` (by default whenever training runs on an
accelerator; a CPU run normalises in its workers with lookup tables) the workers ship uint8 crops and each
crop's brightness factor; ``on_after_batch_transfer`` normalises the batch where it landed (the
GPU): the same values as worker-side normalisation, a quarter of the bytes through shared memory
and the host-to-device copy, and no float work in the workers (timm's prefetcher does the same).

Data health: every batch carries ``redraws`` (per-sample redraw counts, summed by
``callbacks.data_health.DataHealthMonitor``); ``skipped_sequences`` lists, per dataset, the
sequences never drawn (unreadable annotations, too short), each already reported by a warning.
"""

from __future__ import annotations

import os

from dataclasses import dataclass, fields, replace
from collections.abc import Callable, Sequence
from typing import Any

import lightning as L
from torch.utils.data import DataLoader

from datamodules.augmentation import CropAugmentation, JointAugmentation
from datamodules.pair_dataset import EpochShardSampler, PairDataset
from datamodules.pair_processor import CropSettings, PairProcessor
from datamodules.readers import SequenceReader, build_reader, require_root
from datamodules.sampler import SAMPLER_MODES, build_pair_sampler
from datamodules.sequences import EvalSequenceDataset, RankStridedSampler, identity_collate
from trackers.frames import DECODE_REDUCTIONS
from trackers.geometry.normalize import normalize_uint8

TRAIN_STREAM, VAL_STREAM = 0, 1


@dataclass(frozen=True)
class DatasetSpec:
    """One training/validation dataset: reader ``type``, its root, split and sampling ratio.

    ``type``: lasot | got10k | trackingnet | coco | synthtrack. ``split``: lasot/synthtrack train | test;
    got10k train_full | train | val | vottrain | votval, or null for every sequence of the root's
    list.txt (official val/test folders); trackingnet comma-separated chunk ids ("0,1,2,3"), TEST,
    or null for all chunks; coco train2017 | val2017. ``split_file`` lists sequence names instead.
    ``options`` are reader settings, e.g. ``{min_size: 50}`` for coco.
    """

    type: str = "synthtrack"
    root: str = "data/synthtrack"
    split: str | None = "train"
    ratio: float = 1.0
    split_file: str | None = None
    options: dict[str, Any] | None = None


@dataclass(frozen=True)
class TemplateCrop(CropSettings):
    """Template crop settings plus the number of templates per sample (index 0 = latest)."""

    number: int = 1


@dataclass(frozen=True)
class EvalBenchmarkSpec:
    """The evaluation benchmark: reader type, root, split, and optionally only its first sequences."""

    type: str = "synthtrack"
    root: str = "data/synthtrack"
    split: str | None = "test"
    max_sequences: int | None = None
    split_file: str | None = None
    options: dict[str, Any] | None = None  # reader settings, e.g. UAV123's {frame_ranges: file}


OSTRACK_256_TEMPLATE = TemplateCrop(size=128, factor=2.0)
OSTRACK_256_SEARCH = CropSettings(size=256, factor=4.0, center_jitter=3.0, scale_jitter=0.25)


class TrackingDataModule(L.LightningDataModule):
    """Training pairs as ``TrackingBatch`` dicts; test items are whole ``EvalSequence``s (batch_size=None)."""

    def __init__(
        self,
        datasets: Sequence[DatasetSpec] = (DatasetSpec(),),
        val_datasets: Sequence[DatasetSpec] | None = None,
        test: EvalBenchmarkSpec | None = None,
        template: TemplateCrop = OSTRACK_256_TEMPLATE,
        search: CropSettings = OSTRACK_256_SEARCH,
        max_gap: int = 200,
        sampler_mode: str = "causal",
        positive_prob: float | None = None,
        samples_per_epoch: int = 60_000,
        val_samples_per_epoch: int = 10_000,
        batch_size: int = 32,
        num_workers: int = 8,
        seed: int | None = None,
        grayscale_prob: float = 0.05,
        joint_flip_prob: float = 0.5,
        brightness: float = 0.2,
        crop_flip_prob: float = 0.5,
        mask_stride: int = 16,
        max_redraws: int = 100,
        max_decode_reduction: int = 8,
        pin_memory: bool = True,
        normalize_on_device: bool | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.datasets = [_as_spec(d, DatasetSpec) for d in datasets]
        self.val_datasets = None if val_datasets is None else [_as_spec(d, DatasetSpec) for d in val_datasets]
        self.test = None if test is None else _as_spec(test, EvalBenchmarkSpec)
        self.template = _as_spec(template, TemplateCrop)
        self.search = _as_spec(search, CropSettings)
        if not self.datasets:
            raise ValueError("data.init_args.datasets is empty: list at least one training dataset")
        if self.template.number < 1:
            raise ValueError(f"data.init_args.template.number must be >= 1 (got {self.template.number})")
        if sampler_mode not in SAMPLER_MODES:
            raise ValueError(f"data.init_args.sampler_mode '{sampler_mode}' is unknown: use one of {SAMPLER_MODES}")
        if positive_prob is not None and not 0.0 <= positive_prob <= 1.0:
            raise ValueError(f"data.init_args.positive_prob must be in [0, 1] or null (got {positive_prob})")
        if max_decode_reduction not in DECODE_REDUCTIONS:
            raise ValueError(f"data.init_args.max_decode_reduction must be one of {DECODE_REDUCTIONS} "
                             f"(got {max_decode_reduction})")
        self.max_gap, self.seed = max_gap, seed
        self.sampler_mode, self.positive_prob = sampler_mode, positive_prob
        self.max_decode_reduction = max_decode_reduction
        self.samples_per_epoch, self.val_samples_per_epoch = samples_per_epoch, val_samples_per_epoch
        self.batch_size, self.num_workers, self.pin_memory = batch_size, num_workers, pin_memory
        self.max_redraws, self.mask_stride = max_redraws, mask_stride
        self.joint = JointAugmentation(grayscale_prob=grayscale_prob, hflip_prob=joint_flip_prob)
        self.normalize_on_device = normalize_on_device
        self.train_crop_aug = CropAugmentation(brightness=brightness, hflip_prob=crop_flip_prob)
        self.val_crop_aug = CropAugmentation(brightness=0.0, hflip_prob=0.0)
        self.train_set: PairDataset | None = None
        self.val_set: PairDataset | None = None
        self.test_set: EvalSequenceDataset | None = None
        self.skipped_sequences: dict[str, list[str]] = {}

    # ---------------------------------------------------------------------------------- setup
    def setup(self, stage: str | None = None) -> None:
        """Build readers (a missing root fails here, naming its config key), samplers and datasets."""
        if stage in (None, "fit") and self.train_set is None:
            self.train_set = self.build_train_set()
            self.skipped_sequences = dict(self.train_set.sampler.skipped)
        if stage in (None, "fit", "validate") and self.val_set is None:
            specs, key = (self.datasets, "datasets")
            if self.val_datasets is not None:
                specs, key = self.val_datasets, "val_datasets"
            self.val_set = self._pair_dataset(specs, key, self.val_samples_per_epoch, VAL_STREAM, self.val_crop_aug)
        if stage in ("test", "predict") and self.test_set is None:
            if self.test is None:
                raise ValueError("no test benchmark configured: set data.init_args.test (type, root, split)")
            reader = build_reader(self.test.type, self.test.root, self.test.split, self.test.split_file,
                                  config_key="data.init_args.test.root", options=self.test.options)
            self.test_set = EvalSequenceDataset(reader, self.test.max_sequences)

    def check_roots(self, stage: str) -> None:
        """Fail before any worker or DDP process starts when a root the ``stage`` needs is missing."""
        groups: list[tuple[str, Sequence[DatasetSpec] | Sequence[EvalBenchmarkSpec]]] = []
        if stage == "fit":
            groups.append(("datasets", self.datasets))
        if stage in ("fit", "validate") and self.val_datasets is not None:
            groups.append(("val_datasets", self.val_datasets))
        if stage == "validate" and self.val_datasets is None:
            groups.append(("datasets", self.datasets))
        for key, specs in groups:
            for i, spec in enumerate(specs):
                require_root(spec.root, f"data.init_args.{key}[{i}].root")
        if stage in ("test", "predict") and self.test is not None:
            require_root(self.test.root, "data.init_args.test.root")

    def build_train_set(self) -> PairDataset:
        """The training pair dataset alone (what ``setup('fit')`` and the data benchmark use)."""
        return self._pair_dataset(self.datasets, "datasets", self.samples_per_epoch, TRAIN_STREAM,
                                  self.train_crop_aug)

    def _readers(self, specs: Sequence[DatasetSpec], key: str) -> list[SequenceReader]:
        return [build_reader(s.type, s.root, s.split, s.split_file, config_key=f"data.init_args.{key}[{i}].root",
                             options=s.options)
                for i, s in enumerate(specs)]

    def _pair_dataset(self, specs: Sequence[DatasetSpec], key: str, samples: int, stream: int,
                      crop_aug: CropAugmentation) -> PairDataset:
        sampler = build_pair_sampler(self.sampler_mode, self._readers(specs, key), [s.ratio for s in specs],
                                     num_templates=self.template.number, max_gap=self.max_gap,
                                     positive_prob=self.positive_prob)
        crop_aug = replace(crop_aug, normalize=not self.normalizes_on_device())
        processor = PairProcessor(self.template, self.search, self.joint, crop_aug, self.mask_stride,
                                  max_decode_reduction=self.max_decode_reduction)
        return PairDataset(sampler, processor, samples, seed=self.sample_seed(), stream=stream, max_redraws=self.max_redraws)

    def sample_seed(self) -> int:
        """``seed``; when unset (null), the run's ``seed_everything`` value (``PL_GLOBAL_SEED``, 0 without
        one), so runs that differ only in ``--seed_everything`` also draw different training pairs."""
        if self.seed is not None:
            return self.seed
        return int(os.environ.get("PL_GLOBAL_SEED", 0))

    def normalizes_on_device(self) -> bool:
        """``normalize_on_device``; when unset (null), on exactly when the trainer runs on an accelerator."""
        if self.normalize_on_device is not None:
            return self.normalize_on_device
        trainer = self.trainer
        return trainer is not None and trainer.strategy.root_device.type != "cpu"

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Normalise uint8 pair batches on the device they were moved to (``normalize_on_device``)."""
        return normalize_pair_batch(batch, self.train_crop_aug.mean, self.train_crop_aug.std)

    # ---------------------------------------------------------------------------------- loaders
    def _rank_world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (0, 1) if trainer is None else (trainer.global_rank, trainer.world_size)

    def _pair_loader(self, dataset: PairDataset | None, fixed_epoch: int | None) -> DataLoader:
        if dataset is None:
            raise RuntimeError("TrackingDataModule.setup() must run before asking for a data loader")
        rank, world = self._rank_world()
        sampler = EpochShardSampler(len(dataset), num_replicas=world, rank=rank, fixed_epoch=fixed_epoch)
        return DataLoader(dataset, batch_size=self.batch_size, sampler=sampler, drop_last=True,
                          num_workers=self.num_workers, pin_memory=self.pin_memory,
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        loader = self._pair_loader(self.train_set, fixed_epoch=None)
        return ResumableLoader(loader, self._completed_batches) if self.trainer is not None else loader

    def _completed_batches(self) -> tuple[int, bool]:
        """(training batches of the current epoch whose step is done, whether the epoch is done), as Lightning
        counts them when it restores a checkpoint (``processed``: a checkpoint written in ``on_train_batch_end``
        resumes after that batch, one written inside a step before it)."""
        trainer = self.trainer
        completed = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        return completed, completed >= trainer.num_training_batches

    def val_dataloader(self) -> DataLoader:
        return self._pair_loader(self.val_set, fixed_epoch=0)

    def test_dataloader(self) -> DataLoader:
        if self.test_set is None:
            raise RuntimeError("TrackingDataModule.setup('test') must run before asking for the test loader")
        rank, world = self._rank_world()
        return DataLoader(self.test_set, batch_size=None, sampler=RankStridedSampler(len(self.test_set), world, rank),
                          collate_fn=identity_collate, num_workers=0)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()


class ResumableLoader(DataLoader):
    """The training loader with a position: Lightning stores ``state_dict()`` in every checkpoint (the
    fit loop keeps the state of ``_Stateful`` loaders) and hands it back on resume, so a run resumed
    from a mid-epoch checkpoint draws exactly the samples the uninterrupted run would have drawn next
    (a sample is a function of its key; the position is how many keys this rank has consumed).
    """

    def __init__(self, loader: DataLoader, completed_batches: Callable[[], tuple[int, bool]]) -> None:
        super().__init__(loader.dataset, batch_size=loader.batch_size, sampler=loader.sampler, drop_last=loader.drop_last,
                         num_workers=loader.num_workers, pin_memory=loader.pin_memory,
                         persistent_workers=loader.persistent_workers)
        self._completed_batches = completed_batches

    def state_dict(self) -> dict[str, int]:
        completed, epoch_done = self._completed_batches()
        sampler: EpochShardSampler = self.sampler  # type: ignore[assignment]
        if epoch_done:  # saved at the end of an epoch: the next one starts from its first sample
            return {"epoch": sampler.epoch + 1, "consumed_samples": 0}
        return {"epoch": sampler.epoch, "consumed_samples": completed * int(self.batch_size or 1)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        sampler: EpochShardSampler = self.sampler  # type: ignore[assignment]
        sampler.resume(int(state["epoch"]), int(state["consumed_samples"]))


def _as_spec(value: object, cls: type):  # noqa: ANN202 - returns an instance of ``cls``
    """Accept a dataclass instance or a plain dict (YAML / Python callers) for a spec argument."""
    if isinstance(value, cls):
        return value
    if isinstance(value, dict):
        unknown = set(value) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown {cls.__name__} keys {sorted(unknown)}: use {[f.name for f in fields(cls)]}")
        return cls(**value)
    raise TypeError(f"expected {cls.__name__} or a dict of its fields, got {type(value).__name__}")


def normalize_pair_batch(batch: Any, mean: Sequence[float], std: Sequence[float]) -> Any:
    """A training/validation batch with uint8 crops -> the ``TrackingBatch`` the models expect.

    Applies each crop's pending brightness and the ImageNet normalisation (``normalize_uint8``) and
    drops the brightness keys; anything else (float batches, test sequences) passes unchanged.
    """
    if not isinstance(batch, dict) or "search_brightness" not in batch:
        return batch
    batch = dict(batch)
    for key in ("template", "search"):
        batch[key] = normalize_uint8(batch[key], batch.pop(f"{key}_brightness"), mean, std)
    return batch
