"""``edgepose val`` and ``edgepose compare``: accuracy on a labelled dataset, and drift and agreement
between two models (or two runs' JSON); ``print_accuracy`` is shared with ``export --report``.

Registered on the group in ``edgepose.cli`` (which imports this module).
"""

from __future__ import annotations

from typing import Any

import click

from .cli import _announce_engine, _emit_json, _predictor_options, _progress, cli, json_target
from .errors import InputError


def print_accuracy(report: dict[str, Any], to_stderr: bool) -> None:
    p, d = report["persons"], report["keypoint_drift_px"]
    click.echo(f"  accuracy on {report['images']} image(s): persons matched {p['matched']}, missed {p['missed']}, "
               f"extra {p['extra']}; keypoint drift mean {d['mean']:.3f} px, p95 {d['p95']:.3f}, max {d['max']:.3f}",
               err=to_stderr)  # fmt: skip
    if "labels" in report:
        click.echo(f"  labels: {report['labels']['same']} of {report['labels']['compared']} the same", err=to_stderr)
    if "map" in report:
        m = report["map"]
        click.echo(f"  pose mAP50-95 {m['reference']['pose_map50_95']:.4f} -> {m['candidate']['pose_map50_95']:.4f} "
                   f"({m['pose_map50_95_delta']:+.4f}; 95% interval over images "
                   f"{m['pose_map50_95_delta_ci95'][0]:+.4f} to {m['pose_map50_95_delta_ci95'][1]:+.4f})",
                   err=to_stderr)  # fmt: skip


@cli.command()
@click.argument("data", type=click.Path())
@_predictor_options
@click.option("--conf", type=float, default=0.001, show_default=True, help="Score threshold (as yolo val).")
@click.option("--split", default="val", show_default=True)
@click.option("--json", "json_out", default=None, callback=json_target, help="Write the metrics here ('-' for stdout).")
def val(data: str, model: str, imgsz: int | None, engine: dict[str, Any], iou: float, max_det: int, conf: float, split: str,
        json_out: str | None) -> None:  # fmt: skip
    """Pose and box mAP on a YOLO-format pose dataset, computed as 'yolo val pose' does."""
    from .predictor import load
    from .val import evaluate, load_dataset, require_keypoints

    images, spec = load_dataset(data, split)
    predictor = load(model, **engine, conf=conf, iou=iou, max_det=max_det, imgsz=imgsz)
    require_keypoints(len(predictor.keypoint_names), spec)
    _announce_engine(predictor)
    metrics = evaluate(predictor, images, spec, conf=conf, progress=lambda x: _progress(list(x), "val"))
    metrics = {"model": model, "data": data, **metrics}
    if metrics["labels_left_out"]:
        click.echo(f"warning: {metrics['labels_left_out']} label(s) of classes the model cannot predict (it has "
                   f"{len(predictor.names)}) left out, as yolo val does", err=True)  # fmt: skip
    if json_out != "-":
        click.echo(
            f"{metrics['images']} images, {metrics['instances']} labelled instances: "
            f"pose mAP50-95 {metrics['pose_map50_95']:.4f}  mAP50 {metrics['pose_map50']:.4f}  "
            f"box mAP50-95 {metrics['box_map50_95']:.4f}  mAP50 {metrics['box_map50']:.4f}"
        )
    _emit_json(json_out, metrics)


@cli.command()
@click.argument("reference", type=click.Path())
@click.argument("candidate", type=click.Path())
@click.option("--images", type=click.Path(), default=None, help="Folder of real images (default: the samples).")
@click.option("--data", type=click.Path(), default=None, help="YOLO pose dataset yaml: adds OKS mAP of both.")
@click.option("--conf", type=float, default=0.25, show_default=True)
@click.option("--imgsz", type=int, default=None, help="Input size for dynamic graphs and .pt checkpoints.")
@click.option("--json", "json_out", default=None, callback=json_target, help="Write the report here ('-' for stdout).")
def compare(reference: str, candidate: str, images: str | None, data: str | None, conf: float, imgsz: int | None,
            json_out: str | None) -> None:  # fmt: skip
    """Keypoint drift (px), detection agreement and mAP of CANDIDATE against REFERENCE.

    Each is a graph (.onnx on onnxruntime, OpenVINO IR on OpenVINO) or a .pt run by Ultralytics; or
    both are 'predict --json' files of the same images, made elsewhere (another device, another build)."""
    from .compare import accuracy_report, compare_result_files
    from .sources import list_images, sample_images

    if reference.endswith(".json") and candidate.endswith(".json"):
        if images or data:
            raise InputError("--images and --data run models; two JSON files are compared as they are")
        report = compare_result_files(reference, candidate)
    else:
        paths = list_images(images) if images else sample_images()
        report = accuracy_report(reference, candidate, paths, data, progress=lambda x: _progress(x, "compare"),
                                 conf=conf, imgsz=imgsz)  # fmt: skip
    if json_out != "-":
        print_accuracy(report, False)
    _emit_json(json_out, report)
