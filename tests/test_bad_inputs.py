"""The bad-input table (docs/reference/bad-inputs.md), row by row, as a user meets it.

Each invalid row: the CLI (a subprocess) exits with the documented code and ONE stderr line that
starts with ``error:`` and holds the documented fragment, no traceback, nothing written to the
output paths it was given; the Python API raises edgepose's own type with the same fragment.
Valid-but-unusual inputs (grayscale, palette, RGBA, CMYK, 16-bit, 1x1, 10000x10000, black) must
work, converted as a reference converter does. Every bad file is made here from the real photos.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

import edgepose
from edgepose.classifier import KeypointClassifier
from edgepose.errors import ExportError, InputError, ModelError, PartialFailure
from edgepose.keypoint_csv import columns, read_table
from edgepose.outputs import write_json
from edgepose.sources import list_images, read_image
from edgepose.val import box_iou, evaluate, load_dataset

from .conftest import ROOT, assert_one_line_error, edgepose_cli

YOGA = ROOT / "models" / "yoga-classifier.onnx"
ENGINE_LINE = "engine: onnxruntime CPUExecutionProvider\n"  # predict says once what runs (nothing else on stderr)
API_ERRORS = {InputError.exit_code: InputError, ModelError.exit_code: ModelError, ExportError.exit_code: ExportError}


# ---- real files, made from the bundled photos ----------------------------------------------------


def bus() -> np.ndarray:
    return cv2.imread(str(edgepose.sources.sample_images()[0]))


def png_bytes(width: int, height: int, rows: Callable[[], bytes], color_type: int = 0) -> bytes:
    """A PNG written chunk by chunk (8-bit; ``rows()`` gives one filtered row), so a huge image
    costs only its compressed size here."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    comp = zlib.compressobj(1)
    idat = b"".join(comp.compress(rows()) for _ in range(height)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def bomb_png(path: Path, side: int = 12000) -> Path:
    """A real, valid grayscale PNG of side x side zeros: 0.6 MB on disk, 432 MB decoded to BGR."""
    row = bytes(side + 1)
    path.write_bytes(png_bytes(side, side, lambda: row))
    return path


def half_of(data: bytes) -> bytes:
    return data[: len(data) // 2]


def with_metadata(src: Path, dst: Path, key: str, value: str) -> Path:
    """A copy of a graph with one metadata value replaced (as a hand edit, or damage, would leave it)."""
    import onnx

    graph = onnx.load(str(src))
    for prop in graph.metadata_props:
        if prop.key == key:
            prop.value = value
    onnx.save(graph, str(dst))
    return dst


def reversed_layout_classifier(path: Path) -> Path:
    """The shipped classifier relabelled as trained on another keypoint order (a real layout mismatch)."""
    return with_metadata(YOGA, path, "keypoint_names", json.dumps(list(reversed(edgepose.COCO_KEYPOINTS))))


def flip_byte(src: Path, dst: Path) -> Path:
    """A copy of a model and its sidecar with one byte of the model changed (weights, near the end)."""
    data = bytearray(src.read_bytes())
    data[-1000] ^= 0x01
    dst.write_bytes(bytes(data))
    (dst.parent / (dst.name + ".sha256")).write_text((src.parent / (src.name + ".sha256")).read_text())
    return dst


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    path.write_text("\n".join(",".join(map(str, r)) for r in [header, *rows]) + "\n")
    return path


# ---- the table ----------------------------------------------------------------------------------


class Ctx:
    """What a row needs: a fresh folder, an output folder that must stay empty, graphs on demand."""

    def __init__(self, tmp: Path, request: pytest.FixtureRequest) -> None:
        self.tmp, self.out, self.request = tmp, tmp / "out", request

    def __getattr__(self, fixture: str) -> Any:  # ctx.yolo11_onnx, ctx.detect_onnx, ...
        return self.request.getfixturevalue(fixture)

    def file(self, name: str, data: bytes | str) -> Path:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        return path

    def predict(self, source: object, *extra: object, model: object = None) -> list[object]:
        return ["predict", source, "-m", model or self.yolo11_onnx, "--json", self.out / "r.json",
                "--save", self.out / "annotated", *extra]  # fmt: skip

    def load(self, **kwargs: Any) -> edgepose.PosePredictor:
        return edgepose.load(kwargs.pop("model", self.yolo11_onnx), **kwargs)


@dataclass(frozen=True)
class Row:
    id: str
    code: int
    fragment: str
    make: Callable[[Ctx], tuple[list[object], Callable[[], Any] | None]]  # -> CLI args, API call (or None)


ROWS: list[Row] = []


def row(id: str, code: int, fragment: str) -> Callable:
    def register(make: Callable) -> Callable:
        ROWS.append(Row(id, code, fragment, make))
        return make

    return register


# images
@row("missing-path", 3, "no such file")
def _(ctx: Ctx):
    src = ctx.tmp / "missing.jpg"
    return ctx.predict(src), lambda: ctx.load()(src)


@row("empty-file", 3, "empty file")
def _(ctx: Ctx):
    src = ctx.file("empty.jpg", b"")
    return ctx.predict(src), lambda: ctx.load()(src)


@row("truncated-jpeg", 3, "not a readable image")
def _(ctx: Ctx):
    src = ctx.file("cut.jpg", half_of(edgepose.sources.sample_images()[0].read_bytes()))
    return ctx.predict(src), lambda: ctx.load()(src)


@row("truncated-png", 3, "corrupt PNG, truncated in its IDAT chunk")
def _(ctx: Ctx):
    src = ctx.file("cut.png", half_of(cv2.imencode(".png", bus())[1].tobytes()))
    return ctx.predict(src), lambda: ctx.load()(src)


@row("text-named-jpg", 3, "not a readable image")
def _(ctx: Ctx):
    src = ctx.file("notes.jpg", "this is not a JPEG\n")
    return ctx.predict(src), lambda: ctx.load()(src)


@row("decompression-bomb", 3, "image too large: 12000x12000 is over the limit of 134217728 pixels")
def _(ctx: Ctx):
    src = bomb_png(ctx.tmp / "bomb.png")
    return ctx.predict(src), lambda: ctx.load()(src)


@row("decompression-bomb-bigtiff", 3, "image too large: 12000x12000 is over the limit of 134217728 pixels")
def _(ctx: Ctx):  # its header was not read (only classic TIFF's), so OpenCV decoded it: 1.1 GB for 288 KB
    entries = [(256, 4, 1, 12000), (257, 4, 1, 12000)]  # ImageWidth, ImageLength (LONG)
    ifd = struct.pack("<Q", len(entries)) + b"".join(struct.pack("<HHQQ", *e) for e in entries) + bytes(8)
    src = ctx.file("bomb.tif", b"II+\x00" + struct.pack("<HHQ", 8, 0, 16) + ifd)
    return ctx.predict(src), lambda: ctx.load()(src)


@row("empty-folder", 3, "no images in folder")
def _(ctx: Ctx):
    (ctx.tmp / "empty").mkdir()
    (ctx.tmp / "empty" / "notes.txt").write_text("no images here")
    return ctx.predict(ctx.tmp / "empty"), lambda: list_images(ctx.tmp / "empty")


# models
@row("model-missing", 4, "model not found")
def _(ctx: Ctx):
    return ctx.predict(ctx.samples[0], model=ctx.tmp / "x.onnx"), lambda: ctx.load(model=ctx.tmp / "x.onnx")


@row("model-not-onnx", 4, "not a loadable ONNX graph")
def _(ctx: Ctx):
    model = ctx.file("model.onnx", "definitely not protobuf")
    return ctx.predict(ctx.samples[0], model=model), lambda: ctx.load(model=model)


@row("model-pytorch-checkpoint", 4, "edgepose loads only .onnx graphs or OpenVINO IR")
def _(ctx: Ctx):  # the real yolo11n-pose.pt: refused by form, never unpickled
    return ctx.predict(ctx.samples[0], model=ctx.yolo11_weights), lambda: ctx.load(model=ctx.yolo11_weights)


@row("model-truncated-onnx", 4, "not a loadable ONNX graph")
def _(ctx: Ctx):
    model = ctx.file("cut.onnx", half_of(ctx.yolo11_onnx.read_bytes()))
    return ctx.predict(ctx.samples[0], model=model), lambda: ctx.load(model=model)


@row("model-detection", 4, "'detect' model, not a pose model")
def _(ctx: Ctx):
    return ctx.predict(ctx.samples[0], model=ctx.detect_onnx), lambda: ctx.load(model=ctx.detect_onnx)


@row("model-segmentation", 4, "'segment' model, not a pose model")
def _(ctx: Ctx):
    return ctx.predict(ctx.samples[0], model=ctx.segment_onnx), lambda: ctx.load(model=ctx.segment_onnx)


@row("model-without-metadata", 4, "no Ultralytics/edgepose metadata (no 'task' key)")
def _(ctx: Ctx):
    import onnx

    graph = onnx.load(str(ctx.yolo11_onnx))
    del graph.metadata_props[:]
    onnx.save(graph, str(model := ctx.tmp / "bare.onnx"))
    return ctx.predict(ctx.samples[0], model=model), lambda: ctx.load(model=model)


@row("model-malformed-metadata", 4, "has malformed metadata (TypeError")
def _(ctx: Ctx):
    model = with_metadata(ctx.yolo11_onnx, ctx.tmp / "pose.onnx", "kpt_shape", "17")
    return ctx.predict(ctx.samples[0], model=model), lambda: ctx.load(model=model)


@row("model-fixed-batch-of-2", 4, "takes a fixed batch of 2 images; edgepose runs one image a call")
def _(ctx: Ctx):  # as Ultralytics' export(batch=2) makes it: it failed on the first image as 'unexpected'
    import onnx

    graph = onnx.load(str(ctx.yolo11_onnx))
    graph.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 2
    onnx.save(graph, str(ctx.tmp / "pose.onnx"))
    return ctx.predict(ctx.samples[0], model=ctx.tmp / "pose.onnx"), lambda: ctx.load(model=ctx.tmp / "pose.onnx")


@row("classifier-malformed-metadata", 4, "has malformed classifier metadata (ValueError")
def _(ctx: Ctx):
    clf = with_metadata(YOGA, ctx.tmp / "clf.onnx", "reject", json.dumps({"threshold": "x"}))
    return ctx.predict(ctx.samples[0], "--classifier", clf), lambda: KeypointClassifier(clf)


@row("openvino-ir-without-bin", 4, "its weights file pose.bin is missing")
def _(ctx: Ctx):
    xml = ctx.yolo11_ir_without_bin
    return ctx.predict(ctx.samples[0], model=xml), lambda: ctx.load(model=xml)


@row("classifier-layout-mismatch", 4, "expects 17 keypoints (right_ankle, left_ankle, right_knee, ...)")
def _(ctx: Ctx):
    clf = reversed_layout_classifier(ctx.tmp / "mpii-order.onnx")
    return ctx.predict(ctx.samples[0], "--classifier", clf), lambda: ctx.load(classifier=clf)


@row("pose-graph-as-classifier", 4, "not an edgepose keypoint classifier")
def _(ctx: Ctx):
    csv = write_csv(ctx.tmp / "k.csv", columns(), [["a.jpg", "Tree", *([0.5] * 34)]])
    return ["eval", ctx.yolo11_onnx, csv, "--json", ctx.out / "r.json"], lambda: KeypointClassifier(ctx.yolo11_onnx)


@row("verify-modified-model", 4, "sha256 mismatch")
def _(ctx: Ctx):
    model = flip_byte(ctx.yolo11_onnx, ctx.tmp / "pose.onnx")
    return ctx.predict(ctx.samples[0], "--verify", model=model), lambda: ctx.load(model=model, verify=True)


@row("verify-modified-classifier", 4, "sha256 mismatch")
def _(ctx: Ctx):
    clf = flip_byte(YOGA, ctx.tmp / "yoga.onnx")
    return ctx.predict(ctx.samples[0], "--verify", "-c", clf), lambda: ctx.load(classifier=clf, verify=True)


@row("verify-without-sidecar", 4, "no checksum sidecar pose.onnx.sha256")
def _(ctx: Ctx):
    model = ctx.file("pose.onnx", ctx.yolo11_onnx.read_bytes())
    return ctx.predict(ctx.samples[0], "--verify", model=model), lambda: ctx.load(model=model, verify=True)


# keypoint CSVs (eval; dataset and train read them the same way)
def _csv_row(id: str, fragment: str, header: list[str], rows: list[list[object]], api: bool = True) -> None:
    @row(id, 3, fragment)
    def _(ctx: Ctx):
        csv = write_csv(ctx.tmp / "k.csv", header, rows)
        return ["eval", YOGA, csv, "--json", ctx.out / "r.json"], (lambda: read_table(csv)) if api else None


_csv_row("csv-missing-columns", "missing columns right_ankle_x", columns()[:-2], [["a.jpg", "Tree", *([0.5] * 32)]])
_csv_row("csv-nan", "NaN or infinite keypoint value", columns(), [["a.jpg", "Tree", *([0.5] * 33), "nan"]])
_csv_row(
    "csv-empty-value", "a keypoint value is empty or not a number", columns(), [["a.jpg", "Tree", *([0.5] * 33), ""]]
)
_csv_row("csv-zero-rows", "no rows", columns(), [])
_csv_row("csv-infinite", "NaN or infinite keypoint value", columns(), [["a.jpg", "Tree", *([0.5] * 33), "inf"]])
_csv_row("csv-empty-image-name", "empty image_name", columns(), [["", "Tree", *([0.5] * 34)]])
_csv_row("csv-field-too-large", "not a readable CSV (field larger than field limit", columns(),
         [["a.jpg", "Tree", *([0.5] * 33), "1" * 200_000]])  # fmt: skip


@row("train-too-few-rows", 3, "'Tree' has 1 photo(s); a label needs at least 5")
def _(ctx: Ctx):
    from edgepose.export.classifier import train_classifier

    rows = [["a.jpg", "Tree", *([0.5] * 34)]] + [[f"{i}.jpg", "Plank", *([0.4] * 34)] for i in range(6)]
    csv = write_csv(ctx.tmp / "k.csv", columns(), rows)
    return ["train", csv, "--out", ctx.out, "--epochs", "1"], lambda: train_classifier(csv, ctx.out, epochs=1)


@row("train-one-photo-of-a-label", 3, "'Tree' has 1 photo(s); a label needs at least 5")
def _(ctx: Ctx):  # seven rows of one photo (its persons, or one frame copied): one photo, not seven
    from edgepose.export.classifier import train_classifier

    rows = [["a.jpg", "Tree", *([0.5] * 34)]] * 7 + [[f"{i}.jpg", "Plank", *([0.4] * 34)] for i in range(6)]
    csv = write_csv(ctx.tmp / "k.csv", columns(), rows)
    return ["train", csv, "--out", ctx.out, "--epochs", "1"], lambda: train_classifier(csv, ctx.out, epochs=1)


@row("train-negatives-of-one-photo", 3, "its rows come from one photo")
def _(ctx: Ctx):
    from edgepose.export.classifier import train_classifier

    rows = [[f"{i}.jpg", label, *([v] * 34)] for i in range(6) for label, v in (("Tree", 0.5), ("Plank", 0.4))]
    csv = write_csv(ctx.tmp / "k.csv", columns(), rows)
    negatives = write_csv(ctx.tmp / "n.csv", columns(), [["street.jpg", "none", *([0.3] * 34)]] * 4)
    return (["train", csv, "--negatives", negatives, "--out", ctx.out, "--epochs", "1"],
            lambda: train_classifier(csv, ctx.out, epochs=1, negatives=[negatives]))  # fmt: skip


@row("train-empty-name", 3, "name must be a plain file name (NAME.onnx is written in out), got ''")
def _(ctx: Ctx):
    from edgepose.export.classifier import train_classifier

    csv = write_csv(ctx.tmp / "k.csv", columns(), [[f"{i}.jpg", "Tree", *([0.5] * 34)] for i in range(5)])
    return ["train", csv, "--out", ctx.out, "--name", ""], lambda: train_classifier(csv, ctx.out, name="")


@row("csv-not-utf8", 3, "not a text CSV (not UTF-8)")
def _(ctx: Ctx):
    csv = ctx.file("k.csv", ",".join(columns()).encode() + "\na.jpg,Tr\xe9e\n".encode("latin-1"))
    return ["eval", YOGA, csv, "--json", ctx.out / "r.json"], lambda: read_table(csv)


# the label check needs the classifier's classes: it is part of `eval`, which has no API twin
_csv_row("csv-unknown-label", "labels the classifier does not know: Headstand", columns(),
         [["a.jpg", "Headstand", *([0.5] * 34)]], api=False)  # fmt: skip


@row("csv-missing-file", 3, "no such CSV")
def _(ctx: Ctx):
    return ["eval", YOGA, ctx.tmp / "none.csv"], lambda: read_table(ctx.tmp / "none.csv")


@row("dataset-empty-class-folder", 3, "no images in folder")
def _(ctx: Ctx):
    (ctx.tmp / "images" / "Tree").mkdir(parents=True)
    args = ["dataset", ctx.tmp / "images", "-m", ctx.yolo11_onnx, "--out", ctx.out / "k.csv"]
    return args, lambda: list_images(ctx.tmp / "images" / "Tree")


# CLI values
def _value_row(id: str, code: int, fragment: str, args: list[str], api: dict[str, Any] | None) -> None:
    @row(id, code, fragment)
    def _(ctx: Ctx):
        return ctx.predict(ctx.samples[0], *args), (lambda: ctx.load(**api)) if api is not None else None


_value_row("conf-2", 3, "conf must be between 0 and 1, got 2.0", ["--conf", "2"], {"conf": 2.0})
_value_row("iou-negative", 3, "iou must be between 0 and 1, got -0.1", ["--iou", "-0.1"], {"iou": -0.1})
_value_row("max-det-0", 3, "max_det must be at least 1, got 0", ["--max-det", "0"], {"max_det": 0})
_value_row("imgsz-0", 3, "imgsz must be at least the stride 32, got 0", ["--imgsz", "0"], {"imgsz": 0})
_value_row("imgsz-333-static-graph", 3, "is a static graph of 640x640; re-export with --dynamic",
           ["--imgsz", "333"], {"imgsz": 333})  # fmt: skip
_value_row("device-unknown", 3, "unknown device 'gpu'", ["--device", "gpu"], {"device": "gpu"})
_value_row("spin-on-openvino", 3, "spin is an onnxruntime setting", ["--backend", "openvino", "--spin"],
           {"backend": "openvino", "spin": True})  # fmt: skip
_value_row("threads-0", 2, "Invalid value for '--threads': 0 is not in the range x>=1", ["--threads", "0"], None)
_value_row("conf-not-a-number", 2, "'abc' is not a valid float", ["--conf", "abc"], None)


@row("save-is-a-file", 2, "Invalid value for '--save'")
def _(ctx: Ctx):
    return ["predict", ctx.samples[0], "-m", ctx.yolo11_onnx, "--save", ctx.file("taken", "a file")], None


@row("json-under-a-file", 3, "is a file, not a folder")
def _(ctx: Ctx):
    target = ctx.file("taken", "a file") / "r.json"
    return ["predict", ctx.samples[0], "-m", ctx.yolo11_onnx, "--json", target], lambda: write_json(target, [])


@row("json-is-a-folder", 3, "it is a folder")
def _(ctx: Ctx):
    target = ctx.tmp / "results"
    target.mkdir()
    return ["predict", ctx.samples[0], "-m", ctx.yolo11_onnx, "--json", target], lambda: write_json(target, [])


@row("json-of-a-video-is-a-folder", 3, "it is a folder")
def _(ctx: Ctx):
    target = ctx.tmp / "results"
    target.mkdir()
    return ["predict", ctx.sample_video, "-m", ctx.yolo11_onnx, "--json", target], None


@row("save-cannot-be-made", 3, "taken is a file, not a folder")
def _(ctx: Ctx):
    return ["predict", ctx.samples[0], "-m", ctx.yolo11_onnx, "--save", ctx.file("taken", "a file") / "annotated"], None


@row("save-over-the-inputs", 3, "would write over the input")
def _(ctx: Ctx):
    photos = ctx.tmp / "photos"
    ctx.file("photos/bus.jpg", edgepose.sources.sample_images()[0].read_bytes())
    return ["predict", photos, "-m", ctx.yolo11_onnx, "--save", photos], None


@row("save-over-the-input-video", 3, "would write over the input")
def _(ctx: Ctx):
    clips = ctx.tmp / "clips"
    clips.mkdir()
    video = shutil.copy(ctx.sample_video, clips / "walk.mp4")
    return ["predict", video, "-m", ctx.yolo11_onnx, "--save", clips], None


def val_dataset(ctx: Ctx, label: str, classes: str = "names: {0: person}") -> Path:
    """A one-image pose dataset (the bus photo) whose label file holds ``label``; ``classes``: its yaml's lines on classes."""
    ctx.file("ds/images/val/bus.jpg", edgepose.sources.sample_images()[0].read_bytes())
    ctx.file("ds/labels/val/bus.txt", label)
    return ctx.file("ds/data.yaml", f"path: {ctx.tmp / 'ds'}\nval: images/val\nkpt_shape: [17, 3]\n{classes}\n")


# dataset labels are all checked before the model loads (one error line, no engine line before it)
@row("val-label-not-numbers", 3, "bus.txt: not a YOLO pose label file")
def _(ctx: Ctx):
    data = val_dataset(ctx, "0 a b c d\n")
    return ["val", data, "-m", ctx.yolo11_onnx, "--json", ctx.out / "m.json"], lambda: load_dataset(data)


@row("val-label-class-beyond-names", 3, "bus.txt: class 1 is not among the dataset's 1 classes")
def _(ctx: Ctx):
    data = val_dataset(ctx, "1 0.5 0.5 0.2 0.4" + " 0.5 0.5 2" * 17 + "\n")
    return ["val", data, "-m", ctx.yolo11_onnx, "--json", ctx.out / "m.json"], lambda: load_dataset(data)


@row("val-label-not-normalised", 3, "bus.txt: keypoints beyond 1 or negative values: not normalised")
def _(ctx: Ctx):  # pixel coordinates: Ultralytics drops the image as corrupt; scored, it would match nothing
    data = val_dataset(ctx, "0 0.5 0.5 0.2 0.4" + " 320 240 2" * 17 + "\n")
    return ["val", data, "-m", ctx.yolo11_onnx, "--json", ctx.out / "m.json"], lambda: load_dataset(data)


@row("val-listed-image-missing", 3, "val.txt: no such image")
def _(ctx: Ctx):  # found before the model loads, not when the run reaches it
    data = val_dataset(ctx, "")
    ctx.file("ds/val.txt", "./images/val/bus.jpg\n./images/val/gone.jpg\n")
    data.write_text(data.read_text().replace("val: images/val", "val: val.txt"))
    return ["val", data, "-m", ctx.yolo11_onnx, "--json", ctx.out / "m.json"], lambda: load_dataset(data)


@row("val-model-for-other-keypoints", 3, "the model gives 17 keypoints a person, the dataset labels 5")
def _(ctx: Ctx):  # the 17-point model on a 5-point face dataset: it failed as an unexpected broadcast error
    data = val_dataset(ctx, "0 0.5 0.5 0.2 0.4" + " 0.5 0.5" * 5 + "\n")
    data.write_text(data.read_text().replace("kpt_shape: [17, 3]", "kpt_shape: [5, 2]"))
    return (["val", data, "-m", ctx.yolo11_onnx, "--json", ctx.out / "m.json"],
            lambda: evaluate(ctx.load(), *load_dataset(data)))  # fmt: skip


@row("val-names-and-nc-disagree", 3, "names holds 1 classes but nc is 2")
def _(ctx: Ctx):
    data = val_dataset(ctx, "", "names: {0: person}\nnc: 2")
    return ["val", data, "-m", ctx.yolo11_onnx, "--json", ctx.out / "m.json"], lambda: load_dataset(data)


@row("export-missing-checkpoint", 5, "no such checkpoint")
def _(ctx: Ctx):
    from edgepose.export.pipeline import export_model

    weights = ctx.tmp / "missing.pt"
    return ["export", "--weights", weights, "--out", ctx.out / "models"], lambda: export_model(weights, out=ctx.out)


@row("json-over-the-input", 3, "bus.jpg would write over the input")
def _(ctx: Ctx):  # the photo was replaced by its results
    src = ctx.file("bus.jpg", ctx.samples[0].read_bytes())
    return ["predict", src, "-m", ctx.yolo11_onnx, "--json", src], None


@row("json-over-the-annotated-video", 3, "would write over an annotated output of --save")
def _(ctx: Ctx):  # the records, closed after the video, replaced it
    video = ctx.file("clip.mp4", ctx.sample_video.read_bytes())
    return ["predict", video, "-m", ctx.yolo11_onnx, "--save", ctx.out, "--json", ctx.out / "clip.mp4"], None


@row("stream-options-on-images", 2, "--vid-stride, --no-track apply to videos, cameras and URLs, not images")
def _(ctx: Ctx):  # accepted and unused
    return ["predict", ctx.samples[0], "-m", ctx.yolo11_onnx, "--vid-stride", 5, "--no-track"], None


@row("segment-of-a-video-file", 2, "--segment applies to a live source")
def _(ctx: Ctx):  # a video file is saved whole: one file came out, without a word
    return ["predict", ctx.sample_video, "-m", ctx.yolo11_onnx, "--save", ctx.out, "--segment", 0.2], None


@row("export-opset-out-of-range", 3, "opset must be between 7 and 20 (torch's ONNX exporter), got 99")
def _(ctx: Ctx):  # torch printed its whole IR graph on stdout, then Ultralytics' error
    from edgepose.export.pipeline import export_model

    return ["export", "--opset", 99, "--out", ctx.out], lambda: export_model(opset=99, out=ctx.out)


@row("export-imgsz-for-a-graph", 3, "--imgsz, --opset apply to checkpoints; pose.onnx keeps the shape")
def _(ctx: Ctx):  # a graph has its input size: the IR came out at the graph's, the option unread
    from edgepose.export.pipeline import export_model

    graph = ctx.file("pose.onnx", ctx.yolo11_onnx.read_bytes())
    return (["export", "--weights", graph, "--format", "openvino", "--imgsz", 320, "--opset", 11, "--out", ctx.out],
            lambda: export_model(graph, format="openvino", imgsz=320, opset=11, out=ctx.out))  # fmt: skip


@row("export-calibration-without-int8", 3, "--calib, --keep-float apply to --int8")
def _(ctx: Ctx):  # an FP32 export that silently did not use them
    from edgepose.export.pipeline import export_model

    return (["export", "--calib", ctx.tmp, "--keep-float", "none", "--out", ctx.out],
            lambda: export_model(calib=ctx.tmp, keep_float="none", out=ctx.out))  # fmt: skip


@row("export-json-is-a-folder", 3, "it is a folder")
def _(ctx: Ctx):  # found as the command line is read, not after the export has written its graph
    folder = ctx.tmp / "reports"
    folder.mkdir()
    return ["export", "--json", folder, "--out", ctx.out], None


@pytest.fixture(scope="module")
def segment_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real Ultralytics *segmentation* graph (YOLOv8n-seg architecture), to be refused as not-pose."""
    from ultralytics import YOLO

    weights = tmp_path_factory.mktemp("segment") / "yolov8n-seg.pt"
    YOLO("yolov8n-seg.yaml").save(str(weights))
    return Path(YOLO(str(weights)).export(format="onnx", imgsz=160))


@pytest.fixture(scope="module")
def yolo11_ir_without_bin(yolo11_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The exported graph as OpenVINO IR, with its .bin then deleted (a half-copied model)."""
    import openvino as ov

    xml = tmp_path_factory.mktemp("ir") / "pose.xml"
    ov.save_model(ov.convert_model(str(yolo11_onnx)), str(xml), compress_to_fp16=False)
    xml.with_suffix(".bin").unlink()
    return xml


@pytest.mark.parametrize("case", ROWS, ids=[r.id for r in ROWS])
def test_bad_input_row(case: Row, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    ctx = Ctx(tmp_path, request)
    args, api = case.make(ctx)
    assert_one_line_error(edgepose_cli(*args), case.code, case.fragment)
    assert not ctx.out.exists(), "an output (or the folder for it) was written for a failed run"
    assert not list(ctx.tmp.rglob(".*partial*")), "a temporary output was left behind"
    if api is not None:
        with pytest.raises(API_ERRORS[case.code], match=re.escape(case.fragment)):
            api()
        assert not ctx.out.exists(), "the API left an output (or the folder for it) for a failed call"


def test_a_failed_run_removes_only_the_folders_it_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``output_folder``: kept on success; on failure the folders it made go (deepest first, a
    relative path and one through '..' too), a folder that was there, or holds a result, stays."""
    from edgepose.outputs import output_folder

    monkeypatch.chdir(tmp_path)
    for target in ("a/b/c", "x/../y", "runs"):
        with pytest.raises(KeyboardInterrupt), output_folder(target):
            raise KeyboardInterrupt
        assert list(tmp_path.iterdir()) == [], target
    (tmp_path / "runs").mkdir()
    with pytest.raises(InputError), output_folder("runs/new"):
        raise InputError("failed")
    assert [p.name for p in tmp_path.rglob("*")] == ["runs"]  # there before: kept
    with pytest.raises(InputError), output_folder("runs/new") as folder:
        (folder / "first.jpg").write_bytes(b"a result")
        raise InputError("failed on the second image")
    assert (tmp_path / "runs" / "new" / "first.jpg").is_file()
    with output_folder("ok/deep") as folder:
        (folder / "r.json").write_text("{}")
    assert (tmp_path / "ok" / "deep" / "r.json").is_file() and not list(tmp_path.rglob("*partial*"))


def test_every_row_is_in_the_readme() -> None:
    """The documented table (docs/reference/bad-inputs.md) and this one list the same rows (by id), so neither drifts."""
    readme = (ROOT / "docs" / "reference" / "bad-inputs.md").read_text()
    missing = [r.id for r in ROWS if f"`{r.id}`" not in readme]
    assert not missing, f"rows not in docs/reference/bad-inputs.md: {missing}"


# ---- valid but unusual: must work, converted correctly ------------------------------------------


def image_kinds(folder: Path) -> dict[str, np.ndarray]:
    """Write bus.jpg as every valid kind; return the BGR uint8 a correct reader must give for each."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    image = bus()
    rgb = Image.fromarray(np.ascontiguousarray(image[..., ::-1]))
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    rng = np.random.default_rng(0)
    expected: dict[str, np.ndarray] = {}
    cv2.imwrite(str(folder / "gray.png"), gray)
    expected["gray.png"] = np.repeat(gray[..., None], 3, axis=2)
    alpha = np.tile(np.linspace(0, 255, image.shape[1]).astype(np.uint8), (image.shape[0], 1))
    cv2.imwrite(str(folder / "rgba.png"), np.dstack([image, alpha]))
    expected["rgba.png"] = image  # alpha dropped, colour kept (not blended): what cv2.imread gives Ultralytics
    palette = rgb.quantize(256)
    palette.save(folder / "palette.png")
    expected["palette.png"] = np.asarray(palette.convert("RGB"))[..., ::-1]
    rgb.convert("CMYK").save(folder / "cmyk.jpg", quality=95)
    expected["cmyk.jpg"] = np.asarray(Image.open(folder / "cmyk.jpg").convert("RGB"))[..., ::-1]
    high = image.astype(np.uint16) * 256 + rng.integers(0, 256, image.shape, dtype=np.uint16)
    cv2.imwrite(str(folder / "color16.png"), high)
    expected["color16.png"] = image  # scaled by 1/256 (the high byte): clipping would give all 255
    cv2.imwrite(str(folder / "gray16.png"), high[..., 1])
    expected["gray16.png"] = np.repeat(image[..., 1:2], 3, axis=2)
    cv2.imwrite(str(folder / "gray.jpg"), gray, [cv2.IMWRITE_JPEG_QUALITY, 100])
    expected["gray.jpg"] = np.repeat(cv2.imread(str(folder / "gray.jpg"), cv2.IMREAD_GRAYSCALE)[..., None], 3, axis=2)
    return expected


def test_valid_image_kinds_decode_like_the_reference(tmp_path: Path) -> None:
    for name, want in image_kinds(tmp_path).items():
        got = read_image(tmp_path / name)
        assert got.dtype == np.uint8 and got.shape == (1080, 810, 3), name
        tolerance = 1 if name == "cmyk.jpg" else 0  # Pillow and libjpeg round CMYK->RGB differently by 1
        assert np.abs(got.astype(int) - want.astype(int)).max() <= tolerance, name


def test_valid_image_kinds_find_the_same_persons(yolo11_onnx: Path, tmp_path: Path) -> None:
    image_kinds(tmp_path / "kinds")
    reference = edgepose.load(yolo11_onnx)(bus())
    proc = edgepose_cli("predict", tmp_path / "kinds", "-m", yolo11_onnx, "--json", "-")
    assert proc.returncode == 0 and proc.stderr == ENGINE_LINE, proc.stderr
    results = json.loads(proc.stdout)
    assert len(results) == 7
    ref_boxes = np.array([p.box for p in reference.persons])
    for result in results:
        name, boxes = Path(result["image"]).name, np.array([p["box"] for p in result["persons"]])
        assert len(boxes) == len(ref_boxes) == 4, name
        if name in ("rgba.png", "color16.png"):  # decoded to bus.jpg's very pixels: the very same persons
            np.testing.assert_allclose(boxes, ref_boxes, atol=0.01, err_msg=name)  # JSON: 2 decimals
        else:  # lossy kinds (gray, 256 colours, CMYK): the same persons; the one cut by the frame edge moves most
            assert box_iou(ref_boxes, boxes).max(1).min() > 0.8, name


def test_one_pixel_and_black_frames_give_zero_persons(yolo11_onnx: Path, tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "one.png"), bus()[:1, :1])
    cv2.imwrite(str(tmp_path / "black.jpg"), np.zeros((480, 640, 3), np.uint8))
    proc = edgepose_cli("predict", tmp_path, "-m", yolo11_onnx, "--json", "-")
    assert proc.returncode == 0 and proc.stderr == ENGINE_LINE, proc.stderr
    assert [(r["width"], r["height"], r["persons"]) for r in json.loads(proc.stdout)] == [(640, 480, []), (1, 1, [])]
    predictor = edgepose.load(yolo11_onnx)
    assert len(predictor(np.zeros((1, 1, 3), np.uint8))) == 0
    assert len(predictor(np.zeros((1080, 1920, 3), np.uint8))) == 0


@pytest.mark.parametrize("array", [np.zeros((64, 64), np.uint8), np.zeros((64, 64, 4), np.uint8),
                                   np.zeros((64, 64, 3), np.float32), np.zeros((0, 0, 3), np.uint8)],
                         ids=["2d", "4-channel", "float", "empty"])  # fmt: skip
def test_api_refuses_arrays_that_are_not_bgr_uint8(yolo11_onnx: Path, array: np.ndarray) -> None:
    with pytest.raises(InputError, match=r"expected a BGR uint8 image of shape \(h, w, 3\)"):
        edgepose.load(yolo11_onnx)(array)


@pytest.mark.parametrize("value", [None, 3, b"bus.jpg"], ids=["none", "int", "bytes"])
def test_api_refuses_what_is_neither_image_nor_path(yolo11_onnx: Path, value: object) -> None:
    with pytest.raises(InputError, match=f"expected a BGR image array or a path, got {type(value).__name__}"):
        edgepose.load(yolo11_onnx)(value)  # type: ignore[arg-type]


def _peak_rss_mb(args: list[object], env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess, float]:
    """Run the CLI in a fresh interpreter and return its result and its own peak RSS (MB).

    VmHWM of the child's own address space: ``ru_maxrss`` would not do, Linux carries the parent's
    high-water mark across fork+exec (here pytest's, with torch loaded)."""
    code = (
        "import re, sys\nfrom pathlib import Path\nfrom edgepose.cli import main\n"
        "try:\n    main(sys.argv[1:])\nexcept SystemExit as exit:\n    code = exit.code\n"
        "hwm = re.search(r'VmHWM:\\s+(\\d+) kB', Path('/proc/self/status').read_text())[1]\n"
        "print(f'peak_rss_kb={hwm}', file=sys.stderr)\nsys.exit(code)"
    )
    proc = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, env=env)
    peak = int(re.search(r"peak_rss_kb=(\d+)", proc.stderr)[1]) / 1024
    proc.stderr = re.sub(r"peak_rss_kb=\d+\n", "", proc.stderr)
    return proc, peak


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="peak RSS is read from /proc (Linux only)")
def test_huge_image_works_in_bounded_memory(yolo11_onnx: Path, tmp_path: Path) -> None:
    """10000x10000 works and finds what the photo holds; a decompression bomb is refused before decoding.

    Bound: decoding costs OpenCV ~6 bytes per pixel at peak (the 3-byte image and a decoder
    buffer), so the default limit of 2**27 pixels caps an image at ~0.8 GB over the baseline."""
    image = bus()
    scale = 10000 / image.shape[0]
    big = np.zeros((10000, 10000, 3), np.uint8)
    big[:, :7500] = cv2.resize(image, (7500, 10000), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(tmp_path / "big.jpg"), big, [cv2.IMWRITE_JPEG_QUALITY, 90])
    del big
    base, base_peak = _peak_rss_mb(["predict", edgepose.sources.sample_images()[0], "-m", yolo11_onnx, "--json", "-"])
    proc, peak = _peak_rss_mb(["predict", tmp_path / "big.jpg", "-m", yolo11_onnx, "--json", "-"])
    assert base.returncode == 0 and proc.returncode == 0, proc.stderr
    ref = np.array([p["box"] for p in json.loads(base.stdout)[0]["persons"]]) * scale
    got = json.loads(proc.stdout)[0]
    assert (got["width"], got["height"]) == (10000, 10000)
    ious = box_iou(ref, np.array([p["box"] for p in got["persons"]])).max(1)
    assert len(got["persons"]) == 4 and ious.min() > 0.6 and np.median(ious) > 0.95, ious  # edge person moves most
    assert peak - base_peak < 7 * 10000 * 10000 / 2**20, f"{peak - base_peak:.0f} MB over the baseline"
    bomb, bomb_peak = _peak_rss_mb(["predict", bomb_png(tmp_path / "bomb.png"), "-m", yolo11_onnx])
    assert_one_line_error(bomb, 3, "image too large")
    assert bomb_peak - base_peak < 50, f"the bomb cost {bomb_peak - base_peak:.0f} MB: it was decoded"


def test_pixel_limit_is_configurable(yolo11_onnx: Path, samples: list[Path], tmp_path: Path) -> None:
    import os

    env = {**os.environ, "EDGEPOSE_MAX_PIXELS": "100000"}
    proc = edgepose_cli("predict", samples[0], "-m", yolo11_onnx, env=env)
    assert_one_line_error(proc, 3, "image too large: 810x1080 is over the limit of 100000 pixels")
    with pytest.raises(InputError, match="over the limit of 1000 pixels"):
        read_image(samples[0], max_pixels=1000)
    for value in ("inf", "-5", "lots"):  # inf was an unexpected OverflowError; -5 refused every photo as too large
        proc = edgepose_cli("predict", samples[0], "-m", yolo11_onnx, env={**os.environ, "EDGEPOSE_MAX_PIXELS": value})
        assert_one_line_error(proc, 3, f"EDGEPOSE_MAX_PIXELS must be a whole number of pixels >= 1, got '{value}'")


# ---- folders: bad files are reported and skipped, the rest processed ----------------------------


def test_folder_mixing_images_and_other_files(yolo11_onnx: Path, samples: list[Path], tmp_path: Path) -> None:
    for s in samples:
        (tmp_path / s.name).write_bytes(s.read_bytes())
    (tmp_path / "notes.txt").write_text("not an image, not an image suffix")
    (tmp_path / "README").write_text("no suffix")
    (tmp_path / "sub.jpg").mkdir()  # a folder with an image suffix
    (tmp_path / f"._{samples[0].name}").write_bytes(b"\x00\x05\x16\x07")  # macOS's AppleDouble: hidden, no photo
    proc = edgepose_cli("predict", tmp_path, "-m", yolo11_onnx, "--json", "-")
    assert proc.returncode == 0 and proc.stderr == ENGINE_LINE, proc.stderr
    assert [Path(r["image"]).name for r in json.loads(proc.stdout)] == ["bus.jpg", "zidane.jpg"]


def test_folder_with_bad_files_keeps_going(yolo11_onnx: Path, samples: list[Path], tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.jpg").write_bytes(samples[0].read_bytes())
    (src / "b.jpg").write_text("not an image")
    (src / "c.png").write_bytes(half_of(cv2.imencode(".png", bus())[1].tobytes()))
    (src / "d.jpg").write_bytes(samples[1].read_bytes())
    out = tmp_path / "out"
    proc = edgepose_cli("predict", src, "-m", yolo11_onnx, "--json", out / "r.json", "--save", out / "annotated")
    assert proc.returncode == PartialFailure.exit_code == 6
    lines = proc.stderr.splitlines()
    assert lines == [ENGINE_LINE.strip(), f"warning: skipped not a readable image: {src / 'b.jpg'}",
                     f"warning: skipped corrupt PNG, truncated in its IDAT chunk: {src / 'c.png'}",
                     "error: 2 of 4 images failed and were skipped; the other 2 were processed"]  # fmt: skip
    assert [Path(r["image"]).name for r in json.loads((out / "r.json").read_text())] == ["a.jpg", "d.jpg"]
    assert sorted(p.name for p in (out / "annotated").iterdir()) == ["a.jpg", "d.jpg"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_folder_run_leaves_no_json(yolo11_onnx: Path, samples: list[Path], tmp_path: Path,
                                               sig: signal.Signals) -> None:  # fmt: skip
    """Results go to disk as they are made; a run cut short leaves no file at the --json path, not even
    a partial one, and an earlier file there is kept as it was. --save keeps the annotated images of
    the photos done, each complete (written under a temporary name, then renamed)."""
    src = tmp_path / "in"
    src.mkdir()
    for i in range(200):
        (src / f"{i:03d}.jpg").symlink_to(samples[0])
    out = tmp_path / "r.json"
    out.write_text("earlier")
    proc = subprocess.Popen([sys.executable, "-m", "edgepose", "predict", str(src), "-m", str(yolo11_onnx),
                             "--json", str(out), "--save", str(tmp_path / "annotated")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout.readline().endswith("000.jpg: 4 person(s)\n")  # the run is under way
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130 and stderr == ENGINE_LINE + "error: aborted\n"  # the one error, after the engine line
    assert out.read_text() == "earlier" and sorted(p.name for p in tmp_path.iterdir()) == ["annotated", "in", "r.json"]
    saved = sorted((tmp_path / "annotated").iterdir())
    assert 1 <= len(saved) < 200 and all(p.suffix == ".jpg" and cv2.imread(str(p)) is not None for p in saved)


def test_dataset_with_a_bad_file_keeps_going(yolo11_onnx: Path, samples: list[Path], tmp_path: Path) -> None:
    for label, sample in zip(["Plank", "Tree"], samples):
        (tmp_path / "images" / label).mkdir(parents=True)
        (tmp_path / "images" / label / sample.name).write_bytes(sample.read_bytes())
    (tmp_path / "images" / "Tree" / "broken.jpg").write_text("not an image")
    proc = edgepose_cli("dataset", tmp_path / "images", "-m", yolo11_onnx, "--out", tmp_path / "k.csv")
    assert proc.returncode == 6, proc.stderr
    assert "warning: skipped not a readable image:" in proc.stderr and "broken.jpg" in proc.stderr
    assert proc.stderr.splitlines()[-1] == "error: 1 of 3 images failed and were skipped; the CSV holds the rest"
    assert read_table(tmp_path / "k.csv").labels == ["Plank", "Tree"]


def test_dynamic_graph_rounds_imgsz_to_stride(yolo11_dynamic_onnx: Path, samples: list[Path]) -> None:
    proc = edgepose_cli("predict", samples[1], "-m", yolo11_dynamic_onnx, "--imgsz", "333", "--json", "-")
    assert proc.returncode == 0
    assert proc.stderr == "warning: imgsz 333 is not a multiple of stride 32; using 352\n" + ENGINE_LINE
    assert len(json.loads(proc.stdout)[0]["persons"]) >= 1


def test_json_to_a_device_writes_in_place(yolo11_onnx: Path, samples: list[Path], tmp_path: Path) -> None:
    """``--json /dev/stdout`` or a FIFO is written through, never renamed over: the atomic temp-then-rename
    of a file once replaced /dev/null itself with a regular file."""
    import stat
    import threading

    from edgepose.outputs import write_json

    for how in ("predict", "write_json"):
        fifo = tmp_path / f"{how}.fifo"
        os.mkfifo(fifo)
        got: list[str] = []
        reader = threading.Thread(target=lambda f=fifo, out=got: out.append(f.read_text()))
        reader.start()
        if how == "predict":
            proc = edgepose_cli("predict", samples[0], "-m", yolo11_onnx, "--json", fifo)
            assert proc.returncode == 0, proc.stderr
        else:
            write_json(fifo, {"persons": 4})
        reader.join(timeout=60)
        assert stat.S_ISFIFO(os.stat(fifo).st_mode) and json.loads(got[0]), how
    assert sorted(p.name for p in tmp_path.iterdir()) == ["predict.fifo", "write_json.fifo"]  # no temp file left


@pytest.mark.parametrize("key, value, fragment", [
    ("stride", "0", "has a stride of 0"),  # a division by it when the letterbox rounds to the stride
    ("skeleton", "[[0, 17]]", "a skeleton edge outside its 17 keypoints"),  # an IndexError only when drawn
    ("export_settings", '"fast"', "export_settings is not a mapping"),
    ("export_settings", '{"nms_conf": "x"}', "has malformed metadata (ValueError"),
])  # fmt: skip
def test_malformed_pose_metadata_is_refused_at_load(key: str, value: str, fragment: str) -> None:
    """Metadata a hand edit or damage could leave, refused as ModelError when the graph loads, not
    as an unexpected error later in a run."""
    from edgepose.metadata import ModelMeta

    with pytest.raises(ModelError, match=re.escape(fragment)):
        ModelMeta.parse({"task": "pose", "kpt_shape": "[17, 3]", key: value}, "pose.onnx")


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs Linux's /dev/full (every write: no space left)")
@pytest.mark.parametrize("source", ["image", "video"])
def test_a_full_disk_is_one_error_line(yolo11_onnx: Path, samples: list[Path], sample_video: Path, source: str) -> None:
    """Records that cannot be written (ENOSPC, found once the first result is in: after the engine
    line) end as the user's path error, exit 3, not as an unexpected OSError."""
    proc = edgepose_cli("predict", samples[0] if source == "image" else sample_video, "-m", yolo11_onnx,
                        "--json", "/dev/full")  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.splitlines()[-1] == "error: cannot write /dev/full: No space left on device"
    assert "Traceback" not in proc.stderr
