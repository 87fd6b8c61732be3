"""Pose checkpoints no one can download offline, made real enough to test with.

No trained YOLO26-pose or custom-keypoint weights exist here, and a freshly built model scores
every anchor about the same (Ultralytics' bias init), which makes a comparison of detections
meaningless. So each is trained briefly on coco8-pose's 8 photos: enough for scores that rank
persons, not for accuracy. Custom keypoint sets come from the same labels, rewritten.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from edgepose.keypoints import COCO_KEYPOINTS

# A 21-point body (COCO's 17 and 4 midpoints) and a 5-point face (x, y only): the custom layouts tested.
MIDPOINTS = {"neck": (5, 6), "mid_hip": (11, 12), "mid_knee": (13, 14), "mid_ankle": (15, 16)}
BODY21 = (*COCO_KEYPOINTS, *MIDPOINTS)
FACE5 = COCO_KEYPOINTS[:5]


def rewrite_labels(line: str, layout: str) -> str:
    """One coco8-pose label line in the ``body21`` (2 classes: near/far person), ``near-far`` (COCO's
    17 points, the same 2 classes) or ``face5`` layout."""
    values = np.array(line.split(), dtype=np.float64)
    cls, box, kpts = int(values[0]), values[1:5], values[5:].reshape(17, 3)
    if layout == "face5":
        return " ".join(f"{v:.6f}" for v in [cls, *box, *kpts[:5, :2].ravel()])
    cls = 0 if box[2] * box[3] >= 0.1 else 1  # "near" persons fill a tenth of the photo
    if layout == "near-far":
        return " ".join(f"{v:.6f}" for v in [cls, *box, *kpts.ravel()])
    extra = []
    for a, b in MIDPOINTS.values():
        seen = kpts[a, 2] > 0 and kpts[b, 2] > 0
        extra.append([*(kpts[a, :2] + kpts[b, :2]) / 2, 2.0] if seen else [0.0, 0.0, 0.0])
    return " ".join(f"{v:.6f}" for v in [cls, *box, *np.concatenate([kpts, extra]).ravel()])


def dataset(coco8: Path, work: Path, layout: str | None = None) -> Path:
    """A data yaml training on all 8 coco8-pose photos (and validating on its val 4); with ``layout``
    the labels are rewritten to that keypoint set and the yaml names its points (``kpt_names``)."""
    root = work / f"coco8-{layout or 'coco'}"
    for split in ("train", "val"):
        shutil.copytree(coco8 / "images" / split, root / "images" / split, dirs_exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for label in (coco8 / "labels" / split).glob("*.txt"):
            lines = label.read_text().splitlines()
            if layout:
                lines = [rewrite_labels(line, layout) for line in lines if line.strip()]
            (root / "labels" / split / label.name).write_text("\n".join(lines) + "\n")
    names = {"body21": BODY21, "face5": FACE5}.get(layout or "", COCO_KEYPOINTS)
    shape = {"body21": "[21, 3]", "face5": "[5, 2]"}.get(layout or "", "[17, 3]")
    two_classes = layout in ("body21", "near-far")
    classes = "{0: near, 1: far}" if two_classes else "{0: person}"
    flip = {"face5": [0, 2, 1, 4, 3]}.get(layout or "")
    if flip is None:
        flip = [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15] + (
            [17, 18, 19, 20] if layout == "body21" else []
        )
    yaml = root / "data.yaml"
    kpt_names = {i: list(names) for i in range(2 if two_classes else 1)}
    yaml.write_text(f"path: {root}\ntrain: [images/train, images/val]\nval: images/val\nkpt_shape: {shape}\n"
                    f"flip_idx: {flip}\nnames: {classes}\nkpt_names: {kpt_names}\n")  # fmt: skip
    return yaml


def train(cfg: str, data: Path, work: Path, pretrained: Path, epochs: int, lr0: float = 0.005) -> Path:
    """``cfg`` (an Ultralytics model yaml) with what fits of ``pretrained``, trained on ``data``; the checkpoint.

    ``lr0``: 0.005 wipes out what a model that takes most of yolo11n-pose's weights knows (60 epochs,
    box mAP50-95 on coco8-pose's val photos at 320: 0.01; at 0.0005, 0.68), so such models (the
    custom layouts) train at 0.0005."""
    import torch
    from ultralytics import YOLO

    torch.manual_seed(0)
    model = YOLO(cfg).load(str(pretrained))
    model.train(data=str(data), epochs=epochs, imgsz=320, batch=4, workers=0, device="cpu", project=str(work),
                name="train", exist_ok=True, plots=False, val=False, amp=False, mosaic=0.0, warmup_epochs=0,
                optimizer="AdamW", lr0=lr0, lrf=0.2, deterministic=True, seed=0, verbose=False)  # fmt: skip
    checkpoint = work / f"{Path(cfg).stem}-{data.parent.name}.pt"
    shutil.copy(work / "train" / "weights" / "last.pt", checkpoint)
    return checkpoint


def one_to_one(pretrained: Path, work: Path) -> Path:
    """YOLO11n-pose with an end-to-end head (the one-to-one branches YOLO26 exports NMS-free), those
    branches starting as copies of its trained one-to-many ones: an NMS-free graph with real scores,
    untrained (on coco8-pose's val photos, pose mAP50-95 0.16: duplicates a trained one-to-one head
    would not give), for tests that need detections worth scoring, which briefly trained YOLO26 weights
    do not give."""
    from ultralytics import YOLO
    from ultralytics.utils import ROOT

    yaml = work / "yolo11n-pose-e2e.yaml"  # the file name gives the scale, n
    text = (ROOT / "cfg" / "models" / "11" / "yolo11-pose.yaml").read_text()
    yaml.write_text(text.replace("nc: 80 # number of classes", "nc: 1\nend2end: True", 1))
    model = YOLO(str(yaml)).load(str(pretrained))
    head = model.model.model[-1]
    for branch in ("cv2", "cv3", "cv4"):
        getattr(head, f"one2one_{branch}").load_state_dict(getattr(head, branch).state_dict())
    checkpoint = work / "yolo11n-pose-e2e.pt"
    model.save(str(checkpoint))
    return checkpoint
