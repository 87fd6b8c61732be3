"""Stability over time for streams: persistent person ids, keypoint smoothing, label hysteresis.

A kiosk shows one label per person that must not flicker. Three small stages, applied in this
order to each frame's ``Result`` by ``Stabilizer``:

1. ``Tracker``: greedy association of this frame's persons with the live tracks by box IoU and
   keypoint OKS (COCO sigmas); a person keeps its ``id`` while it is matched, a track survives
   ``max_age`` frames unmatched (a brief occlusion), a new person gets the next id. A track is
   shown once it has matched a person scoring at least the predictor's ``conf`` in ``confirm``
   frames without a frame unmatched between them (a low-score match neither counts nor resets;
   SORT's ``min_hits``; at once in a stream's first frame), until a frame leaves it unmatched. As in ByteTrack, persons scoring between ``low_conf`` and ``conf`` may only
   continue a track left unmatched by the confident ones, never start one: a shown person stays
   while its score wavers around ``conf``, and a doubtful one that comes and goes is never shown.
2. ``OneEuroFilter`` per track on the keypoints' x, y (Casiez et al., CHI 2012): little smoothing
   when a point moves fast, a lot when it stays still, so jitter goes and motion does not lag.
3. ``LabelHysteresis`` per track: the shown label changes only after another one has won the
   classifier's vote for ``k`` consecutive frames; "no known pose" is one more label to it. Each
   person carries ``label_seconds``, how long its track has shown the current label (or none).

No tracker library fits a torch-free kiosk install without pulling scipy/filterpy/matplotlib and
the like, and the persons in front of one camera are few, so this is plain numpy. Everything is
off for single images (``PosePredictor`` never uses it) and on by default for streams.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import InputError
from .keypoints import COCO_SIGMAS
from .results import Result
from .val import box_iou, keypoint_oks

SIGMAS_17 = np.asarray(COCO_SIGMAS, np.float32)  # converted once: keypoint_oks runs every frame
KPT_VISIBLE = 0.5  # a keypoint below this confidence is not placed (as in draw and the classifier)
LOW_MATCH = 0.5  # least similarity for a low-scoring person to continue a track (ByteTrack's second-stage IoU)


@dataclass(frozen=True)
class TrackOptions:
    """What a stream does over time. ``hysteresis`` 1 shows the classifier's label of every frame."""

    track: bool = True
    smooth: bool = True
    min_cutoff: float = 1.0  # Hz: One-Euro's cutoff for a still point (lower: smoother, more lag)
    beta: float = 0.02  # per px/s: how fast the cutoff rises with speed (higher: less lag when moving)
    hysteresis: int = 5  # frames a new label must win before it is shown
    match_threshold: float = 0.3  # least IoU/OKS similarity to continue a track
    max_age: int = 30  # frames a track survives without a match
    low_conf: float = 0.1  # least score of a person that continues a track (ByteTrack's second association)
    confirm: int = 3  # frames in a row a new person must be found at conf before it is shown

    def __post_init__(self) -> None:
        if self.min_cutoff <= 0 or self.beta < 0:
            raise InputError(f"smoothing needs min_cutoff > 0 and beta >= 0, got {self.min_cutoff}, {self.beta}")
        if self.hysteresis < 1:
            raise InputError(f"hysteresis must be at least 1 frame, got {self.hysteresis}")
        if not 0.0 < self.match_threshold <= 1.0:
            raise InputError(f"match_threshold must be in (0, 1], got {self.match_threshold}")
        if self.max_age < 0:
            raise InputError(f"max_age must be >= 0, got {self.max_age}")
        if not 0.0 <= self.low_conf <= 1.0:
            raise InputError(f"low_conf must be between 0 and 1, got {self.low_conf}")
        if self.confirm < 1:
            raise InputError(f"confirm must be at least 1 frame, got {self.confirm}")

    @classmethod
    def off(cls) -> TrackOptions:
        return cls(track=False, smooth=False, hysteresis=1)


class OneEuroFilter:
    """One-Euro low-pass filter over an array of points (any shape), with its own time."""

    def __init__(self, min_cutoff: float, beta: float, d_cutoff: float = 1.0) -> None:
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.value: np.ndarray | None = None
        self.speed: np.ndarray | None = None
        self.time: float | None = None

    @staticmethod
    def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
        tau = 1.0 / (2 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / dt)

    def __call__(self, value: np.ndarray, time: float, reset: np.ndarray | None = None) -> np.ndarray:
        """Filtered ``value`` at ``time`` (seconds); entries where ``reset`` is true restart from the raw value."""
        value = np.asarray(value, np.float64)
        if self.value is None or self.time is None or time <= self.time:
            self.value, self.speed, self.time = value.copy(), np.zeros_like(value), time
            return value
        dt = time - self.time
        speed = (value - self.value) / dt
        speed = self.speed + self._alpha(self.d_cutoff, dt) * (speed - self.speed)
        cutoff = self.min_cutoff + self.beta * np.abs(speed)
        out = self.value + self._alpha(cutoff, dt) * (value - self.value)
        if reset is not None:
            out[reset], speed[reset] = value[reset], 0.0
        self.value, self.speed, self.time = out, speed, time
        return out


class LabelHysteresis:
    """The shown class changes only after another class has won ``k`` consecutive frames."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.shown: int | None = None
        self.candidate: int | None = None
        self.count = 0

    def __call__(self, winner: int) -> int:
        if self.shown is None or self.k <= 1:
            self.shown = winner
        elif winner == self.shown:
            self.candidate, self.count = None, 0
        else:
            self.count = self.count + 1 if winner == self.candidate else 1
            self.candidate = winner
            if self.count >= self.k:
                self.shown, self.candidate, self.count = winner, None, 0
        return self.shown


@dataclass
class Track:
    id: int
    box: np.ndarray
    keypoints: np.ndarray
    missed: int = 0
    streak: int = 0  # confident matches since the track was last unmatched (a low-conf match pauses it, no reset)
    shown: bool = False  # confirmed and matched in the latest frame
    smoother: OneEuroFilter | None = None
    label: LabelHysteresis | None = None
    label_since: float = 0.0  # stream time at which the shown label (or no pose) was first shown
    away: bool = False  # unseen for a frame since last labelled: its label and hold timer start afresh


class Tracker:
    """Persistent ids by greedy IoU/OKS association (the few persons before one camera need no more)."""

    def __init__(self, match_threshold: float = 0.3, max_age: int = 30, confirm: int = 1) -> None:
        self.match_threshold, self.max_age, self.confirm = match_threshold, max_age, confirm
        self.tracks: list[Track] = []
        self.next_id = 1
        self.frames = 0

    def similarity(self, boxes: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
        """[tracks, persons]: the mean of box IoU and keypoint OKS (IoU alone where no keypoint is shared)."""
        old_boxes = np.stack([t.box for t in self.tracks])
        iou = box_iou(old_boxes, boxes)
        if keypoints.shape[-1] < 3:
            return iou
        old_kpts = np.stack([t.keypoints for t in self.tracks])
        areas = 0.53 * (old_boxes[:, 2:] - old_boxes[:, :2]).clip(0).prod(-1)  # COCO's area of a box
        both = (old_kpts[:, None, :, 2] >= KPT_VISIBLE) & (keypoints[None, :, :, 2] >= KPT_VISIBLE)  # placed in both
        k = keypoints.shape[1]
        sigmas = SIGMAS_17 if k == len(SIGMAS_17) else np.full(k, 0.05, np.float32)
        oks = keypoint_oks(old_kpts, keypoints, areas, sigmas, counted=both)
        return np.where(both.any(-1), (iou + oks) / 2, iou)

    def update(
        self, boxes: np.ndarray, keypoints: np.ndarray, confident: np.ndarray | None = None
    ) -> list[Track | None]:
        """The track of each person (in order) after matching this frame's ``boxes`` [N, 4] and
        ``keypoints`` [N, K, 3]: confident persons (all, when ``confident`` is None) are matched
        first and start new tracks; the others may only take a track still unmatched, at a
        similarity of at least ``LOW_MATCH``, and get None otherwise. ``Track.shown`` says
        whether a track is confirmed for this frame."""
        confident = np.ones(len(boxes), bool) if confident is None else np.asarray(confident, bool)
        assigned: list[Track | None] = [None] * len(boxes)
        free = list(self.tracks)
        if self.tracks and len(boxes):
            sim = self.similarity(boxes, keypoints)
            for persons, least in (
                (confident, self.match_threshold),
                (~confident, max(self.match_threshold, LOW_MATCH)),
            ):
                self._match(np.where(persons[None, :], sim, -1.0), least, assigned, free)
        for i, track in enumerate(assigned):
            if track is None and confident[i]:
                track = Track(self.next_id, boxes[i], keypoints[i])
                self.next_id += 1
                self.tracks.append(track)
                assigned[i] = track
            if track is not None:
                track.box, track.keypoints, track.missed = boxes[i], keypoints[i], 0
                track.streak += bool(confident[i])
                track.shown = track.shown or track.streak >= self.confirm or self.frames == 0
        for track in free:
            track.missed, track.streak, track.shown, track.away = track.missed + 1, 0, False, True
        self.tracks = [t for t in self.tracks if t.missed <= self.max_age]
        self.frames += 1
        return assigned

    def _match(self, sim: np.ndarray, least: float, assigned: list[Track | None], free: list[Track]) -> None:
        """Greedy: the most similar (track, person) pair first, each used once, down to ``least``."""
        for flat in np.argsort(-sim, axis=None):
            t, p = np.unravel_index(flat, sim.shape)
            if sim[t, p] < least:
                break
            track = self.tracks[t]
            if assigned[p] is None and track in free:
                assigned[p] = track
                free.remove(track)


class Stabilizer:
    """Ids, smoothed keypoints and steady labels for a stream's results, frame after frame.

    ``conf`` is the predictor's threshold, the least score that starts a track. Each frame is
    finished with ``predictor.to_result(..., **stabilizer.frame_options)``: decoded down to
    ``low_conf`` when tracking, so persons between the two can continue a track, and not
    classified when the stabilizer re-votes on the smoothed keypoints anyway."""

    def __init__(self, options: TrackOptions, classifier: object | None = None, conf: float = 0.25) -> None:
        self.options = options
        self.classifier = classifier  # a KeypointClassifier, to re-vote on smoothed keypoints
        self.tracker = Tracker(options.match_threshold, options.max_age, options.confirm) if options.track else None
        self.conf = conf
        self.relabels = self.tracker is not None and classifier is not None  # labels held and timed per track
        self.frame_options = {"conf": min(conf, options.low_conf) if options.track else conf,
                              "classify": not self.relabels}  # fmt: skip

    def __call__(self, result: Result, time: float) -> Result:
        """Set ``id`` on every person, smooth its keypoints, hold its label (in place; returns ``result``).
        Persons whose track is not shown (unconfirmed, or below ``conf`` and continuing none) are removed."""
        if self.tracker is None or not result.persons:
            if self.tracker is not None:
                self.tracker.update(np.zeros((0, 4), np.float32), np.zeros((0, 0, 3), np.float32))
            return result
        opts = self.options
        boxes = np.stack([p.box for p in result.persons]).astype(np.float32)
        kpts = np.stack([p.keypoints for p in result.persons]).astype(np.float32)
        confident = np.array([p.score >= self.conf for p in result.persons])
        found = self.tracker.update(boxes, kpts, confident)
        shown = [(p, t) for p, t in zip(result.persons, found) if t is not None and t.shown]
        result.persons = [p for p, _ in shown]
        tracks = [t for _, t in shown]
        for person, track in shown:
            person.id = track.id
            if opts.smooth:
                if track.smoother is None:
                    track.smoother = OneEuroFilter(opts.min_cutoff, opts.beta)
                hidden = person.keypoints[:, 2] < KPT_VISIBLE
                xy = track.smoother(person.keypoints[:, :2], time, reset=np.repeat(hidden[:, None], 2, 1))
                person.keypoints = person.keypoints.copy()
                person.keypoints[:, :2] = xy
        if self.relabels and result.persons:
            self._relabel(result, tracks, time)
        return result

    def _relabel(self, result: Result, tracks: list[Track], time: float) -> None:
        clf = self.classifier
        best, probs, known = clf.decide(result.keypoints_xyn())  # type: ignore[attr-defined]
        for i, (person, track) in enumerate(zip(result.persons, tracks)):
            if track.label is None or track.away:  # a person back after a gap holds nothing yet
                track.label, track.away = LabelHysteresis(self.options.hysteresis), False
            before = track.label.shown
            shown = track.label(int(best[i]))  # -1, no known pose, is a label like any other here
            if shown != before:
                track.label_since = time
            clf.label(person, shown, probs[i], None if known is None else float(known[i]))  # type: ignore[attr-defined]
            person.label_seconds = time - track.label_since


__all__ = ["LabelHysteresis", "OneEuroFilter", "Stabilizer", "TrackOptions", "Tracker"]
