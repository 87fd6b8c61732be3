"""``edgepose serve`` as a kiosk runs it: a real server process fed from a video file, its
endpoints and limits, a clean SIGTERM, and the page in a real headless Chromium."""

from __future__ import annotations

import http.client
import json
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgepose.errors import InputError, MissingExtraError

from .conftest import ROOT, assert_one_line_error
from .conftest import edgepose_cli as run_cli

CLASSIFIER = ROOT / "models" / "yoga-classifier.onnx"
LABELS = ("Chair", "Cobra", "Downdog", "Goddess", "Plank", "Tree", "Warrior")  # the shipped classifier's classes
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
STARTUP_S = 120  # loading the model and the first frames on a busy 2-core machine


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(port: int, path: str, method: str = "GET", body: bytes | None = None,
        headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:  # fmt: skip
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def start_server(video: Path, model: Path, *args: str, port: int | None = None) -> tuple[subprocess.Popen, int]:
    """``edgepose serve`` in a subprocess (on a free port unless given), once it has published frames."""
    port = port or free_port()
    proc = subprocess.Popen([sys.executable, "-m", "edgepose", "serve", "--source", str(video), "-m", str(model),
                             "-c", str(CLASSIFIER), "--port", str(port), *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"edgepose serve exited {proc.returncode}: {proc.stderr.read()}")
        try:
            status, _, body = get(port, "/health")
            if status == 200 and json.loads(body)["frames"] >= 2:
                return proc, port
        except OSError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise AssertionError(f"edgepose serve published no frame in {STARTUP_S}s")


def stop(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise


@pytest.fixture(scope="module")
def server(sample_video: Path, yolo11_onnx: Path) -> Iterator[int]:
    """A looping server on the test video with room for 3 open streams; yields its port. Its
    persons are shown from their first frame (--confirm 1), so every sampled frame has some."""
    proc, port = start_server(sample_video, yolo11_onnx, "--loop", "--max-clients", "3", "--confirm", "1")
    yield port
    stop(proc)


def read_events(port: int, count: int) -> list[dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/events")
    response = conn.getresponse()
    assert response.status == 200 and response.getheader("Content-Type").startswith("text/event-stream")
    records = []
    while len(records) < count:
        line = response.readline().decode()
        if line.startswith("data: "):
            records.append(json.loads(line[6:]))
    conn.close()
    return records


def test_endpoints_serve_the_annotated_stream_and_results(server: int) -> None:
    status, headers, page = get(server, "/")
    assert status == 200 and b"<title>edgepose live</title>" in page and b'src="stream.mjpg"' in page

    status, _, body = get(server, "/results")
    record = json.loads(body)
    assert status == 200 and (record["width"], record["height"]) == (640, 360)
    assert record["frame"] >= 0 and record["time"] >= 0 and record["persons"]
    # the sample video's pedestrians hold no yoga pose: label null, and the score that decided it
    assert all({"id", "label", "label_score", "pose_score"} <= set(p) and (p["label"] is None or p["label"] in LABELS)
               for p in record["persons"])  # fmt: skip

    status, headers, jpeg = get(server, "/frame.jpg")
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert status == 200 and headers["content-type"] == "image/jpeg" and image.shape == (360, 640, 3)

    events = read_events(server, 3)
    assert len({e["frame"] for e in events}) == 3  # three different frames, pushed as they came
    assert all(e["persons"] and all("id" in p for p in e["persons"]) for e in events)

    conn = http.client.HTTPConnection("127.0.0.1", server, timeout=30)
    conn.request("GET", "/stream.mjpg")
    response = conn.getresponse()
    assert response.getheader("Content-Type") == "multipart/x-mixed-replace; boundary=frame"
    assert response.readline() == b"--frame\r\n"
    part = dict(response.readline().decode().strip().split(": ", 1) for _ in range(2))
    response.readline()
    jpeg = response.read(int(part["Content-Length"]))
    conn.close()
    assert part["Content-Type"] == "image/jpeg" and cv2.imdecode(np.frombuffer(jpeg, np.uint8), 1).shape[0] == 360

    health = json.loads(get(server, "/health")[2])
    assert health["status"] == "ok" and health["frames"] > 0 and not health["ended"]


def clients_after_a_while(port: int) -> int:
    """The server's count of streaming clients once it reaches 0, or after 20 s."""
    deadline = time.monotonic() + 20
    while (clients := json.loads(get(port, "/health")[2])["clients"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    return clients


def test_limits_body_size_and_open_streams(server: int) -> None:
    status, _, body = get(server, "/results", method="POST", body=b"x" * 4096)
    assert status == 413 and b"1024 bytes" in body
    chunked = b"a\r\n" + b"x" * 10 + b"\r\n0\r\n\r\n"
    status, _, _ = get(server, "/", method="POST", body=chunked, headers={"Transfer-Encoding": "chunked"})
    assert status == 413
    assert get(server, "/results", method="DELETE")[0] == 405

    held = []
    try:
        for _ in range(3):  # --max-clients 3
            conn = http.client.HTTPConnection("127.0.0.1", server, timeout=30)
            conn.request("GET", "/events")
            response = conn.getresponse()
            assert response.status == 200
            response.readline()
            held.append(conn)
        status, headers, _ = get(server, "/stream.mjpg")
        assert status == 503 and "retry-after" in headers
        assert json.loads(get(server, "/health")[2])["clients"] == 3
    finally:
        for conn in held:
            conn.close()
    assert clients_after_a_while(server) == 0  # closed clients free their slots


def test_a_burst_of_stream_requests_cannot_overrun_max_clients(server: int) -> None:
    """6 stream requests sent at once to a server of --max-clients 3: 3 get their stream, 3 get 503
    (the slot is taken in the handler, before the stream's body starts), and all 3 come back free."""
    socks = [socket.create_connection(("127.0.0.1", server), timeout=30) for _ in range(6)]
    try:
        for i, sock in enumerate(socks):
            path = "/events" if i % 2 else "/stream.mjpg"
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        statuses = sorted(int(sock.recv(64).split()[1]) for sock in socks)
        assert statuses == [200, 200, 200, 503, 503, 503]
    finally:
        for sock in socks:
            sock.close()
    assert clients_after_a_while(server) == 0


def test_rate_limit_answers_429(sample_video: Path, yolo11_onnx: Path) -> None:
    """--rate 0.5: one request per 2 s per address (bursts of 1); the rest of a flood gets 429."""
    proc, port = start_server(sample_video, yolo11_onnx, "--rate", "0.5", "--loop")
    try:
        answers = [get(port, "/health") for _ in range(6)]
        limited = [headers for status, headers, _ in answers if status == 429]
        assert len(limited) >= 4 and all(h["retry-after"] == "2" for h in limited)
        assert {status for status, _, _ in answers} <= {200, 429}
        time.sleep(2.2)  # a token is back
        assert get(port, "/results")[0] == 200
    finally:
        assert stop(proc) == 0


def test_mjpeg_endpoint_is_a_stream_source(server: int, yolo11_onnx: Path) -> None:
    """A stream URL as SOURCE: edgepose reads another edgepose's MJPEG endpoint."""
    import edgepose

    # confirm=1: persons from their first frame, so the frames read have some wherever the loop is
    track = edgepose.TrackOptions(confirm=1)
    with edgepose.open_stream(f"http://127.0.0.1:{server}/stream.mjpg", yolo11_onnx, track=track) as frames:
        assert frames.live and frames.size == (640, 360)
        results = []
        for result in frames:
            results.append(result)
            if len(results) == 3:
                break
    assert [r.frame for r in results] == sorted(r.frame for r in results) and all(r.persons for r in results)


def test_sigterm_shuts_down_cleanly(sample_video: Path, yolo11_onnx: Path) -> None:
    proc, port = start_server(sample_video, yolo11_onnx, "--loop")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/events")  # an open stream must not hold the shutdown up
    response = conn.getresponse()
    assert response.status == 200
    start = time.monotonic()
    assert stop(proc) == 0
    assert time.monotonic() - start < 15
    assert b"event: end" in response.read()  # the open stream was ended, not cut
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass
    assert "Traceback" not in proc.stderr.read()


def test_serve_errors_are_one_line(yolo11_onnx: Path, tmp_path: Path) -> None:
    proc = run_cli("serve", "--source", "9", "-m", yolo11_onnx)
    assert_one_line_error(proc, InputError.exit_code, "cannot open camera 9")
    proc = run_cli("serve", "--source", tmp_path, "-m", yolo11_onnx)
    assert_one_line_error(proc, InputError.exit_code, "--source must be")
    code = "import sys\nsys.modules['starlette'] = None\nfrom edgepose.cli import main\nmain(['serve'])"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert_one_line_error(proc, MissingExtraError.exit_code, "edgepose[serve]")


@pytest.fixture
def chromium(tmp_path: Path) -> Iterator[object]:
    """Debian's chromium driven by Selenium through Debian's chromedriver (no browser download)."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip(
            "chromium not installed: DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver"
        )
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in the 'test' extra")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1280,800", f"--user-data-dir={tmp_path / 'profile'}"):  # fmt: skip
        options.add_argument(flag)
    service = webdriver.ChromeService(executable_path=str(CHROMEDRIVER))
    driver = webdriver.Chrome(options=options, service=service)
    try:
        yield driver
    finally:
        driver.quit()


def test_page_in_a_real_browser_shows_frames_and_labels(server: int, chromium: object, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = chromium
    driver.get(f"http://127.0.0.1:{server}/")
    assert driver.title == "edgepose live"
    wait = WebDriverWait(driver, 60, poll_frequency=0.2)
    wait.until(lambda d: d.execute_script("return document.getElementById('video').naturalWidth") == 640)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "li.person"))
    first = int(driver.find_element(By.ID, "status").get_attribute("data-frame"))
    wait.until(lambda d: int(d.find_element(By.ID, "status").get_attribute("data-frame")) != first)  # live
    # the list is rebuilt on every frame: read it in one script call, not element by element
    texts = driver.execute_script("return [...document.querySelectorAll('li.person')].map(li => li.textContent)")
    assert texts and all(t.startswith("#") and any(label in t for label in (*LABELS, "person")) for t in texts), texts
    driver.save_screenshot(str(tmp_path / "kiosk.png"))
    assert (tmp_path / "kiosk.png").stat().st_size > 10_000


def test_page_comes_back_by_itself_after_the_server_restarts(sample_video: Path, yolo11_onnx: Path,
                                                            chromium: object) -> None:  # fmt: skip
    """systemd restarts `serve` when its camera stops (exit 3); in chromium --kiosk nobody reloads the
    page. It showed "source ended" and its last frame for good; now it reconnects its events and
    reloads its video once the server is back."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver = chromium
    proc, port = start_server(sample_video, yolo11_onnx, "--loop")
    try:
        driver.get(f"http://127.0.0.1:{port}/")
        wait = WebDriverWait(driver, STARTUP_S, poll_frequency=0.2)
        state = "return [document.getElementById('status').dataset.state, document.getElementById('video').src]"
        wait.until(lambda d: d.execute_script(state)[0] == "live")
        assert stop(proc) == 0
        wait.until(lambda d: d.execute_script(state)[0] == "reconnecting")  # the end event, then retries
        proc, _ = start_server(sample_video, yolo11_onnx, "--loop", port=port)
        wait.until(lambda d: d.execute_script(state)[0] == "live")
        assert "stream.mjpg?t=" in driver.execute_script(state)[1]  # the video reloaded too
        wait.until(lambda d: d.execute_script("return document.getElementById('video').naturalWidth") == 640)
    finally:
        stop(proc)


def test_predict_on_a_live_url_keeps_its_outputs_on_sigterm(server: int, yolo11_onnx: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "edgepose", "predict", f"http://127.0.0.1:{server}/stream.mjpg",
                             "-m", str(yolo11_onnx), "--save", str(out), "--json", "-", "--confirm", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    # --confirm 1: persons from their first frame, so the 3 frames read have some wherever the loop is
    records = [json.loads(proc.stdout.readline()) for _ in range(3)]  # JSON Lines, one per frame as it comes
    proc.send_signal(signal.SIGTERM)
    rest, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    frames = len(records) + len(rest.splitlines())
    assert f"{frames} frames" in stderr and "annotated video in" in stderr
    (saved,) = out.glob("*.mp4")  # a live source's outputs are kept: the run ended normally (in one 600 s file)
    assert re.fullmatch(r"stream-\d{8}-\d{6}-001\.mp4", saved.name)
    assert cv2.VideoCapture(str(saved)).get(cv2.CAP_PROP_FRAME_WIDTH) == 640
    times = [r["time"] for r in records + [json.loads(line) for line in rest.splitlines()]]
    assert len(times) == frames and abs(seconds([saved]) - (times[-1] - times[0])) <= 0.2  # real time, not sped up
    assert all(r["image"].endswith("/stream.mjpg") and r["persons"] for r in records)


def frame_count(video: Path) -> int:
    return int(cv2.VideoCapture(str(video)).get(cv2.CAP_PROP_FRAME_COUNT))


def seconds(videos: list[Path]) -> float:
    """How long the videos play, together."""
    return sum(frame_count(v) / cv2.VideoCapture(str(v)).get(cv2.CAP_PROP_FPS) for v in videos)


def test_live_recording_comes_in_whole_files(server: int, yolo11_onnx: Path, tmp_path: Path) -> None:
    """--segment: a live source's video in files of N seconds, each closed and playable once the next
    begins (what a power cut would leave), numbered in order; together they play as long as the run
    (frames held at their times, however many the model dropped)."""
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "edgepose", "predict", f"http://127.0.0.1:{server}/stream.mjpg",
                             "-m", str(yolo11_onnx), "--save", str(out), "--json", "-", "--segment", "0.5"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    records, start = [], time.monotonic()
    while time.monotonic() - start < 3:
        records.append(json.loads(proc.stdout.readline()))
    finished = sorted(out.glob("stream-*.mp4"))  # the run still going
    assert len(finished) >= 2 and all(frame_count(v) > 0 for v in finished)
    proc.send_signal(signal.SIGTERM)
    rest, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    videos = sorted(out.iterdir())
    assert [v.name[-7:] for v in videos] == [f"{i:03d}.mp4" for i in range(1, len(videos) + 1)]  # no partial file
    assert videos[: len(finished)] == finished and f"annotated video in {len(videos)} files" in stderr
    times = [r["time"] for r in records + [json.loads(line) for line in rest.splitlines()]]
    assert abs(seconds(videos) - (times[-1] - times[0])) <= 0.2
    assert all(abs(seconds([v]) - 0.5) <= 0.2 for v in videos[:-1])
