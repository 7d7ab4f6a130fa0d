"""Evaluation sequences (DESIGN.md "Evaluation"): one benchmark sequence per item, frames loaded lazily."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from collections.abc import Iterator

import numpy as np
from PIL import Image
from torch.utils.data import Dataset, DistributedSampler

from datamodules.readers.base import SequenceReader
from trackers.frames import read_rgb


@dataclass
class EvalSequence:
    """A benchmark sequence: frame files, GT (L, 4) float64 frame xywh and (L,) visibility flags.

    ``visible`` is the dataset's own flags as the toolkits score them, whatever the box (the reader's
    ``present``: LaSOT not occluded and in view, GOT-10k ``cover > 0``), the same that `lightning
    analyze` reads.
    """

    name: str
    frame_paths: list[Path]
    gt_boxes: np.ndarray
    visible: np.ndarray
    dataset: str
    object_class: str | None = None

    def __len__(self) -> int:
        return len(self.frame_paths)

    @cached_property
    def image_size(self) -> tuple[int, int]:
        """(W, H) of the first frame, read from the file header only."""
        with Image.open(self.frame_paths[0]) as im:
            return im.size

    def load_frame(self, i: int) -> np.ndarray:
        """Frame ``i`` as RGB uint8 (H, W, 3); decoded on demand so a sequence costs no memory until tracked."""
        return read_rgb(self.frame_paths[i])


class EvalSequenceDataset(Dataset):
    """The sequences of a reader's split (the first ``max_sequences`` when given), as ``EvalSequence`` items."""

    def __init__(self, reader: SequenceReader, max_sequences: int | None = None) -> None:
        self.reader = reader
        count = reader.num_sequences
        self._count = count if max_sequences is None else min(count, max(0, int(max_sequences)))

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, i: int) -> EvalSequence:
        if not 0 <= i < self._count:
            raise IndexError(f"sequence index {i} out of range [0, {self._count})")
        info = self.reader.sequence_info(i)
        return EvalSequence(
            name=self.reader.sequence_name(i),
            frame_paths=[self.reader.frame_path(i, k) for k in range(len(info))],
            gt_boxes=info.boxes,
            visible=info.present,
            dataset=self.reader.name,
            object_class=self.reader.sequence_class(i),
        )


class RankStridedSampler(DistributedSampler):
    """Sequences ``rank, rank + world, ...``: every sequence evaluated exactly once across DDP ranks.

    Unlike a plain ``DistributedSampler`` it never pads with duplicates (a duplicated sequence
    would be counted twice in the metrics); Lightning uses it as is because it is one.
    """

    def __init__(self, num_items: int, num_replicas: int = 1, rank: int = 0) -> None:
        super().__init__(range(num_items), num_replicas=num_replicas, rank=rank, shuffle=False, drop_last=False)
        self.num_items = num_items
        self.num_samples = len(range(rank, num_items, num_replicas))
        self.total_size = num_items

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.num_items, self.num_replicas))

    def __len__(self) -> int:
        return self.num_samples


def identity_collate(item: EvalSequence) -> EvalSequence:
    """Keep a sequence as is (a module-level function so worker processes can pickle it)."""
    return item
