"""The pose predictor: image in, ``Result`` out, torch-free.

One code path for every backend: letterbox -> tensor -> backend.run -> decode/NMS -> rescale.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .backends import Backend, open_backend, resolve_backend
from .classifier import KeypointClassifier
from .errors import InputError, ModelError
from .metadata import ModelMeta
from .postprocess import Detections, decode, decode_rows, head_form, to_original
from .preprocess import Letterbox, letterbox_tensor
from .results import Person, Result
from .sources import read_image

log = logging.getLogger("edgepose")

Lap = Callable[[str], None]  # called with a stage name as that stage of predict ends


def _no_lap(stage: str) -> None:
    pass


def check_threshold(name: str, value: float) -> float:
    """Thresholds are probabilities; refuse anything else rather than silently clamp."""
    if not 0.0 <= value <= 1.0:
        raise InputError(f"{name} must be between 0 and 1, got {value}")
    return float(value)


class PosePredictor:
    """A loaded pose graph with its thresholds. Call it on a BGR image or an image path.

    A static graph is fed its fixed input size (square letterbox); a dynamic one gets Ultralytics'
    minimal-padding rectangle at ``imgsz`` (rounded up to the stride). ``backend`` is ``auto``
    (by file form), ``onnxruntime`` or ``openvino``; ``device`` is in that engine's names.
    ``verify=True`` refuses a model whose files differ from the ``.sha256`` sidecars export wrote.
    ``precision``: OpenVINO's CPU inference precision; f16 also turns on TensorRT's FP16 kernels, whose
    engines are cached in ``trt_cache`` (``backends.provider_options``).
    ``spin=True`` lets onnxruntime's threads busy-wait between runs, as onnxruntime does by default:
    lower latency on a device that runs nothing else, slower everywhere else (so off here). The
    classifier never spins: its run takes microseconds, its waits would only take cores away.

    Thread-safe: one loaded predictor may be called from several threads at once (onnxruntime
    sessions are; OpenVINO gets one infer request per calling thread), with the same results as
    sequential calls. Nothing in ``predict`` mutates the predictor.
    """

    def __init__(
        self,
        model: str | os.PathLike,
        device: str | None = None,
        conf: float = 0.25,
        iou: float = 0.7,
        max_det: int = 300,
        imgsz: int | None = None,
        threads: int | None = None,
        classifier: str | os.PathLike | None = None,
        backend: str = "auto",
        hint: str = "latency",
        precision: str = "f32",
        spin: bool = False,
        verify: bool = False,
        trt_cache: str | os.PathLike | None = None,
    ) -> None:
        self.model_path = Path(model)
        self.conf = check_threshold("conf", conf)
        self.iou = check_threshold("iou", iou)
        if max_det < 1:
            raise InputError(f"max_det must be at least 1, got {max_det}")
        self.max_det = int(max_det)
        if threads is not None and threads < 1:
            raise InputError(f"threads must be at least 1, got {threads}")
        self.backend: Backend = open_backend(self.model_path, backend, device=device, threads=threads, hint=hint,
                                             precision=precision, spin=spin, verify=verify,
                                             trt_cache=trt_cache)  # fmt: skip
        self.meta = ModelMeta.parse(self.backend.metadata, source=str(self.model_path))
        self.head_form = head_form(self.meta, self.backend.output_shape, str(self.model_path))
        if self.head_form == "embedded-nms":
            baked = self.meta.nms_conf
            if self.conf < baked:
                log.warning(f"{self.model_path.name} has NMS inside the graph, which dropped every score under "
                            f"{baked}; conf {self.conf} cannot bring them back, and iou is the graph's own")  # fmt: skip
        self.input_shape, self.rect = self._input_geometry(imgsz)
        self.classifier = None
        if classifier:  # on the pose model's engine and device when it can run there, else on its default
            same = resolve_backend(classifier, backend) == self.backend.name
            try:
                self.classifier = KeypointClassifier(classifier, backend=self.backend.name if same else "auto",
                                                     device=device if same else None, threads=threads,
                                                     verify=verify)  # fmt: skip
            except ModelError:  # an SVC's ai.onnx.ml operators have no OpenVINO conversion: onnxruntime runs it
                if not (same and self.backend.name == "openvino" and Path(classifier).suffix == ".onnx"):
                    raise
                self.classifier = KeypointClassifier(classifier, backend="onnxruntime", threads=threads, verify=verify)
        if self.classifier:
            self.classifier.check_layout(self.keypoint_names)

    @property
    def keypoint_names(self) -> tuple[str, ...]:
        return self.meta.keypoint_names

    @property
    def names(self) -> dict[int, str]:
        """The classes the pose model detects."""
        return self.meta.names

    @property
    def providers(self) -> list[str]:
        return self.backend.providers

    def _input_geometry(self, imgsz: int | None) -> tuple[tuple[int, int], bool]:
        fixed = self.backend.input_shape
        stride = self.meta.stride
        if (self.backend.input_batch or 1) > 1:
            raise ModelError(f"{self.model_path.name} takes a fixed batch of {self.backend.input_batch} images; "
                             "edgepose runs one image a call: export it with batch 1 (or dynamic)")  # fmt: skip
        if imgsz is not None and imgsz < stride:
            raise InputError(f"imgsz must be at least the stride {stride}, got {imgsz}")
        if fixed[0] and fixed[1]:
            if imgsz is not None and imgsz not in fixed:
                raise InputError(
                    f"{self.model_path.name} is a static graph of {fixed[1]}x{fixed[0]}; "
                    f"re-export with --dynamic to predict at imgsz {imgsz}"
                )
            return (fixed[0], fixed[1]), False
        size = imgsz if imgsz is not None else max(self.meta.imgsz)
        if size < stride:  # imgsz was checked above: this one is the graph's own
            raise ModelError(f"{self.model_path.name} has metadata imgsz {size}, under its stride {stride}")
        rounded = int(math.ceil(size / stride) * stride)
        if rounded != size:
            log.warning(f"imgsz {size} is not a multiple of stride {stride}; using {rounded}")
        return (rounded, rounded), True

    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, Letterbox]:
        return letterbox_tensor(image, self.input_shape, stride=self.meta.stride, auto=self.rect)

    def decode(self, output: np.ndarray, box: Letterbox, conf: float | None = None, clip: bool = True) -> Detections:
        """The head output of one image -> arrays in original-image pixels (threshold, NMS where the
        graph has none, rescale)."""
        conf = self.conf if conf is None else conf
        if self.head_form == "raw":
            det = decode(output, len(self.meta.names), self.meta.kpt_shape, conf, self.iou, self.max_det)
        else:
            det = decode_rows(output, self.meta.kpt_shape, conf, self.max_det)
        return to_original(det, box, clip=clip)

    def detect(self, image: np.ndarray, conf: float | None = None, clip: bool = True) -> Detections:
        """Arrays in original-image pixels; ``predict`` wraps them in the result type."""
        tensor, box = self.preprocess(image)
        return self.decode(self.backend.run(tensor), box, conf=conf, clip=clip)

    def predict(self, image: np.ndarray | str | os.PathLike, name: str = "", lap: Lap | None = None,
                **finish: Any) -> Result:  # fmt: skip
        """Persons in one image (a BGR array, or a path to read).

        ``lap(stage)`` is called as each stage ends (read, preprocess, inference, postprocess,
        classifier), so ``edgepose bench`` times the very code path users run. ``finish`` goes to
        ``to_result`` (``conf``, ``classify``).
        """
        lap = lap or _no_lap
        if not isinstance(image, np.ndarray):
            if not isinstance(image, (str, os.PathLike)):
                raise InputError(f"expected a BGR image array or a path, got {type(image).__name__}")
            name = name or str(image)
            image = read_image(image)
        lap("read")
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or not image.size:
            raise InputError(f"expected a BGR uint8 image of shape (h, w, 3), got {image.dtype} {image.shape}")
        tensor, box = self.preprocess(image)
        lap("preprocess")
        output = self.backend.run(tensor)
        lap("inference")
        return self.to_result(output, box, image, name, lap, **finish)

    def to_result(self, output: np.ndarray, box: Letterbox, image: np.ndarray, name: str = "",
                  lap: Lap | None = None, conf: float | None = None, classify: bool = True) -> Result:  # fmt: skip
        """The rest of ``predict`` once the engine has answered: decode, persons, classifier.

        Separate so a pipeline with several requests in flight (``edgepose bench --streams``) can
        finish each frame through the same code as ``predict``. ``conf`` overrides the predictor's
        threshold; ``classify=False`` leaves labels to the caller (a stream's ``Stabilizer``)."""
        lap = lap or _no_lap
        det = self.decode(output, box, conf=conf)
        kpts = det.keypoints
        if kpts.shape[-1] == 2:  # graphs without keypoint confidence: report 1 for every placed point
            kpts = np.concatenate([kpts, np.ones((*kpts.shape[:2], 1), np.float32)], axis=-1)
        names = self.meta.names if len(self.meta.names) > 1 else {}  # "class" in the JSON only where there is a choice
        persons = [Person(det.boxes[i], float(det.scores[i]), kpts[i], self.meta.names_of(int(det.classes[i])),
                          cls=names.get(int(det.classes[i]))) for i in range(len(det))]  # fmt: skip
        result = Result(name, int(image.shape[1]), int(image.shape[0]), persons)
        lap("postprocess")
        if self.classifier and classify:
            result = self.classifier.classify(result)
            lap("classifier")
        return result

    __call__ = predict


def load(model: str | os.PathLike, **kwargs) -> PosePredictor:
    """Load an exported pose graph: ``edgepose.load("yolo11n-pose.onnx")(image).persons``.

    The keyword arguments are ``PosePredictor``'s (``classifier``, ``conf``, ``backend``, ``device``...)."""
    return PosePredictor(model, **kwargs)
