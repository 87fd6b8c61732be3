"""``edgepose serve`` of the ``edgepose`` command: a kiosk's local server of the live annotated stream.

Registered on the group in ``edgepose.cli`` (which imports this module); the serve extra is loaded
only when the verb runs.
"""

from __future__ import annotations

from typing import Any

import click

from .cli import _announce_engine, _predictor_options, _stream_options, _stream_predictor, cli
from .errors import InputError


@cli.command()
@click.option("--source", default="0", show_default=True, help="Camera index, video file or stream URL.")
@_predictor_options
@click.option("--conf", type=float, default=0.25, show_default=True, help="Person score threshold.")
@click.option("--classifier", "-c", default=None, help="Keypoint classifier graph: adds label, label_score.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every interface).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--loop/--no-loop", default=False, show_default=True, help="Video file: start again at its end.")
@click.option("--max-clients", type=click.IntRange(min=1), default=8, show_default=True,
              help="Open /stream.mjpg + /events responses; more get 503.")  # fmt: skip
@click.option("--rate", type=click.FloatRange(min=0.1), default=20.0, show_default=True,
              help="Requests per second per client address (bursts of 2x); more get 429.")  # fmt: skip
@click.option("--max-body", type=click.IntRange(min=0), default=1024, show_default=True,
              help="Largest request body in bytes; larger get 413.")  # fmt: skip
@_stream_options
def serve(source: str, model: str, imgsz: int | None, engine: dict[str, Any], iou: float, max_det: int, conf: float,
          classifier: str | None, host: str, port: int, loop: bool, max_clients: int, rate: float, max_body: int,
          vid_stride: int, tracking: Any) -> None:  # fmt: skip
    """Serve the live annotated stream, labels and per-frame JSON over HTTP (a kiosk's local server)."""
    from .errors import MissingExtraError

    try:
        from .serve import ServeLimits, run_server
    except ImportError as exc:
        raise MissingExtraError("serve", exc.name or "a dependency") from None
    from .stream import Stream
    from .video_source import is_stream_source

    if not (source.isdigit() or is_stream_source(source)):
        raise InputError(f"--source must be a camera index, a video file or a stream URL, got {source!r}")
    limits = ServeLimits(max_clients=max_clients, rate=rate, burst=max(1, round(2 * rate)), max_body=max_body)
    predictor = _stream_predictor(model, engine, conf=conf, iou=iou, max_det=max_det, imgsz=imgsz,
                                  classifier=classifier)  # fmt: skip
    camera = int(source) if source.isdigit() else source  # a camera index even beside a folder named 0
    stream = Stream(camera, predictor, vid_stride=vid_stride, track=tracking, realtime=True, loop=loop)

    def announce(line: str) -> None:  # once the server is up: what runs, then where
        _announce_engine(predictor)
        click.echo(line, err=True)

    run_server(stream, host=host, port=port, limits=limits, announce=announce)
