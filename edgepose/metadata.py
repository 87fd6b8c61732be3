"""What an exported graph says about itself, parsed from its ONNX ``metadata_props``.

Ultralytics writes Python-literal strings (``"{0: 'person'}"``); edgepose adds JSON-encoded keys.
Both are read here so the rest of the runtime sees one typed ``ModelMeta``.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ModelError
from .keypoints import COCO_KEYPOINTS, COCO_SKELETON

# Keys edgepose writes beside Ultralytics' own; values are JSON.
EDGEPOSE_KEYS = ("head_form", "keypoint_names", "skeleton", "source_file", "source_sha256", "export_settings",
                 "edgepose_version", "fidelity")  # fmt: skip


def parse_value(value: str) -> Any:
    """Ultralytics values are Python literals; ours are JSON. Try JSON first (it is stricter)."""
    try:
        return json.loads(value)
    except ValueError:
        pass
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


@dataclass(frozen=True)
class ModelMeta:
    """Typed view of a pose graph's metadata."""

    task: str
    stride: int
    imgsz: tuple[int, int]
    names: dict[int, str]
    kpt_shape: tuple[int, int]
    keypoint_names: tuple[str, ...]
    skeleton: tuple[tuple[int, int], ...]
    end2end: bool = False
    nms_conf: float = 0.25  # the score under which NMS inside the graph (if any) dropped detections
    class_keypoint_names: dict[int, tuple[str, ...]] = field(default_factory=dict)  # where classes name them apart
    raw: dict[str, Any] = field(default_factory=dict)

    def names_of(self, cls: int) -> tuple[str, ...]:
        """The keypoint names of one class's detections (a model of several animals may name them apart)."""
        return self.class_keypoint_names.get(cls, self.keypoint_names)

    @classmethod
    def parse(cls, props: Mapping[str, str], source: str = "model") -> ModelMeta:
        """Build from the raw string map; refuse graphs that are not Ultralytics/edgepose pose models."""
        raw = {k: parse_value(v) for k, v in props.items()}
        task = raw.get("task")
        if task is None:
            raise ModelError(
                f"{source} has no Ultralytics/edgepose metadata (no 'task' key): export it with 'edgepose export'"
            )
        if task != "pose":
            raise ModelError(f"{source} is a '{task}' model, not a pose model")
        try:
            return cls._fields(raw, source)
        except (TypeError, ValueError, IndexError, AttributeError) as exc:  # metadata written by hand, or damaged
            raise ModelError(f"{source} has malformed metadata ({type(exc).__name__}: {exc})") from None

    @classmethod
    def _fields(cls, raw: dict[str, Any], source: str) -> ModelMeta:
        kpt_shape = tuple(int(v) for v in raw.get("kpt_shape", (17, 3)))
        if len(kpt_shape) != 2 or kpt_shape[1] not in (2, 3):
            raise ModelError(f"{source} has an unsupported kpt_shape {kpt_shape}")
        imgsz = raw.get("imgsz", (640, 640))
        imgsz = (int(imgsz), int(imgsz)) if isinstance(imgsz, (int, float)) else (int(imgsz[0]), int(imgsz[1]))
        names = {int(k): str(v) for k, v in dict(raw.get("names", {0: "person"})).items()}
        per_class = ultralytics_keypoint_names(raw.get("kpt_names"), kpt_shape[0])
        default_names = COCO_KEYPOINTS if kpt_shape[0] == len(COCO_KEYPOINTS) else ()
        kpt_names = tuple(raw.get("keypoint_names") or per_class.get(min(names, default=0)) or default_names) or tuple(
            f"kpt_{i}" for i in range(kpt_shape[0])
        )
        known = COCO_SKELETON if kpt_names == COCO_KEYPOINTS else ()
        skeleton = tuple((int(a), int(b)) for a, b in raw.get("skeleton") or known)
        if any(not (0 <= i < kpt_shape[0]) for edge in skeleton for i in edge):
            raise ModelError(f"{source} has a skeleton edge outside its {kpt_shape[0]} keypoints")
        stride = int(raw.get("stride", 32))
        if stride < 1:
            raise ModelError(f"{source} has a stride of {stride}")
        settings = raw.get("export_settings") or {}
        if not isinstance(settings, Mapping):
            raise ModelError(f"{source} has malformed metadata (export_settings is not a mapping)")
        return cls(
            task="pose",
            stride=stride,
            imgsz=imgsz,
            names=names,
            kpt_shape=kpt_shape,  # type: ignore[arg-type]
            keypoint_names=kpt_names,
            skeleton=skeleton,  # type: ignore[arg-type]
            class_keypoint_names=per_class,
            end2end=bool(raw.get("end2end", False)),
            nms_conf=float(settings.get("nms_conf", 0.25)),  # Ultralytics' default
            raw=raw,
        )


def ultralytics_keypoint_names(value: Any, count: int) -> dict[int, tuple[str, ...]]:
    """Ultralytics' ``kpt_names`` (``{class: [name, ...]}``, from the dataset yaml) where they name the
    points: its trainer fills in ``"0", "1", ...`` when the dataset has none, and those are no names."""
    if not isinstance(value, Mapping):
        return {}
    found = {}
    for cls, names in value.items():
        if isinstance(names, (list, tuple)) and len(names) == count and not all(str(n).isdigit() for n in names):
            found[int(cls)] = tuple(str(n) for n in names)
    return found


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks so large graphs need no large buffers."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
