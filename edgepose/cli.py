"""The ``edgepose`` command. Runtime verbs import only the runtime; ``export`` loads its extra lazily.

Every failure ends as one ``error: ...`` line on stderr and the exit code of its error type
(2 usage or missing extra, 3 bad input, 4 bad model, 5 export failed, 6 some files of a folder run
failed and were skipped, 1 anything else).
"""

from __future__ import annotations

import contextlib
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
from .backends import BACKENDS, OPENVINO_HINTS, OPENVINO_PRECISIONS
from .errors import EdgeposeError, InputError, PartialFailure, apply_only
from .memory import reuse_freed_memory

DEFAULT_POSE_MODEL = "models/yolo11n-pose.onnx"
ENGINE_OPTIONS = ("backend", "device", "threads", "hint", "precision", "spin", "verify", "trt_cache")


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
    if not os.environ.get("EDGEPOSE_DEBUG"):
        from .sources import quiet_decoders

        quiet_decoders()


def _progress(items: Sequence[Any], label: str) -> Iterator[Any]:
    """Iterate with a progress bar on stderr for more than one item, when stderr is a terminal."""
    if len(items) < 2 or not sys.stderr.isatty():
        yield from items
        return
    with click.progressbar(items, label=label, file=sys.stderr) as bar:
        yield from bar


def json_target(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``--json FILE`` checked as the command line is read: a long run must not end on a path it cannot write."""
    if value == "":
        raise click.BadParameter("needs a file name, or - for stdout")
    if value not in (None, "-"):
        from .outputs import check_writable

        check_writable(Path(value))
    return value


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


VERIFY_OPTION = click.option("--verify", is_flag=True,
                             help="Refuse models (and --classifier) whose files differ from their export .sha256 sidecars.")  # fmt: skip


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
        click.option("--threads", type=click.IntRange(min=1), default=None,
                     help="Inference threads (default: engine's; video, camera, serve: cores/2 for onnxruntime)."),
        click.option("--hint", type=click.Choice(OPENVINO_HINTS), default="latency", show_default=True,
                     help="OpenVINO performance hint (video, camera, serve: throughput unless given)."),
        click.option("--precision", type=click.Choice(OPENVINO_PRECISIONS), default="f32", show_default=True,
                     help="OpenVINO CPU inference precision (bf16: faster where the CPU has it, ~1 px drift); "
                          "f16 also turns on TensorRT's FP16 kernels (--device tensorrt)."),
        click.option("--trt-cache", type=click.Path(file_okay=False), default=None,
                     help="--device tensorrt: where TensorRT keeps its built engines [default: "
                          "~/.cache/edgepose/tensorrt]."),
        click.option("--spin/--no-spin", default=False, show_default=True,
                     help="onnxruntime threads busy-wait between runs: faster on a device that runs nothing else."),
        click.option("--iou", type=float, default=0.7, show_default=True, help="NMS IoU threshold."),
        click.option("--max-det", type=int, default=300, show_default=True),
        VERIFY_OPTION,
    ]):  # fmt: skip
        wrapper = option(wrapper)
    return wrapper


TRACK_OPTIONS = ("track", "smooth", "hysteresis", "min_cutoff", "beta", "low_conf", "confirm")


def _refuse_unused(names: Sequence[str], why: str) -> None:
    """Options given on the command line that this run would not use: a usage error, not silence."""
    from click.core import ParameterSource

    ctx = click.get_current_context()
    given = [f"--{'no-' if ctx.params.get(n) is False else ''}{n.replace('_', '-')}" for n in names
             if ctx.get_parameter_source(n) == ParameterSource.COMMANDLINE]  # fmt: skip
    if given:
        raise click.UsageError(apply_only(given, why))


def _stream_options(func: Any) -> Any:
    """Options of the video/camera/URL path (edgepose.stream, edgepose.track modules); they arrive as ``vid_stride`` and
    ``tracking`` (a ``TrackOptions``). Ids, smoothing and hysteresis never apply to single images."""

    @functools.wraps(func)
    def wrapper(**kwargs: Any) -> Any:
        from .track import TrackOptions

        return func(tracking=TrackOptions(**{k: kwargs.pop(k) for k in TRACK_OPTIONS}), **kwargs)

    for option in reversed([
        click.option("--vid-stride", type=click.IntRange(min=1), default=1, show_default=True,
                     help="Video: keep every Nth frame."),
        click.option("--track/--no-track", default=True, show_default=True,
                     help="Video: persistent person ids (off also turns off smoothing and hysteresis)."),
        click.option("--smooth/--no-smooth", default=True, show_default=True, help="Video: One-Euro keypoint smoothing."),
        click.option("--min-cutoff", type=float, default=1.0, show_default=True,
                     help="Video: One-Euro cutoff (Hz) of a still keypoint; lower is smoother."),
        click.option("--beta", type=float, default=0.02, show_default=True,
                     help="Video: One-Euro speed coefficient (per px/s); higher lags less."),
        click.option("--hysteresis", type=click.IntRange(min=1), default=5, show_default=True,
                     help="Video: frames a new label must win before it is shown (1: off)."),
        click.option("--low-conf", type=click.FloatRange(0, 1), default=0.1, show_default=True,
                     help="Video: a shown person stays while its score is at least this; a new one needs --conf."),
        click.option("--confirm", type=click.IntRange(min=1), default=3, show_default=True,
                     help="Video: frames in a row a new person must be found at --conf before it is shown (1: at once)."),
    ]):  # fmt: skip
        wrapper = option(wrapper)
    return wrapper


def _stream_predictor(model: str, engine: dict[str, Any], **kwargs: Any) -> Any:
    """A predictor loaded for a stream: OpenVINO's throughput hint unless --hint was given, and
    onnxruntime threads split over two frames in flight unless --threads was given."""
    from click.core import ParameterSource

    from .predictor import load
    from .stream import stream_engine

    if click.get_current_context().get_parameter_source("hint") == ParameterSource.DEFAULT:
        engine = {**engine, "hint": None}
    return load(model, **stream_engine(model, engine), **kwargs)


def _announce_engine(predictor: Any) -> None:
    """Say once on stderr what runs (provider; OpenVINO's compiled precision, with the request where they
    differ): a result depends on it, and a fallback would otherwise pass unseen. Said once the input
    has proved readable, so a bad input still gets its one ``error:`` line alone."""
    from .backends import describe_engine

    click.echo(f"engine: {describe_engine(predictor.backend.engine)}", err=True)


@cli.command()
@click.argument("source", required=False)
@_predictor_options
@click.option("--conf", type=float, default=0.25, show_default=True, help="Person score threshold.")
@click.option(
    "--classifier",
    "-c",
    default=None,
    help="Keypoint classifier graph: adds label, label_score (and pose_score; label null: no known pose).",
)
@click.option(
    "--json",
    "json_out",
    default=None,
    callback=json_target,
    help="Write results here as a JSON array ('-': stdout; there JSON Lines for a video, camera or URL).",
)
@click.option("--save", type=click.Path(file_okay=False), default=None, help="Folder for annotated images or video.")
@click.option("--segment", type=click.FloatRange(min=0), default=600, show_default=True,
              help="Camera or URL with --save: a new video file every N seconds, each complete once the next "
                   "begins (0: one file, complete at the end).")  # fmt: skip
@_stream_options
def predict(source: str | None, model: str, imgsz: int | None, engine: dict[str, Any], iou: float, max_det: int, conf: float,
            classifier: str | None, json_out: str | None, save: str | None, segment: float, vid_stride: int,
            tracking: Any) -> None:  # fmt: skip
    """Find persons and keypoints in an image, a folder (default: the bundled samples), a video file,
    a camera index (0) or a stream URL."""
    from .predictor import load
    from .sources import list_images, sample_images
    from .video_source import is_stream_source

    if source and is_stream_source(source):  # video, camera or URL: the stream path (edgepose.video)
        from .video import predict_stream, video_name

        if Path(source).is_file():
            _refuse_unused(["segment"], "to a live source (a camera or URL): a video file's is saved whole")
            _refuse_overwriting(
                [Path(source)], [Path(save) / video_name(source, False)] if save else [], save, json_out
            )
        if not save:
            _refuse_unused(["segment"], "with --save (the files the annotated video is cut into)")
        predictor = _stream_predictor(model, engine, conf=conf, iou=iou, max_det=max_det, imgsz=imgsz,
                                      classifier=classifier)  # fmt: skip
        with _saving(save):
            predict_stream(source, predictor, save=save, json_out=json_out, vid_stride=vid_stride, track=tracking,
                           echo=lambda line: click.echo(line, err=json_out == "-"),
                           on_first_frame=lambda: _announce_engine(predictor), segment=segment)  # fmt: skip
        return
    _refuse_unused(["vid_stride", *TRACK_OPTIONS, "segment"], "to videos, cameras and URLs, not images")
    paths = list_images(source) if source else sample_images()
    _refuse_overwriting(paths, [Path(save) / path.name for path in paths] if save else [], save, json_out)
    predictor = load(model, **engine, conf=conf, iou=iou, max_det=max_det, imgsz=imgsz, classifier=classifier)
    _predict_folder(paths, predictor, json_out, save)


def _refuse_overwriting(inputs: Sequence[Path], outputs: list[Path], save: str | None, json_out: str | None) -> None:
    """An output would replace an input (--save naming the input's own folder, --json naming an
    input) or --json an annotated output: refused before the model loads."""
    clash = [i for i, o in zip(inputs, outputs) if o.exists() and o.resolve() == i.resolve()]
    if clash:
        raise InputError(f"--save {save} would write over the input {clash[0]}: save somewhere else")
    if json_out in (None, "-"):
        return
    target = Path(json_out).resolve()  # names compared first: a folder of 100,000 photos resolves none of them
    if target.exists() and any(i.name == target.name and i.resolve() == target for i in inputs):
        raise InputError(f"--json {json_out} would write over the input {json_out}: write it somewhere else")
    if any(o.name == target.name and o.resolve() == target for o in outputs):
        raise InputError(f"--json {json_out} would write over an annotated output of --save {save}")


def _saving(save: str | None) -> contextlib.AbstractContextManager:
    """The --save folder, made (and proved writable) before the first frame or image, and removed
    again if the run fails with nothing in it."""
    from .outputs import output_folder

    return output_folder(save) if save else contextlib.nullcontext()


def _predict_folder(paths: list[Path], predictor: Any, json_out: str | None, save: str | None) -> None:
    """Images one at a time, each result written as it is made (nothing kept per image, so memory
    stays flat on a folder of any size); a signal stops between two images and leaves no JSON."""
    from .draw import draw_result
    from .outputs import write_image
    from .sources import read_image
    from .video import Interrupt, JsonRecords

    done = failed = 0
    with _saving(save):
        records = JsonRecords(json_out, lines=False) if json_out else None
        try:
            with Interrupt(lambda: None) as interrupt:
                for path in _progress(paths, "predict"):
                    if interrupt.signal is not None:
                        raise click.Abort
                    try:  # one bad file must not end a folder run: report it, skip it, keep going
                        image = read_image(path)
                        result = predictor(image, name=str(path))
                    except InputError as exc:
                        if len(paths) == 1:
                            raise
                        click.echo(f"warning: skipped {exc}", err=True)
                        failed += 1
                        continue
                    done += 1
                    if done == 1:
                        _announce_engine(predictor)
                    if records:
                        records.write(result.to_dict())
                    if json_out != "-":
                        click.echo(f"{result.image}: {len(result.persons)} person(s)")
                    if save:
                        write_image(Path(save) / path.name, draw_result(image, result, predictor.meta.skeleton))
                if interrupt.signal is not None:
                    raise click.Abort
            if not done:
                raise InputError(f"none of the {len(paths)} images could be read (each reported above)")
            if records:
                records.close()
        except BaseException:
            if records:
                records.abort()
            raise
    if save:
        click.echo(f"annotated images in {save}", err=json_out == "-")
    if failed:
        raise PartialFailure(f"{failed} of {len(paths)} images failed and were skipped; the other {done} "
                             "were processed")  # fmt: skip


@cli.command()
@click.argument("model", type=click.Path())
@click.option("--backend", type=click.Choice(BACKENDS), default="auto", show_default=True,
              help="auto: OpenVINO for IR, onnxruntime for .onnx.")  # fmt: skip
@click.option("--device", default=None, help="As predict's: the engine reported is the one this device compiles.")
@click.option("--precision", type=click.Choice(OPENVINO_PRECISIONS), default="f32", show_default=True,
              help="OpenVINO CPU inference precision to ask for; 'engine' says what compiled.")  # fmt: skip
@VERIFY_OPTION
def info(model: str, backend: str, device: str | None, precision: str, verify: bool) -> None:
    """Print the metadata embedded in an exported graph (a pose graph, or a keypoint classifier:
    its classes, the "no known pose" threshold and its training report), and the engine that runs it."""
    from .backends import open_backend
    from .classifier import CLASSIFIER_TASK
    from .metadata import ModelMeta, parse_value

    opened = open_backend(model, backend=backend, device=device, precision=precision, verify=verify)
    raw = {key: parse_value(value) for key, value in opened.metadata.items()}
    if raw.get("task") == CLASSIFIER_TASK:
        payload = {"model": model, **raw, "engine": opened.engine}
    else:
        meta = ModelMeta.parse(opened.metadata, source=model)
        payload = {"model": model, "input_shape": list(opened.input_shape), "output_shape": list(opened.output_shape),
                   "engine": opened.engine, **meta.raw}  # fmt: skip
    click.echo(json.dumps(payload, indent=2, default=str))


# the other verbs register themselves on ``cli``
from . import cli_accuracy, cli_bench, cli_classifier, cli_export, cli_serve  # noqa: E402, F401


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: run the CLI and turn every failure into one ``error:`` line."""
    _setup_logging()
    reuse_freed_memory()  # this process is edgepose's own: keep per-frame buffers (see edgepose.memory)
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
