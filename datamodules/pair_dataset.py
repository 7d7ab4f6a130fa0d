"""Turning sample keys into training samples, with redraws that leave a trace (spec tracking_ecosystem §2.7).

* ``PairDataset`` maps a global sample key to a sample: it seeds a numpy Generator from
  ``(seed, stream, epoch, index)``, draws frames with a sampler, opens the frame files and hands
  them to a ``process`` callable. A rejected sample (invalid crop) or a data error (missing or
  corrupt image, unusable annotation) is redrawn; data errors warn naming the file, and every
  sample carries the number of redraws it took (``redraws``), so the count reaches the
  LightningModule from every DataLoader worker. Unlike upstream, which redraws on ANY exception,
  programming errors propagate at once instead of hiding behind redraws.
* ``EpochShardSampler`` hands each DDP rank a disjoint share of the epoch's global sample keys.

Because a sample depends only on its global key, a run is reproducible whatever the number of
workers, and two ranks never draw the same sample.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler

from datamodules.readers.base import SequenceReader
from datamodules.sampler import PairDraw
from trackers.errors import BadFileError, SampleRejected
from trackers.frames import Frame, as_frame

DATA_ERRORS = (OSError, BadFileError, cv2.error)  # what bad data raises (FrameReadError is an OSError)


class FrameSampler(Protocol):
    readers: list[SequenceReader]

    def draw(self, rng: np.random.Generator) -> PairDraw: ...


@dataclass
class RawPair:
    """The frames (not yet decoded) and frame xywh boxes of one draw, before any processing."""

    template_frames: list[Frame | np.ndarray]
    template_boxes: np.ndarray  # (T, 4)
    search_frames: list[Frame | np.ndarray]
    search_boxes: np.ndarray  # (N, 4)
    dataset: str
    sequence: str
    search_visible: bool = True


def centre_box(width: int, height: int, fraction: float = 1 / 8) -> np.ndarray:
    """Upstream's negative-sample box: centred, ``fraction`` of the frame, integer-truncated xywh."""
    w, h = width * fraction, height * fraction
    return np.array([int(width / 2 - w / 2), int(height / 2 - h / 2), int(w), int(h)], dtype=np.float64)


class PairDataset(Dataset):
    """Map-style dataset of ``samples_per_epoch`` random samples keyed by ``epoch * samples_per_epoch + index``.

    ``stream`` separates independent sample streams with the same seed (e.g. train 0, val 1).
    """

    def __init__(
        self,
        sampler: FrameSampler,
        process: Callable[[RawPair, np.random.Generator], dict],
        samples_per_epoch: int,
        seed: int = 0,
        stream: int = 0,
        max_redraws: int = 100,
    ) -> None:
        if samples_per_epoch < 1:
            raise ValueError(f"samples_per_epoch must be >= 1 (got {samples_per_epoch})")
        self.sampler = sampler
        self.process = process
        self.samples_per_epoch = samples_per_epoch
        self.seed, self.stream, self.max_redraws = seed, stream, max_redraws
        self.redraws = 0  # per process (each DataLoader worker counts its own; batches carry the exact count)

    def __len__(self) -> int:
        return self.samples_per_epoch

    def rng_for(self, key: int) -> np.random.Generator:
        epoch, index = divmod(int(key), self.samples_per_epoch)
        return np.random.default_rng([self.seed, self.stream, epoch, index])

    def __getitem__(self, key: int) -> dict:
        sample, redraws = self.sample(key, self.process)
        sample["redraws"] = torch.tensor(redraws, dtype=torch.int64)
        return sample

    def sample(self, key: int, process: Callable[[RawPair, np.random.Generator], Any]) -> tuple[Any, int]:
        """(processed sample, number of redraws it took) for ``key``; the same key gives the same draws."""
        rng = self.rng_for(key)
        last_error: Exception | None = None
        for redraws in range(self.max_redraws):
            draw: PairDraw | None = None
            try:
                draw = self.sampler.draw(rng)
                return process(self.load(draw), rng), redraws
            except SampleRejected as exc:
                last_error = exc
            except DATA_ERRORS as exc:  # missing/corrupt image, bad annotation: redraw, but say which file
                last_error = exc
                warnings.warn(f"sample {key}: redrawing after {type(exc).__name__} in {self._where(draw)}: {exc}",
                              stacklevel=2)
            self.redraws += 1
        raise RuntimeError(f"sample {key}: no valid sample after {self.max_redraws} draws; last error: {last_error}")

    def _where(self, draw: PairDraw | None) -> str:
        if draw is None:
            return "draw"
        reader = self.sampler.readers[draw.dataset]
        return f"{reader.name} '{reader.sequence_name(draw.sequence)}'"

    def load(self, draw: PairDraw) -> RawPair:
        """Open the drawn frames (bytes only) and look up their boxes."""
        reader = self.sampler.readers[draw.dataset]
        info = reader.sequence_info(draw.sequence)
        n_t = len(draw.template_ids)
        if draw.search_source is None:  # one call, so a frame drawn twice is read once
            frames = reader.open_frames(draw.sequence, draw.template_ids + draw.search_ids)
            search_frames, search_info = frames[n_t:], info
        else:
            frames = reader.open_frames(draw.sequence, draw.template_ids)
            search_reader = self.sampler.readers[draw.search_source[0]]
            search_frames = search_reader.open_frames(draw.search_source[1], draw.search_ids)
            search_info = search_reader.sequence_info(draw.search_source[1])
        search_boxes = search_info.boxes[list(draw.search_ids)]
        if draw.centre_search_box:
            search_boxes = np.stack([centre_box(*as_frame(f).size) for f in search_frames])
        return RawPair(
            template_frames=frames[:n_t],
            template_boxes=info.boxes[list(draw.template_ids)],
            search_frames=search_frames,
            search_boxes=search_boxes,
            dataset=reader.name,
            sequence=reader.sequence_name(draw.sequence),
            search_visible=draw.positive,
        )


class EpochShardSampler(DistributedSampler):
    """This rank's share of an epoch's global sample keys: ``epoch * N + i`` for ``i = rank, rank + world, ...``.

    ``N`` is the global ``samples_per_epoch``; the tail that does not divide evenly is dropped
    (upstream ``drop_last``). A ``fixed_epoch`` ignores ``set_epoch`` (the same validation samples
    every time). Being a ``DistributedSampler``, Lightning uses it as is instead of wrapping it.
    """

    def __init__(self, samples_per_epoch: int, num_replicas: int = 1, rank: int = 0,
                 fixed_epoch: int | None = None) -> None:
        super().__init__(range(samples_per_epoch), num_replicas=num_replicas, rank=rank, shuffle=False,
                         drop_last=True)
        self.samples_per_epoch = samples_per_epoch
        self.fixed_epoch = fixed_epoch
        self._resume_at: tuple[int, int] | None = None  # (epoch, samples of this rank already consumed)
        if fixed_epoch is not None:
            self.epoch = fixed_epoch

    def set_epoch(self, epoch: int) -> None:
        if self.fixed_epoch is None:
            self.epoch = epoch

    def resume(self, epoch: int, consumed: int) -> None:
        """Continue epoch ``epoch`` after this rank's first ``consumed`` samples (a mid-epoch checkpoint)."""
        self.epoch, self._resume_at = epoch, (epoch, consumed)

    def __iter__(self) -> Iterator[int]:
        start = self.epoch * self.samples_per_epoch
        skip = 0
        resume_at, self._resume_at = self._resume_at, None
        if resume_at is not None and resume_at[0] == self.epoch:
            skip = resume_at[1]  # only the first pass over the resumed epoch is shortened
        first = start + self.rank + skip * self.num_replicas
        return iter(range(first, start + self.num_samples * self.num_replicas, self.num_replicas))

    def __len__(self) -> int:
        return self.num_samples
