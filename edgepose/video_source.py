"""Opening what ``predict`` and ``serve`` call a stream: a video file, a camera (an index or
``/dev/videoN``) or a stream URL, as one ``cv2.VideoCapture`` that says what it is (fps, size,
frame count, live or not), with OpenCV's own warnings silenced in favour of one ``error:`` line."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .errors import InputError

VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv",
                            ".flv", ".ts", ".mts", ".m2ts", ".3gp", ".ogv", ".mjpeg", ".mjpg", ".h264", ".h265"})  # fmt: skip
URL_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "rtmps://", "http://", "https://", "udp://", "tcp://", "srt://")
DEFAULT_FPS = 30.0  # for sources that do not say (many webcams report 0)


def is_camera_index(source: str | int | os.PathLike) -> bool:
    """``0``, ``"1"``...: a camera, unless a file or folder of that name is there (``predict 2024``)."""
    return isinstance(source, int) or (str(source).isdigit() and not os.path.exists(source))


def is_stream_source(source: str | int | os.PathLike) -> bool:
    """Is SOURCE a camera index (``0``), a stream URL, a video device or a video file (by suffix)?"""
    text = str(source)
    if is_camera_index(source) or text.startswith("/dev/video"):
        return True
    return text.lower().startswith(URL_SCHEMES) or Path(text).suffix.lower() in VIDEO_SUFFIXES


def _quiet_opencv() -> None:
    """OpenCV and FFmpeg print their own warnings for a missing camera or a bad file; edgepose says it in one line."""
    import cv2

    if os.environ.get("EDGEPOSE_DEBUG"):  # keep them for debugging, as the CLI does
        return
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET; read when FFmpeg is first used
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)


class VideoSource:
    """An opened ``cv2.VideoCapture`` and what it says about itself (fps, size, frame count)."""

    def __init__(self, source: str | int | os.PathLike, open_timeout_s: float = 10.0) -> None:
        import cv2

        _quiet_opencv()
        text = str(source)
        self.name = text
        timeouts = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(open_timeout_s * 1000),
                    cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(open_timeout_s * 1000)]  # fmt: skip
        if is_camera_index(source):
            self.kind, what = "camera", f"camera {text}"
            self.capture = cv2.VideoCapture(int(text))
        elif text.lower().startswith(URL_SCHEMES):
            self.kind, what = "url", f"stream {text}"
            self.capture = cv2.VideoCapture(text, cv2.CAP_FFMPEG, timeouts)
        elif text.startswith("/dev/video"):
            self.kind, what = "camera", f"camera {text}"
            self.capture = cv2.VideoCapture(text)
        else:
            path = Path(text)
            if not path.is_file():
                raise InputError(f"no such video file: {path}" if not path.exists() else f"not a file: {path}")
            self.kind, what = "file", f"video {path}"
            self.capture = cv2.VideoCapture(text, cv2.CAP_FFMPEG, timeouts)
        if not self.capture.isOpened():
            reason = "no such camera, or it is busy" if self.kind == "camera" else "not a readable video"
            raise InputError(f"cannot open {what} ({reason})")
        fps = self.capture.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if 0 < fps < 1000 else DEFAULT_FPS
        self.width = int(self.capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(self.capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        count = int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT))
        self.frame_count = count if count > 0 else None
        self.live = self.kind == "camera" or (self.kind == "url" and self.frame_count is None)

    def grab(self) -> bool:
        return bool(self.capture.grab())

    def retrieve(self) -> np.ndarray | None:
        ok, image = self.capture.retrieve()
        return image if ok else None

    def rewind(self) -> bool:
        import cv2

        return bool(self.capture.set(cv2.CAP_PROP_POS_FRAMES, 0))

    def release(self) -> None:
        self.capture.release()
