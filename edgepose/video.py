"""``edgepose predict`` on a video, a camera or a stream URL: annotated video and per-frame JSON.

Both outputs are written under a temporary name and renamed when complete, so a failed run
leaves nothing half-written; a live source (camera, URL) ended with Ctrl-C or SIGTERM is a normal
end and its outputs are kept, its video in files of a few minutes each (``SegmentedRecorder``).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import click
import numpy as np

from .errors import InputError
from .outputs import is_device, make_parent, refuse_folder, writing

# container suffix -> FourCC that this OpenCV build writes and reads back (FFmpeg: mp4v, MJPG)
FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".mkv": "mp4v", ".avi": "MJPG"}


MAX_HOLD = 10.0  # seconds a live frame is held for at most (a stalled source; a URL read times out at 10 s)


class VideoRecorder:
    """``cv2.VideoWriter`` on a writer thread (encoding overlaps the pipeline), into a temporary
    file beside ``path`` that ``close`` renames into place and ``abort`` deletes."""

    def __init__(self, path: str | os.PathLike, fps: float, size: tuple[int, int], queue_size: int = 8) -> None:
        import cv2

        self.path = Path(path)
        fourcc = FOURCC.get(self.path.suffix.lower())
        if fourcc is None:
            raise InputError(f"cannot write video as '{self.path.suffix}' (choose from {', '.join(FOURCC)})")
        make_parent(self.path)
        self.tmp = self.path.with_name(f".{self.path.stem}.{os.getpid()}.partial{self.path.suffix}")  # runs apart
        self.size, self.fps = size, fps
        self.origin: float | None = None  # ``at`` of the first frame written with one
        self._last: np.ndarray | None = None
        self.writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*fourcc), fps, size)
        if not self.writer.isOpened():
            self.tmp.unlink(missing_ok=True)
            raise InputError(f"OpenCV cannot write {fourcc} video to {self.path}")
        self.frames = 0
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="edgepose-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (image := self._queue.get()) is not None:
            try:
                self.writer.write(image)
            except BaseException as exc:  # raised in the caller's thread at the next write or close
                self._error = exc

    def write(self, image: np.ndarray, at: float | None = None) -> None:
        """Add a frame. With ``at`` (its time in seconds: a live source's) the video keeps real time
        however many frames the model dropped: the previous frame is held until this one's time (a
        gap of at most ``MAX_HOLD`` seconds), and a frame that comes early is skipped."""
        if self._error:
            raise self._error
        if (image.shape[1], image.shape[0]) != self.size:
            raise InputError(f"frame of {image.shape[1]}x{image.shape[0]} in a {self.size[0]}x{self.size[1]} video")
        if at is not None:
            if self.origin is None:
                self.origin = at
            self.hold_until(at)
            if self.frames > round((at - self.origin) * self.fps):  # early: its slot is taken
                return
        self._queue.put(image)
        self._last = image
        self.frames += 1

    def hold_until(self, at: float) -> None:
        """Repeat the last frame written until time ``at`` (up to ``MAX_HOLD`` seconds of it)."""
        if self.origin is None or self._last is None:
            return
        due = round((at - self.origin) * self.fps)  # frames the video holds before one of time ``at``
        most = round(MAX_HOLD * self.fps)
        if due - self.frames > most:  # a longer gap is cut to MAX_HOLD: the clock moves on past the rest
            self.origin += (due - self.frames - most) / self.fps
            due = self.frames + most
        for _ in range(due - self.frames):
            self._queue.put(self._last)
            self.frames += 1

    def _finish(self) -> None:
        self._queue.put(None)
        self._thread.join()
        self.writer.release()

    def close(self) -> Path:
        self._finish()
        if self._error:
            self.tmp.unlink(missing_ok=True)
            raise self._error
        with writing(self.path):
            os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        self._finish()
        self.tmp.unlink(missing_ok=True)


class SegmentedRecorder:
    """A live source's annotated video as consecutive files of ``seconds`` each (frames at their
    times, ``VideoRecorder.write``), ``STEM-YYYYmmdd-HHMMSS-NNN.mp4`` (local time the file was
    begun, NNN its number in the run). Each file is closed and renamed into place, whole and
    playable, when the next begins: a power cut loses only the file in progress, and no MP4 index
    grows for as long as a kiosk runs. A failed run deletes only the file in progress."""

    def __init__(self, folder: Path, stem: str, fps: float, size: tuple[int, int], seconds: float) -> None:
        self.folder, self.stem, self.fps, self.size, self.seconds = folder, stem, fps, size, seconds
        self.paths: list[Path] = []  # the finished files
        self.current: VideoRecorder | None = self._next()  # opened now: a writer that fails, fails before any frame

    def _next(self) -> VideoRecorder:
        name = f"{self.stem}-{time.strftime('%Y%m%d-%H%M%S')}-{len(self.paths) + 1:03d}.mp4"
        return VideoRecorder(self.folder / name, self.fps, self.size)

    def write(self, image: np.ndarray, at: float) -> None:
        """Add a frame of time ``at`` (seconds), starting the next file once this one holds ``seconds``."""
        assert self.current is not None, "write after close"
        if self.current.origin is not None and at - self.current.origin >= self.seconds:
            self.current.hold_until(at)  # the file ends where the next begins
            self.paths.append(self.current.close())
            self.current = self._next()
        self.current.write(image, at)

    def close(self) -> list[Path]:
        if self.current is not None:
            self.paths.append(self.current.close())
            self.current = None
        return self.paths

    def abort(self) -> None:
        if self.current is not None:
            self.current.abort()
            self.current = None


class JsonRecords:
    """One JSON record per frame or image, written as it is made, so memory stays flat however long
    the run. A file gets a JSON array (the images' schema, one compact record a line) written to a
    temporary name and renamed on ``close`` (``abort`` leaves nothing); ``-`` gets JSON Lines on
    stdout, flushed per record, for a pipe to react to, or with ``lines=False`` (a folder of
    images) the same JSON array as a file."""

    def __init__(self, target: str, lines: bool = True) -> None:
        self.target = target
        self.count = 0
        self.path: Path | None = None
        self.tmp: Path | None = None
        self.lines = lines and target == "-"
        self.handle: IO[str]
        if target == "-":
            self.handle = sys.stdout
        else:
            self.path = Path(target)
            refuse_folder(self.path)
            make_parent(self.path)
            self.tmp = None if is_device(self.path) else self.path.with_name(f".{self.path.name}.{os.getpid()}.partial")
            with writing(self.path):
                self.handle = open(self.tmp or self.path, "w")  # noqa: SIM115 - closed in close/abort

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":"))
        with self._failing():
            if self.lines:
                self.handle.write(line + "\n")
                self.handle.flush()
            else:
                self.handle.write(("[\n" if self.count == 0 else ",\n") + line)
        self.count += 1

    def close(self) -> None:
        with self._failing():
            if not self.lines:
                self.handle.write(("[" if self.count == 0 else "") + "\n]\n")
                self.handle.flush()
            if self.path is not None:
                self.handle.close()
                if self.tmp is not None:
                    os.replace(self.tmp, self.path)

    def _failing(self) -> Any:
        """A file that cannot take the records (a full disk) is the user's path: one InputError line.
        stdout's errors (a closed pipe) stay as they are."""
        return writing(self.path) if self.path is not None else contextlib.nullcontext()

    def abort(self) -> None:
        if self.path is not None:
            with contextlib.suppress(OSError):  # what close could not write is dropped with the file
                self.handle.close()
        if self.tmp is not None:
            self.tmp.unlink(missing_ok=True)


def video_name(source: str, live: bool) -> str:
    """The annotated video's file name: the source's stem for a file, ``camera0`` (``/dev/video0``:
    ``video0``) or ``stream`` otherwise."""
    if source.isdigit():
        return f"camera{source}.mp4"
    if source.startswith("/dev/"):
        return Path(source).name + ".mp4"
    if live or "://" in source:
        return "stream.mp4"
    return Path(source).stem + ".mp4"


class Interrupt:
    """SIGTERM/SIGINT (and SIGHUP: a closed terminal or SSH session) end a stream between two frames,
    or a folder run between two images (``on_signal``), instead of killing it mid-write."""

    def __init__(self, on_signal: Callable[[], None]) -> None:
        self.signal: int | None = None
        self.on_signal = on_signal
        self._old: dict[int, Any] = {}

    def __enter__(self) -> Interrupt:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM, *([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])):
                if signal.getsignal(sig) is not signal.SIG_IGN:  # under nohup a closed terminal stays ignored
                    self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, sig: int, frame: Any) -> None:
        if self.signal is not None:  # a second Ctrl-C: stop waiting
            raise KeyboardInterrupt
        self.signal = sig
        self.on_signal()

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


def predict_stream(source: str, predictor: Any, *, save: str | None, json_out: str | None, vid_stride: int,
                   track: Any, echo: Callable[[str], None], on_first_frame: Callable[[], None] | None = None,
                   segment: float = 0.0) -> dict[str, Any]:  # fmt: skip
    """Run a stream through ``predictor`` into the requested outputs; returns a summary.

    A file source interrupted by a signal raises ``click.Abort`` (the CLI's "error: aborted", exit
    130) and its outputs are deleted; a live source stops at the next frame and keeps them. A live
    source's video is saved in files of ``segment`` seconds (``SegmentedRecorder``; 0: one file)."""
    from .draw import draw_result
    from .stream import Stream

    stream = Stream(source, predictor, vid_stride=vid_stride, track=track)
    outputs: list[VideoRecorder | SegmentedRecorder | JsonRecords] = []
    recorder: VideoRecorder | SegmentedRecorder | None = None
    records = None
    start, frames, persons = time.perf_counter(), 0, 0
    try:
        if save:
            name = video_name(source, stream.live)
            if stream.live and segment:
                recorder = SegmentedRecorder(Path(save), Path(name).stem, stream.fps, stream.size, segment)
            else:
                recorder = VideoRecorder(Path(save) / name, stream.fps, stream.size)
            outputs.append(recorder)
        if json_out:
            records = JsonRecords(json_out)
            outputs.append(records)
        with Interrupt(stream.request_stop) as interrupt, stream:
            for image, result in stream.iter_frames():
                frames += 1
                if frames == 1 and on_first_frame:
                    on_first_frame()
                persons += len(result.persons)
                if records:
                    records.write(result.to_dict())
                if recorder:  # a live source's frames at their times: dropped ones do not speed the video up
                    recorder.write(
                        draw_result(image, result, predictor.meta.skeleton), result.time if stream.live else None
                    )
            if interrupt.signal is not None and not stream.live:  # a file cut short failed: nothing kept
                raise click.Abort
        if frames == 0 and recorder:  # stopped before its first frame: an MP4 of no frame plays nowhere
            outputs.remove(recorder)
            recorder.abort()
            recorder = None
        for output in outputs:  # one that fails to close (a full disk) takes the others' temp files with it
            output.close()
    except BaseException:
        stream.close()
        for output in outputs:
            output.abort()
        raise
    videos = recorder.paths if isinstance(recorder, SegmentedRecorder) else [recorder.path] if recorder else []
    seconds = time.perf_counter() - start
    summary = {"source": source, "frames": frames, "dropped": stream.dropped, "persons": persons,
               "seconds": round(seconds, 3), "fps": round(frames / seconds, 2) if seconds else None,
               "videos": [str(v) for v in videos]}  # fmt: skip
    echo(f"{source}: {frames} frames ({summary['fps']} fps), {stream.dropped} dropped, "
         f"{persons} person detections")  # fmt: skip
    if len(videos) == 1:
        echo(f"annotated video in {videos[0]}")
    elif videos:
        echo(f"annotated video in {len(videos)} files in {videos[0].parent}: {videos[0].name} ... {videos[-1].name}")
    return summary


def sample_video(path: str | os.PathLike, frames_each: int = 30, fps: float = 25.0,
                 size: tuple[int, int] = (1280, 720), photos: list[Path] | None = None) -> Path:  # fmt: skip
    """A test video from real photos (default: the bundled ones): each shown ``frames_each`` frames,
    fitted to ``size`` on grey, shifted by a few pixels from frame to frame (a steady camera with slight shake)."""
    import cv2

    from .sources import read_image, sample_images

    width, height = size
    recorder = VideoRecorder(path, fps, size)
    try:
        for photo in photos or sample_images():
            image = read_image(photo)
            scale = min(width / image.shape[1], height / image.shape[0])
            image = cv2.resize(image, (round(image.shape[1] * scale), round(image.shape[0] * scale)))
            canvas = np.full((height, width, 3), 114, np.uint8)
            y, x = (height - image.shape[0]) // 2, (width - image.shape[1]) // 2
            canvas[y : y + image.shape[0], x : x + image.shape[1]] = image
            for i in range(frames_each):
                shift = np.float32([[1, 0, (i % 5) * 2], [0, 1, i % 3]])
                recorder.write(cv2.warpAffine(canvas, shift, size, borderMode=cv2.BORDER_REPLICATE))
    except BaseException:
        recorder.abort()
        raise
    return recorder.close()
