"""COCO 2017 as a dataset of one-frame sequences (spec tracking_ecosystem §1.4, §2.5).

Every ``iscrowd == 0`` annotation of ``<root>/annotations/instances_<split>.json`` is a sequence of
length 1 (crowd regions are not single objects and are dropped); images are read from
``<root>/images/<split>/`` (pytracking, OSTrack) or ``<root>/<split>/`` (MixFormerV2).
``valid = visible = w > min_size & h > min_size`` (OSTrack/MixFormerV2 use 50; pytracking 0). The
sampler never consults visibility for image datasets, so this threshold only matters to a caller
that does. The JSON is read with the standard library (no pycocotools) and cached like any index.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from datamodules.readers.annotation_files import AnnotationError
from datamodules.readers.base import AnnotationIndex, DatasetRootError, SequenceReader, require_root

DEFAULT_MIN_SIZE = 50.0


class CocoReader(SequenceReader):
    """Object instances of one COCO split, each a one-frame sequence."""

    type_name = "coco"
    is_video = False

    def __init__(
        self,
        root: str | Path,
        split: str | None = "train2017",
        split_file: str | Path | None = None,
        config_key: str = "data.init_args.datasets[0].root",
        name: str = "coco",
        min_size: float = DEFAULT_MIN_SIZE,
    ) -> None:
        root_path = require_root(root, config_key)
        spec_key = config_key.rsplit(".", 1)[0]
        if split_file is not None:
            raise ValueError(f"{spec_key}.split_file is not supported for COCO: choose the set with split (train2017)")
        split = split or "train2017"
        self.annotation_file = root_path / "annotations" / f"instances_{split}.json"
        if not self.annotation_file.is_file():
            raise DatasetRootError(f"COCO annotations '{self.annotation_file}' do not exist: set {config_key} to the "
                                   f"COCO folder (holding annotations/) and {spec_key}.split to e.g. train2017")
        candidates = (root_path / "images" / split, root_path / split)
        image_dir = next((d for d in candidates if d.is_dir()), None)
        if image_dir is None:
            raise DatasetRootError(f"no COCO image folder {candidates[0]} or {candidates[1]}: set {config_key} "
                                   "to the COCO folder")
        self.image_dir = image_dir
        self.min_size = float(min_size)
        super().__init__(root_path, split, None, name)

    def cache_identity(self) -> dict[str, Any]:
        return {**super().cache_identity(), "min_size": self.min_size}

    def source_files(self) -> list[Path]:
        return [self.annotation_file]

    def frame_path(self, i: int, frame_id: int) -> Path:
        extra = self.index.extra
        return self.image_dir / str(extra["image_files"][extra["image_of"][i]])

    def build_index(self) -> AnnotationIndex:
        try:
            data = json.loads(self.annotation_file.read_text())
            images = {int(im["id"]): str(im["file_name"]) for im in data["images"]}
            categories = {int(c["id"]): str(c["name"]) for c in data.get("categories", [])}
            annotations = [a for a in data["annotations"] if not a.get("iscrowd", 0)]
            boxes = np.array([a["bbox"] for a in annotations], dtype=np.float64).reshape(-1, 4)
            image_ids = [int(a["image_id"]) for a in annotations]
            names = [str(a["id"]) for a in annotations]
            classes = [categories.get(int(a.get("category_id", -1)), "") for a in annotations]
        except (ValueError, KeyError, TypeError) as exc:
            raise AnnotationError(f"COCO annotation file '{self.annotation_file}' is not a valid instances file "
                                  f"({type(exc).__name__}: {exc}): re-download it") from None
        unknown = sorted(set(image_ids) - images.keys())
        if unknown:
            raise AnnotationError(f"COCO annotation file '{self.annotation_file}' refers to image id {unknown[0]} "
                                  "that its 'images' list lacks: re-download it")
        image_files = np.array(sorted(images.values()), dtype=str)
        position = {f: k for k, f in enumerate(image_files)}
        image_of = np.array([position[images[i]] for i in image_ids], dtype=np.int32)
        with np.errstate(invalid="ignore"):
            valid = (boxes[:, 2] > self.min_size) & (boxes[:, 3] > self.min_size)
        class_names, class_ids = np.unique(np.array(classes, dtype=str), return_inverse=True)
        n = len(names)
        return AnnotationIndex(
            names=np.array(names, dtype=str).reshape(n),
            offsets=np.arange(n + 1, dtype=np.int64),
            boxes=boxes,
            valid=valid,
            visible=valid.copy(),
            present=valid.copy(),
            class_ids=class_ids.astype(np.int32).reshape(n),
            class_names=class_names,
            errors=np.full(n, "", dtype=str),
            notes=np.full(n, "", dtype=str),
            extra={"image_of": image_of, "image_files": image_files},
        )
