"""Video, cameras and streams: predict on a real video (made from the bundled photos), ids,
smoothing, label hysteresis, frame dropping, and the one-line errors."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest

import edgepose
from edgepose.errors import InputError
from edgepose.stream import Stream, stream_engine
from edgepose.track import LabelHysteresis, OneEuroFilter, Tracker, TrackOptions
from edgepose.video import sample_video
from edgepose.video_source import is_stream_source

from .conftest import ROOT, SAMPLE_VIDEO_FRAMES_EACH, SHARED_DATA, assert_one_line_error, require_shared
from .conftest import edgepose_cli as run_cli

CLASSIFIER = ROOT / "models" / "yoga-classifier.onnx"
N = SAMPLE_VIDEO_FRAMES_EACH
BUS, ZIDANE = range(0, N), range(N, 2 * N)  # frame indices of the two static segments
CONFIDENT = 0.5  # persons above this score are found in every frame of their segment


def waiting(segment: range) -> range:
    """The segment's first frames, which show nobody: the stream's first frame shows its persons
    at once; a new scene's wait ``TrackOptions.confirm`` frames to be confirmed."""
    return segment[: 0 if segment.start == 0 else TrackOptions().confirm - 1]


@pytest.fixture(scope="module")
def predictor(yolo11_onnx: Path) -> edgepose.PosePredictor:
    return edgepose.load(yolo11_onnx, classifier=CLASSIFIER, **stream_engine(yolo11_onnx, {}))


def label_changes(records: list[dict]) -> dict[int, int]:
    """Per person id: how often its label changed from one frame to the next it was in."""
    last: dict[int, str] = {}
    changes: dict[int, int] = defaultdict(int)
    for record in records:
        for person in record["persons"]:
            pid, label = person["id"], person["label"]
            changes[pid] += pid in last and last[pid] != label
            last[pid] = label
    return dict(changes)


def test_predict_video_writes_annotated_video_and_per_frame_json(yolo11_onnx: Path, sample_video: Path,
                                                                 tmp_path: Path) -> None:  # fmt: skip
    out = tmp_path / "out"
    proc = run_cli(
        "predict", sample_video, "-m", yolo11_onnx, "-c", CLASSIFIER, "--save", out, "--json", out / "r.json"
    )
    assert proc.returncode == 0, proc.stderr
    assert f"{2 * N} frames" in proc.stdout and "0 dropped" in proc.stdout

    video = cv2.VideoCapture(str(out / "samples.mp4"))
    source = cv2.VideoCapture(str(sample_video))
    for prop in (cv2.CAP_PROP_FPS, cv2.CAP_PROP_FRAME_WIDTH, cv2.CAP_PROP_FRAME_HEIGHT, cv2.CAP_PROP_FRAME_COUNT):
        assert video.get(prop) == source.get(prop)
    ok, annotated = video.read()
    ok_source, original = source.read()
    assert ok and ok_source and np.abs(annotated.astype(int) - original).mean() > 1  # something was drawn
    assert sorted(p.name for p in out.iterdir()) == ["r.json", "samples.mp4"]  # no partial files left

    records = json.loads((out / "r.json").read_text())
    assert [r["frame"] for r in records] == list(range(2 * N))
    assert [r["time"] for r in records] == [round(i / 25, 4) for i in range(2 * N)]
    assert {r["image"] for r in records} == {str(sample_video)} and records[0]["width"] == 640
    for segment, expected in ((BUS, 3), (ZIDANE, 2)):
        assert all(not records[i]["persons"] for i in waiting(segment))
        ids = [{p["id"] for p in records[i]["persons"]} for i in segment[len(waiting(segment)) :]]
        # every person shown, doubtful ones included: the same persons, the same ids, no count flicker
        assert len(ids[0]) == expected and all(s == ids[0] for s in ids), ids
    bus_ids = {p["id"] for i in BUS for p in records[i]["persons"]}
    zidane_ids = {p["id"] for i in ZIDANE for p in records[i]["persons"]}
    assert not bus_ids & zidane_ids  # a new scene, new persons
    person = records[0]["persons"][0]
    assert list(person) == ["id", "box", "score", "keypoints", "label", "label_score", "pose_score", "label_seconds"]
    assert set(label_changes(records).values()) == {0}  # no label flicker on the static segments


def test_hysteresis_holds_labels_that_raw_votes_flip(predictor: edgepose.PosePredictor, sample_video: Path) -> None:
    steady = [r.to_dict() for r in Stream(sample_video, predictor)]
    raw = [r.to_dict() for r in Stream(sample_video, predictor, track=TrackOptions(smooth=False, hysteresis=1))]
    assert [len(r["persons"]) for r in steady] == [len(r["persons"]) for r in raw]
    steady_changes, raw_changes = label_changes(steady), label_changes(raw)
    assert sum(steady_changes.values()) == 0
    assert sum(raw_changes.values()) >= sum(steady_changes.values())
    # smoothing moved keypoints, but not far: the same persons, sub-pixel to a few pixels apart
    a = np.array(steady[N - 1]["persons"][0]["keypoints"])
    b = np.array(raw[N - 1]["persons"][0]["keypoints"])
    visible = (a[:, 2] > 0.5) & (b[:, 2] > 0.5)
    drift = np.abs(a[visible, :2] - b[visible, :2])
    assert 0 < drift.max() < 10


TREE = SHARED_DATA / "yoga-train" / "Tree" / "00000072.jpg"


def person_crops(model: Path, photos: list[Path], folder: Path) -> list[Path]:
    """Each photo cut to its most confident person (with a margin), as PNGs in ``folder``: one person a video."""
    finder = edgepose.load(model)
    crops = []
    for photo in photos:
        image = cv2.imread(str(photo))
        x1, y1, x2, y2 = max(finder(image).persons, key=lambda p: p.score).box
        pad = 0.1 * (y2 - y1)
        crop = image[int(max(y1 - pad, 0)) : int(y2 + pad), int(max(x1 - pad, 0)) : int(x2 + pad)]
        crops.append(folder / f"{photo.stem}.png")
        cv2.imwrite(str(crops[-1]), crop)
    return crops


def test_label_hold_timer_restarts_when_the_pose_changes(yolo11_onnx: Path, samples: list[Path],
                                                          tmp_path: Path) -> None:  # fmt: skip
    """One person stands (a pedestrian of bus.jpg), then holds Tree (a yoga-train photo), each cropped to
    the person and shown 1.2 s: "no known pose" is shown and timed like any label, and when the shown
    label turns to Tree (after --hysteresis votes) the same id's label_seconds restarts from 0."""
    crops = person_crops(yolo11_onnx, [samples[0], require_shared(TREE)], tmp_path)
    video = sample_video(tmp_path / "pose-change.mp4", frames_each=30, size=(360, 640), photos=crops)
    predictor = edgepose.load(yolo11_onnx, classifier=CLASSIFIER, **stream_engine(yolo11_onnx, {}))
    records = [r.to_dict() for r in Stream(video, predictor)]
    main = [max(r["persons"], key=lambda p: p["score"]) for r in records]
    labels = [p["label"] for p in main]
    assert labels[:30] == [None] * 30 and labels[-1] == "Tree"
    assert {p["id"] for p in main} == {main[0]["id"]}  # one person throughout: the pose changed, not the person
    change = labels.index("Tree")
    # held back by the hysteresis (5 votes) and the smoothing's glide from one pose to the next, then shown
    assert 30 + TrackOptions().hysteresis - 1 <= change < 45
    assert set(labels[change:]) == {"Tree"}
    seconds = [p["label_seconds"] for p in main]
    assert seconds[0] == 0 and seconds[change] == 0 and seconds[change - 1] == pytest.approx((change - 1) / 25)
    assert np.allclose(np.diff(seconds[:change]), 0.04) and np.allclose(np.diff(seconds[change:]), 0.04)


def test_a_person_back_after_a_gap_holds_no_label_from_before(yolo11_onnx: Path, tmp_path: Path) -> None:
    """Tree for 0.96 s, an empty frame for 0.48 s (the track is kept: under max_age), Tree again: the
    same id comes back with its hold timer started afresh, not counting the time it was gone, although
    ``confirm`` keeps it hidden for the frames in which it was first matched again."""
    crop = person_crops(yolo11_onnx, [require_shared(TREE)], tmp_path)[0]
    empty = tmp_path / "empty.png"
    cv2.imwrite(str(empty), np.full((64, 36, 3), 114, np.uint8))
    joined = sample_video(tmp_path / "tree-gap-tree.mp4", frames_each=12, size=(360, 640),
                          photos=[crop, crop, empty, crop, crop])  # fmt: skip
    predictor = edgepose.load(yolo11_onnx, classifier=CLASSIFIER, **stream_engine(yolo11_onnx, {}))
    shown = [(r.frame, p) for r in Stream(joined, predictor) for p in r.persons if p.score >= CONFIDENT]
    before = [p for frame, p in shown if frame < 24]
    after = [(frame, p) for frame, p in shown if frame >= 36]
    assert before and after and not [f for f, _ in shown if 24 <= f < 36]
    assert {p.id for p in before} == {p.id for _, p in after}  # the same track, kept through the gap
    assert before[-1].label == "Tree" and before[-1].label_seconds == pytest.approx(23 / 25)
    first, person = after[0]
    assert first == 36 + TrackOptions().confirm - 1  # hidden until confirmed again
    assert person.label_seconds == 0 and after[-1][1].label_seconds == pytest.approx((59 - first) / 25)


def test_vid_stride_halves_the_frames(yolo11_onnx: Path, sample_video: Path, tmp_path: Path) -> None:
    proc = run_cli("predict", sample_video, "-m", yolo11_onnx, "--vid-stride", "2", "--save", tmp_path,
                   "--json", "-")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]  # JSON Lines on stdout, one per frame
    assert [r["frame"] for r in records] == list(range(0, 2 * N, 2))
    assert all("id" in p and "label" not in p for r in records for p in r["persons"])
    video = cv2.VideoCapture(str(tmp_path / "samples.mp4"))
    assert video.get(cv2.CAP_PROP_FRAME_COUNT) == N and video.get(cv2.CAP_PROP_FPS) == 12.5  # same duration


def test_no_track_leaves_ids_out(predictor: edgepose.PosePredictor, sample_video: Path) -> None:
    first = next(iter(Stream(sample_video, predictor, track=TrackOptions.off())))
    assert first.frame == 0 and first.time == 0.0 and len(first.persons) == 3
    assert all(p.id is None for p in first.persons) and "id" not in first.to_dict()["persons"][0]


def test_missing_camera_and_bad_video_are_one_line_errors(yolo11_onnx: Path, tmp_path: Path) -> None:
    assert_one_line_error(run_cli("predict", "9", "-m", yolo11_onnx), InputError.exit_code, "cannot open camera 9")
    assert_one_line_error(run_cli("predict", tmp_path / "none.mp4", "-m", yolo11_onnx), InputError.exit_code,
                          "no such video file")  # fmt: skip
    fake = tmp_path / "fake.mp4"
    fake.write_bytes(b"not a video at all")
    proc = run_cli("predict", fake, "-m", yolo11_onnx, "--save", tmp_path / "out", "--json", tmp_path / "r.json")
    assert_one_line_error(proc, InputError.exit_code, "not a readable video")
    assert not (tmp_path / "r.json").exists() and not (tmp_path / "out").exists()
    proc = run_cli("predict", "0", "-m", yolo11_onnx, "--hysteresis", "0")
    assert proc.returncode == 2 and "hysteresis" in proc.stderr


def test_live_sources_drop_frames_files_never(predictor: edgepose.PosePredictor, sample_video: Path) -> None:
    """A consumer slower than the source: played as a camera (realtime), the oldest frames are
    dropped and the queue stays bounded; read as a file, every frame arrives."""
    with Stream(sample_video, predictor, realtime=True) as live:
        seen = []
        for result in live:
            seen.append(result.frame)
            assert live.reader.queue.qsize() <= live.reader.queue.maxsize
            time.sleep(0.2)  # 5 fps against a 25 fps source
    assert live.dropped > 0 and len(seen) + live.dropped <= 2 * N and seen == sorted(seen)
    with Stream(sample_video, predictor) as file:
        frames = []
        for result in file:
            frames.append(result.frame)
            time.sleep(0.02)
    assert frames == list(range(2 * N)) and file.dropped == 0


def test_stream_from_a_path_loads_for_streaming(yolo11_onnx: Path, sample_video: Path) -> None:
    with edgepose.open_stream(sample_video, yolo11_onnx, vid_stride=5, conf=0.5) as frames:
        results = list(frames)
        assert frames.predictor.backend.session.get_session_options().intra_op_num_threads >= 1
    assert [r.frame for r in results] == [0, 5, 10, 15]
    assert all(p.score >= 0.5 for r in results for p in r.persons)
    with pytest.raises(InputError, match="edgepose.load"):
        edgepose.open_stream(sample_video, edgepose.load(yolo11_onnx), conf=0.5)


def test_is_stream_source() -> None:
    for source in ("0", "12", "/dev/video0", "rtsp://cam/1", "http://x/stream.mjpg", "a.mp4", "b.AVI", "c.mkv"):
        assert is_stream_source(source), source
    for source in ("bus.jpg", "folder", "x.png"):
        assert not is_stream_source(source), source


def test_tracker_keeps_ids_through_motion_and_short_gaps() -> None:
    tracker = Tracker(match_threshold=0.3, max_age=2)
    boxes = np.array([[0, 0, 100, 200], [300, 0, 400, 200]], np.float32)
    kpts = np.zeros((2, 17, 3), np.float32)
    first = [t.id for t in tracker.update(boxes, kpts)]
    moved = [t.id for t in tracker.update(boxes[::-1] + 8, kpts)]  # shifted, and listed in the other order
    assert first == [1, 2] and moved == [2, 1]
    tracker.update(boxes[:1], kpts[:1])  # person 2 unseen for one frame
    assert [t.id for t in tracker.update(boxes, kpts)] == [1, 2]  # ... and back with its id
    for _ in range(3):
        tracker.update(boxes[:1], kpts[:1])
    assert [t.id for t in tracker.update(boxes, kpts)] == [1, 3]  # gone longer than max_age: a new id


def test_tracker_confirms_new_persons_and_keeps_shown_ones_through_low_scores() -> None:
    """SORT's min_hits and ByteTrack's second association, frame by frame."""
    tracker = Tracker(match_threshold=0.3, max_age=5, confirm=3)
    boxes = np.array([[0, 0, 100, 200], [300, 0, 400, 200]], np.float32)
    kpts = np.zeros((2, 17, 3), np.float32)

    def frame(confident: list[bool], persons: slice = slice(None)) -> list[int | None]:
        """Ids of the shown tracks, None for a person not shown."""
        found = tracker.update(boxes[persons], kpts[persons], np.array(confident))
        return [t.id if t is not None and t.shown else None for t in found]

    assert frame([True], slice(0, 1)) == [1]  # the stream's first frame: shown at once
    assert frame([True, False]) == [1, None]  # a doubtful newcomer starts no track
    assert frame([True, True]) == [1, None] and frame([True, True]) == [1, None]  # found twice at conf: not yet
    assert frame([False, True]) == [1, 2]  # third time: shown; person 1 below conf keeps its shown track
    assert frame([True], slice(1, 2)) == [2]  # person 1 unmatched ...
    assert frame([False, True]) == [None, 2]  # ... and back below conf: the track waits for confirmation again
    assert frame([True, True]) == [None, 2] and frame([True, True]) == [None, 2] and frame([True, True]) == [1, 2]
    with pytest.raises(InputError, match="confirm"):
        TrackOptions(confirm=0)
    with pytest.raises(InputError, match="low_conf"):
        TrackOptions(low_conf=1.5)


def test_one_euro_removes_jitter_and_follows_motion() -> None:
    rng = np.random.default_rng(0)
    still = OneEuroFilter(min_cutoff=1.0, beta=0.02)
    noisy = 100 + rng.normal(0, 2, (50, 17, 2))
    smoothed = np.array([still(x, i / 25) for i, x in enumerate(noisy)])
    assert smoothed[10:].std(0).mean() < 0.5 * noisy[10:].std(0).mean()
    moving = OneEuroFilter(min_cutoff=1.0, beta=0.02)
    track = [moving(np.full((17, 2), 20.0 * i), i / 25) for i in range(50)]  # 500 px/s
    assert abs(track[-1][0, 0] - 20.0 * 49) < 20  # lags less than one frame's motion


def test_label_hysteresis_needs_k_wins() -> None:
    votes = [0, 0, 1, 0, 1, 1, 1, 0, 1, 2, 2, 2]
    hold = LabelHysteresis(k=3)
    assert [hold(v) for v in votes] == [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 2]
    follow = LabelHysteresis(k=1)
    assert [follow(v) for v in votes] == votes  # k=1: the classifier's vote of every frame


def test_stream_modules_are_torch_free() -> None:
    code = ("import sys, edgepose, edgepose.stream, edgepose.track, edgepose.video, edgepose.serve\n"
            "print(' '.join(sys.modules))")  # fmt: skip
    loaded = set(
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    )
    assert "starlette" in loaded and not loaded & {"torch", "ultralytics", "torchvision"}


@pytest.mark.parametrize(("sig", "to_file"), [(signal.SIGINT, False), (signal.SIGTERM, True), (signal.SIGHUP, True)])
def test_interrupting_a_file_keeps_nothing(yolo11_onnx: Path, tmp_path: Path, sig: signal.Signals,
                                           to_file: bool) -> None:  # fmt: skip
    """A video file cut short by Ctrl-C, SIGTERM or SIGHUP (its terminal closed: hidden partial files
    were left) failed: no annotated video and no JSON are left, not even partial ones (JSON Lines
    already printed on stdout are the pipe's)."""
    from edgepose.video import sample_video

    long = sample_video(tmp_path / "long.mp4", frames_each=150, size=(320, 180))
    out = tmp_path / "out"
    target = out / "frames.json" if to_file else "-"
    proc = subprocess.Popen([sys.executable, "-m", "edgepose", "predict", str(long), "-m", str(yolo11_onnx),
                             "--save", str(out), "--json", str(target)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    if to_file:  # under way once the temporary JSON holds a record
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(
            p.stat().st_size > 100 for p in out.glob(".frames.json.*partial")
        ):
            time.sleep(0.05)
    else:
        assert json.loads(proc.stdout.readline())["frame"] == 0
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130 and stderr == "engine: onnxruntime CPUExecutionProvider\nerror: aborted\n"
    assert not out.exists()  # no video, no JSON, not even partial ones, nor the folder made for them


def test_openvino_async_requests_give_the_same_persons(predictor: edgepose.PosePredictor, yolo11_onnx: Path,
                                                       sample_video: Path) -> None:  # fmt: skip
    pytest.importorskip("openvino", reason="the openvino extra is not installed")
    from edgepose.stream import default_workers

    ov = edgepose.load(yolo11_onnx, classifier=CLASSIFIER, backend="openvino", hint="throughput")
    assert default_workers(ov.backend) >= 2  # several async infer requests in flight
    with Stream(sample_video, ov) as frames:
        ov_results = list(frames)
    ort_results = list(Stream(sample_video, predictor))
    assert [r.frame for r in ov_results] == list(range(2 * N))  # in order, none lost
    for segment in (BUS, ZIDANE):  # ids held through each static segment on this engine too
        ids = [{p.id for p in ov_results[i].persons if p.score >= CONFIDENT} for i in segment[len(waiting(segment)) :]]
        assert ids[0] and all(s == ids[0] for s in ids)
    for a, b in zip(ov_results, ort_results):
        assert sorted(str(p.label) for p in a.persons if p.score >= CONFIDENT) == sorted(
            str(p.label) for p in b.persons if p.score >= CONFIDENT
        )
        boxes_a = np.array([p.box for p in a.persons if p.score >= CONFIDENT])
        boxes_b = np.array([p.box for p in b.persons if p.score >= CONFIDENT])
        assert len(boxes_a) == len(boxes_b)
        assert not len(boxes_a) or np.abs(np.sort(boxes_a, 0) - np.sort(boxes_b, 0)).max() < 2.0


def test_a_stalled_camera_neither_hangs_the_stop_nor_is_released_mid_read() -> None:
    """A camera whose read never returns (unplugged, a frozen driver): stopping hands the consumer
    the end at once, and the capture is released by the reader thread after its read returns, never
    from another thread during it (OpenCV's capture is not thread-safe). The camera is a stand-in:
    a real one cannot be made to stall on cue."""
    import threading

    from edgepose.stream import FrameReader

    class StalledCamera:
        live, kind, fps = True, "camera", 25.0

        def __init__(self) -> None:
            self.reading, self.unstall = threading.Event(), threading.Event()
            self.released_during_read = self.released = False

        def grab(self) -> bool:
            self.reading.set()
            self.unstall.wait()
            self.reading.clear()
            return False

        def release(self) -> None:
            self.released_during_read |= self.reading.is_set()
            self.released = True

    camera = StalledCamera()
    reader = FrameReader(camera, drop=True).start()  # type: ignore[arg-type]
    assert camera.reading.wait(5)
    start = time.monotonic()
    reader.stopped.set()  # what Ctrl-C does (Stream.request_stop)
    assert reader.get() is None and time.monotonic() - start < 1
    reader._thread.join(timeout=0.5)
    assert not camera.released  # still in its read: not released under it
    camera.unstall.set()
    reader.stop()
    assert camera.released and not camera.released_during_read


def test_a_run_under_nohup_ignores_sighup(yolo11_onnx: Path, sample_video: Path, tmp_path: Path) -> None:
    """Under nohup SIGHUP is ignored, and stays so: a closed terminal must not abort the run."""
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "edgepose", "predict", str(sample_video), "-m", str(yolo11_onnx),
                             "--save", str(out), "--json", "-"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))  # fmt: skip
    assert json.loads(proc.stdout.readline())["frame"] == 0
    proc.send_signal(signal.SIGHUP)
    _, stderr = proc.communicate(timeout=120)  # (its stdout may miss lines the readline above buffered)
    assert proc.returncode == 0, stderr
    assert f": {2 * SAMPLE_VIDEO_FRAMES_EACH} frames (" in stderr and (out / sample_video.name).is_file()


def test_a_long_gap_in_a_live_recording_is_held_once(tmp_path: Path) -> None:
    """A live source silent for 30 s: the frame before is held MAX_HOLD (10 s) and the clock moves on;
    the frames after come at their own pace (each of the next ones was held up to 10 s again)."""
    from edgepose.video import MAX_HOLD, VideoRecorder

    recorder = VideoRecorder(tmp_path / "gap.mp4", 10.0, (32, 32))
    times = [i / 10 for i in range(10)] + [31 + i / 10 for i in range(10)]
    for at in times:
        recorder.write(np.full((32, 32, 3), round(at * 10) % 256, np.uint8), at)
    recorder.close()
    video = cv2.VideoCapture(str(tmp_path / "gap.mp4"))
    # the first second's 10 frames, its last held 10 s (100 more), the 10 after the gap: 1,020 before
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 10 + MAX_HOLD * 10 + 10


def test_a_folder_named_like_a_camera_is_a_folder(yolo11_onnx: Path, samples: list[Path], tmp_path: Path) -> None:
    """``predict 2024``: a folder of that name is there, so it is no camera index."""
    (tmp_path / "2024").mkdir()
    (tmp_path / "2024" / samples[0].name).write_bytes(samples[0].read_bytes())
    proc = subprocess.run([sys.executable, "-m", "edgepose", "predict", "2024", "-m", str(yolo11_onnx), "--json", "-"],
                          cwd=tmp_path, capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)[0]["persons"]) == 4
