"""Video files, cameras and stream URLs through a predictor, with reading, inference and
postprocessing overlapped.

    with edgepose.open_stream("video.mp4", predictor) as frames:  # or 0 (a camera), "rtsp://..."
        for result in frames:                                   # a Result per frame, in order
            ...

The pipeline: a reader thread decodes (skipping ``vid_stride - 1`` frames between two it keeps)
and letterboxes into a bounded queue; up to ``workers`` inferences are in flight (OpenVINO async
infer requests, or onnxruntime sessions run from a small thread pool); the caller's thread
decodes the head outputs, tracks, smooths and classifies, in frame order. Live sources (cameras,
URLs without a frame count, files played in ``realtime``) drop the oldest queued frame when the
model is slower than the camera, so what is shown is recent; files are never dropped from.
"""

from __future__ import annotations

import collections
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from .device_info import usable_cores
from .errors import InputError
from .results import Result
from .track import Stabilizer, TrackOptions
from .video_source import VideoSource


@dataclass
class Frame:
    """One kept frame: its index in the source, its time in seconds, the image and its prepared tensor."""

    index: int
    time: float
    image: np.ndarray
    prepared: Any = None


_END = object()


class FrameReader:
    """A thread that reads frames into a bounded queue: drop the oldest when live, block when not."""

    def __init__(self, source: VideoSource, prepare: Callable[[np.ndarray], Any] | None = None, vid_stride: int = 1,
                 queue_size: int = 4, drop: bool = False, realtime: bool = False, loop: bool = False) -> None:  # fmt: skip
        if vid_stride < 1:
            raise InputError(f"vid_stride must be at least 1, got {vid_stride}")
        if queue_size < 1:
            raise InputError(f"queue_size must be at least 1, got {queue_size}")
        self.source, self.prepare, self.vid_stride = source, prepare, vid_stride
        self.drop, self.realtime, self.loop = drop, realtime, loop
        self.queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self.stopped = threading.Event()
        self.dropped = 0  # frames read but never handed on (live sources only)
        self._thread = threading.Thread(target=self._run, name="edgepose-reader", daemon=True)

    def start(self) -> FrameReader:
        self._thread.start()
        return self

    def _put(self, item: Any) -> None:
        while not self.stopped.is_set():
            if self.drop and item is not _END and not isinstance(item, BaseException):
                try:
                    self.queue.put_nowait(item)
                    return
                except queue.Full:
                    try:
                        self.queue.get_nowait()
                        self.dropped += 1
                    except queue.Empty:
                        pass
                    continue
            try:
                self.queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _run(self) -> None:
        source, start = self.source, time.monotonic()
        index, base = -1, 0  # index of the last grabbed frame; base: frames before this loop pass
        try:
            while not self.stopped.is_set():
                if not source.grab():
                    if self.loop and source.kind == "file" and index >= 0 and source.rewind():
                        base, index = base + index + 1, -1
                        continue
                    break
                index += 1
                if (base + index) % self.vid_stride:  # skipped: grabbed, never converted to an image
                    continue
                image = source.retrieve()
                if image is None:
                    break
                number = base + index
                if source.live:
                    stamp = time.monotonic() - start
                else:
                    stamp = number / source.fps
                    if self.realtime:  # play a file as a camera would deliver it
                        delay = start + stamp - time.monotonic()
                        if delay > 0 and self.stopped.wait(delay):
                            break
                prepared = self.prepare(image) if self.prepare else None
                self._put(Frame(number, stamp, image, prepared))
        except BaseException as exc:  # handed to the consumer, raised there
            self._put(exc)
        finally:
            self._put(_END)
            source.release()  # by this thread alone: OpenCV's capture is not thread-safe (see ``stop``)

    def get(self, block: bool = True) -> Frame | None | bool:
        """The next frame; None at the end of the source; False when not blocking and none is ready.
        Re-raises the reader's failure."""
        while True:
            try:
                item = self.queue.get(timeout=0.1) if block else self.queue.get_nowait()
            except queue.Empty:
                if self.stopped.is_set() or (not self._thread.is_alive() and self.queue.empty()):
                    return None  # stopped: a camera stalled in its read must not keep the caller waiting
                if not block:
                    return False
                continue
            if item is _END:
                return None
            if isinstance(item, BaseException):
                raise item
            return item

    def stop(self) -> None:
        """End the reading. A running reader releases the source itself when its current read
        returns (a stalled camera's may outlast the 5 s waited here); one never started, here."""
        self.stopped.set()
        if self._thread.ident is not None:
            self._thread.join(timeout=5)
        else:
            self.source.release()


class InferencePool:
    """Up to ``workers`` head outputs in flight, handed back in submission order.

    OpenVINO: one async infer request per slot on the compiled model. Other engines: a thread
    pool calling ``backend.run`` (onnxruntime releases the GIL and its sessions are thread-safe).
    One slot more than ``workers`` is kept so the caller's postprocessing overlaps inference.
    """

    def __init__(self, backend: Any, workers: int | None = None) -> None:
        self.backend = backend
        compiled = getattr(backend, "compiled", None)
        self.workers = workers or default_workers(backend)
        if self.workers < 1:
            raise InputError(f"workers must be at least 1, got {self.workers}")
        self.depth = self.workers + 1
        self._requests = [compiled.create_infer_request() for _ in range(self.depth)] if compiled else []
        self._executor = None if compiled else ThreadPoolExecutor(self.workers, thread_name_prefix="edgepose-infer")
        self._submitted = 0

    def submit(self, tensor: np.ndarray) -> Callable[[], np.ndarray]:
        """Start inference on ``tensor``; the returned callable waits for and returns the head output."""
        if self._executor is not None:
            future: Future = self._executor.submit(self.backend.run, tensor)
            return future.result
        request = self._requests[self._submitted % self.depth]
        self._submitted += 1
        request.start_async({0: tensor}, share_inputs=True)

        def result(request: Any = request, keep: np.ndarray = tensor) -> np.ndarray:
            request.wait()
            return request.get_output_tensor(0).data.copy()

        return result

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
        for request in self._requests:
            request.wait()


def default_workers(backend: Any) -> int:
    """How many frames to infer at once: OpenVINO's optimal number of requests for the compiled
    hint (1 for latency); for onnxruntime, cores / intra-op threads (1 when it uses every core)."""
    compiled = getattr(backend, "compiled", None)
    if compiled is not None:
        try:
            return max(1, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        except Exception:  # a plugin without the property
            return 1
    session = getattr(backend, "session", None)
    if session is None:
        return 1
    threads = session.get_session_options().intra_op_num_threads
    return max(1, min(4, usable_cores() // threads)) if threads > 0 else 1


def stream_engine(model: str | os.PathLike, engine: dict[str, Any]) -> dict[str, Any]:
    """Engine settings that suit a stream, where ``engine`` leaves them open (missing or None).

    OpenVINO: the throughput hint (OpenVINO then runs several requests at once). onnxruntime:
    half the cores per session, so two frames are inferred at once (on 2 cores: 1 thread each),
    which outruns one frame on every core because a small model does not keep all threads busy."""
    from .backends import resolve_backend

    out = dict(engine)
    if resolve_backend(model, out.get("backend") or "auto") == "openvino":
        if out.get("hint") is None:
            out["hint"] = "throughput"
    elif out.get("threads") is None:  # onnxruntime has no hint
        out["threads"] = max(1, usable_cores() // 2)
    return out


class Stream:
    """A source's frames through a predictor, in order: iterate for ``Result``s, or
    ``iter_frames()`` for ``(image, Result)``. Close it (or use ``with``) to stop the reader."""

    def __init__(self, source: str | int | os.PathLike, predictor: Any, *, vid_stride: int = 1,
                 track: TrackOptions | None = None, workers: int | None = None, queue_size: int | None = None,
                 drop: bool | None = None, realtime: bool = False, loop: bool = False) -> None:  # fmt: skip
        self.predictor = predictor
        self.source = VideoSource(source)
        self.live = self.source.live or realtime
        drop = self.live if drop is None else drop
        try:
            self.reader = FrameReader(self.source, predictor.preprocess, vid_stride=vid_stride,
                                      queue_size=queue_size or (2 if drop else 8), drop=drop,
                                      realtime=realtime, loop=loop)  # fmt: skip
        except BaseException:  # a bad option: the camera is not left open (and busy)
            self.source.release()
            raise
        self.options = track if track is not None else TrackOptions()
        self.stabilizer = Stabilizer(self.options, predictor.classifier, predictor.conf)
        self.workers = workers
        self.frames = 0  # results handed out
        self._started = False
        self._closed = False
        self._stop = threading.Event()

    @property
    def fps(self) -> float:
        """Frames per second of the kept frames (the source's fps / vid_stride)."""
        return self.source.fps / self.reader.vid_stride

    @property
    def size(self) -> tuple[int, int]:
        return self.source.width, self.source.height

    @property
    def dropped(self) -> int:
        return self.reader.dropped

    def iter_frames(self) -> Iterator[tuple[np.ndarray, Result]]:
        """``(image, result)`` per kept frame, in source order; the stream closes when this ends."""
        if self._started:
            raise InputError("a stream can be iterated once")
        self._started = True
        pool = InferencePool(self.predictor.backend, self.workers)
        pending: collections.deque = collections.deque()
        self.reader.start()
        try:
            ended = False
            while not ended or pending:
                while not ended and len(pending) < pool.depth:
                    # a live source never keeps a finished frame waiting for the camera's next one
                    frame = self.reader.get(block=not (self.live and pending))
                    if frame is False:
                        break
                    if frame is None or self._stop.is_set():
                        ended = True
                        break
                    tensor, box = frame.prepared
                    pending.append((frame, box, pool.submit(tensor)))
                if self._stop.is_set():  # closed from elsewhere: the frames in flight are not wanted
                    break
                if pending:
                    frame, box, wait = pending.popleft()
                    yield frame.image, self._finish(frame, box, wait())
        finally:
            self.reader.stop()
            pool.close()
            self._closed = True
        if self.frames == 0 and not self._stop.is_set():
            raise InputError(f"no frame could be read from {self.source.name}")

    def _finish(self, frame: Frame, box: Any, output: np.ndarray) -> Result:
        result = self.predictor.to_result(output, box, frame.image, self.source.name, **self.stabilizer.frame_options)
        result.frame, result.time = frame.index, frame.time
        self.frames += 1
        return self.stabilizer(result, frame.time)

    def __iter__(self) -> Iterator[Result]:
        for _, result in self.iter_frames():
            yield result

    def request_stop(self) -> None:
        """Ask an iteration in progress to end soon (safe in a signal handler: sets flags, waits for nothing)."""
        self._stop.set()
        self.reader.stopped.set()

    def close(self) -> None:
        """Stop reading; an iteration in progress (in any thread) ends, dropping the frames in flight."""
        self._stop.set()
        if not self._closed:
            self.reader.stop()
            self._closed = True

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


STREAM_OPTIONS = ("vid_stride", "track", "workers", "queue_size", "drop", "realtime", "loop")


def open_stream(source: str | int | os.PathLike, model: Any, **options: Any) -> Stream:
    """Open ``source`` (a video file, a camera index, a stream URL) for a pose model; see ``Stream``.

    ``model`` is a loaded ``PosePredictor``, or a model path loaded here with the other keyword
    arguments (``classifier=``, ``conf=``, ``backend=``, ...) and ``stream_engine``'s defaults."""
    load_options = {k: options.pop(k) for k in list(options) if k not in STREAM_OPTIONS}
    if isinstance(model, (str, os.PathLike)):
        from .predictor import load

        model = load(model, **stream_engine(model, load_options))
    elif load_options:
        raise InputError(f"{', '.join(load_options)}: pass these to edgepose.load, not with a loaded predictor")
    return Stream(source, model, **options)
