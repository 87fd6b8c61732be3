"""``edgepose bench`` of the ``edgepose`` command: its options and the run (``edgepose.bench``), the
report as a table, JSON, Markdown and a plot.

Registered on the group in ``edgepose.cli`` (which imports this module).
"""

from __future__ import annotations

import click

from .cli import DEFAULT_POSE_MODEL, _emit_json, _progress, cli, json_target


@cli.command()
@click.option(
    "--model",
    "-m",
    multiple=True,
    default=(DEFAULT_POSE_MODEL,),
    show_default=True,
    help="Pose graph: .onnx, or OpenVINO IR (.xml or its folder). Repeatable: the models are timed in the "
    "same rounds and each is compared with the first one given on the same backend and device.",
)
@click.option("--classifier", "-c", default=None, help="Keypoint classifier graph: adds the classifier stage.")
@click.option(
    "--backend",
    default="auto",
    show_default=True,
    help="onnxruntime, openvino, or both comma-separated (auto: by the model's form).",
)
@click.option(
    "--devices",
    default=None,
    help="Comma list: onnxruntime cpu,cuda,tensorrt,openvino,coreml; OpenVINO CPU,GPU,NPU,AUTO; "
    "'openvino:GPU' pins one. Unavailable ones are reported as skipped. Default: the CPU.",
)
@click.option("--images", type=click.Path(), default=None, help="Folder or image (default: the bundled samples).")
@click.option("--imgsz", type=int, default=None, help="Input size for dynamic graphs.")
@click.option("--warmup", type=click.IntRange(min=0), default=3, show_default=True, help="Untimed runs first.")
@click.option("--runs", type=click.IntRange(min=1), default=None, help="Timed runs per device [default: 50].")
@click.option(
    "--seconds",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Instead of --runs: as many runs as fit in this many seconds per device.",
)
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Inference threads (default: engine's).")
@click.option(
    "--streams",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Also measure N frames in flight (N >= 2): FPS against single-stream latency.",
)
@click.option(
    "--video",
    default=None,
    metavar="FILE|sample",
    help="Also measure stream FPS on this video: edgepose's overlapped stream against one frame at a time "
    "('sample': a video made from the bundled photos).",
)
@click.option("--video-rounds", type=click.IntRange(min=1), default=6, show_default=True,
              help="Alternating one-frame-at-a-time / overlapped passes over --video.")  # fmt: skip
@click.option(
    "--precision",
    default="f32",
    show_default=True,
    help="OpenVINO CPU inference precision (f32, bf16, f16); a comma list (f32,bf16) measures each.",
)
@click.option("--spin", is_flag=True,
              help="Also time onnxruntime on cpu with its threads busy-waiting between runs (onnxruntime's default).")  # fmt: skip
@click.option("--conf", type=float, default=0.25, show_default=True)
@click.option("--iou", type=float, default=0.7, show_default=True)
@click.option("--max-det", type=int, default=300, show_default=True)
@click.option(
    "--cold-start/--no-cold-start",
    default=True,
    show_default=True,
    help="Time a fresh process from spawn to first result (and its peak RSS).",
)
@click.option(
    "--compare-ultralytics",
    "ultralytics",
    multiple=True,
    metavar="WEIGHTS",
    help="Also time Ultralytics' predict on this .pt/.onnx (needs the export extra); repeatable.",
)
@click.option("--json", "json_out", default=None, callback=json_target, help="Write the report here ('-' for stdout).")
@click.option("--markdown", type=click.Path(dir_okay=False), default=None, help="Write the report as Markdown.")
@click.option(
    "--plot",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write per-stage latency bars as PNG (needs the bench extra: matplotlib).",
)
def bench(model: tuple[str, ...], classifier: str | None, backend: str, devices: str | None, images: str | None,
          imgsz: int | None, warmup: int, runs: int | None, seconds: float | None, threads: int | None, streams: int,
          video: str | None, video_rounds: int, precision: str, spin: bool, conf: float, iou: float, max_det: int,
          cold_start: bool, ultralytics: tuple[str, ...], json_out: str | None, markdown: str | None,
          plot: str | None) -> None:  # fmt: skip
    """Latency per stage, bare forward pass, cold start and memory per model, backend and device."""
    from .bench import BenchSettings, run_bench
    from .bench_report import format_table, to_markdown, write_plot
    from .outputs import write_bytes_atomic

    if plot:  # fail before minutes of measuring, not after
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            from .errors import MissingExtraError

            raise MissingExtraError("bench", "matplotlib") from None
    settings = BenchSettings(model=model, classifier=classifier, backend=backend, devices=devices, images=images,
                             imgsz=imgsz, warmup=warmup, runs=runs, seconds=seconds, threads=threads, streams=streams,
                             video=video, video_rounds=video_rounds, precision=precision, spin=spin, conf=conf, iou=iou,
                             max_det=max_det, cold_start=cold_start, compare_ultralytics=ultralytics)  # fmt: skip
    report = run_bench(settings, progress=_progress)
    click.echo(format_table(report), err=json_out == "-")
    _emit_json(json_out, report)
    if markdown:
        write_bytes_atomic(markdown, to_markdown(report).encode())
    if plot:
        write_plot(report, plot)
