"""``edgepose serve``: a kiosk's local web server over one live stream (the ``serve`` extra:
Starlette + uvicorn).

One engine thread runs an ``edgepose.Stream`` on the source and publishes each frame (annotated
JPEG + the JSON record) to a ``Hub``; the async handlers hand the latest to every client:

    /              a page: the live annotated stream and each person's id and label
    /stream.mjpg   the annotated stream as MJPEG (multipart/x-mixed-replace)
    /frame.jpg     the latest annotated frame
    /results       the latest frame's record (the JSON schema of ``edgepose predict``)
    /events        server-sent events: one ``data:`` record per frame, ``event: end`` at the end
    /health        source, frames, fps, dropped, clients, ended

Bound to 127.0.0.1 unless ``host`` says otherwise. Limits (``ServeLimits``): a request with a body
over ``max_body`` bytes (the API takes none) gets 413; more than ``rate`` requests per second
from one address (bursts to ``burst``) get 429; more than ``max_clients`` open streams
(/stream.mjpg, /events) get 503, and so does a connection beyond ``max_connections``. SIGTERM
or Ctrl-C ends the open streams, stops the engine and exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import cv2
import uvicorn
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from .draw import draw_result
from .errors import EdgeposeError, InputError
from .sources import ASSETS
from .stream import Stream

log = logging.getLogger("edgepose")
PAGE = (ASSETS / "kiosk.html").read_text(encoding="utf-8")  # the kiosk page: static, its script reads /events


@dataclass(frozen=True)
class ServeLimits:
    """What the server refuses, and with which status."""

    max_clients: int = 8  # open /stream.mjpg + /events responses; beyond: 503
    max_body: int = 1024  # bytes of request body; beyond (or a body without Content-Length): 413
    rate: float = 20.0  # requests per second per client address, on average; beyond: 429
    burst: int = 40  # requests one address may send at once
    max_connections: int = 64  # open connections (uvicorn's limit_concurrency); beyond: 503
    jpeg_quality: int = 80

    def __post_init__(self) -> None:
        if min(self.max_clients, self.max_body + 1, self.burst, self.max_connections) < 1 or self.rate <= 0:
            raise InputError("serve limits must be positive")
        if not 1 <= self.jpeg_quality <= 100:
            raise InputError(f"jpeg quality must be 1..100, got {self.jpeg_quality}")


class Hub:
    """The latest frame, written by the engine thread and awaited by the handlers on the loop."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.seq = 0
        self.jpeg: bytes | None = None
        self.record: dict[str, Any] | None = None
        self.ended = False  # the source ended or failed, or the server is stopping
        self.error: str | None = None
        self.clients = 0
        self.stats: dict[str, Any] = {"frames": 0, "dropped": 0, "fps": None}
        self._event: asyncio.Event | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop, self._event = loop, asyncio.Event()

    def _notify(self) -> None:  # on the loop
        assert self._event is not None
        self._event.set()
        self._event = asyncio.Event()

    def _call(self, fn: Any, *args: Any) -> None:
        if self.loop is not None and not self.loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed in between
                self.loop.call_soon_threadsafe(fn, *args)

    def publish(self, jpeg: bytes, record: dict[str, Any], stats: dict[str, Any]) -> None:
        """From the engine thread: a new frame."""
        self._call(self._set, jpeg, record, stats)

    def _set(self, jpeg: bytes, record: dict[str, Any], stats: dict[str, Any]) -> None:
        self.jpeg, self.record, self.stats = jpeg, record, stats
        self.seq += 1
        self._notify()

    def end(self, error: str | None = None) -> None:
        """From any thread: no more frames will come (the streams close)."""
        self._call(self._end, error)

    def _end(self, error: str | None) -> None:
        self.ended = True
        self.error = self.error or error
        self._notify()

    async def wait(self, after: int, timeout: float) -> bool:
        """True when a frame newer than ``after`` is there; False on timeout or at the end."""
        assert self._event is not None
        while self.seq <= after and not self.ended:
            try:
                await asyncio.wait_for(self._event.wait(), timeout)
            except asyncio.TimeoutError:
                return False
        return self.seq > after


class Guard:
    """ASGI middleware: 413 for request bodies over the limit, 429 over the per-address rate."""

    def __init__(self, app: ASGIApp, limits: ServeLimits) -> None:
        self.app, self.limits = app, limits
        self.buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # address -> (tokens, time)

    def _allow(self, address: str) -> bool:
        now = time.monotonic()
        tokens, last = self.buckets.pop(address, (float(self.limits.burst), now))
        tokens = min(float(self.limits.burst), tokens + (now - last) * self.limits.rate)
        allowed = tokens >= 1.0
        self.buckets[address] = (tokens - 1.0 if allowed else tokens, now)
        while len(self.buckets) > 4096:  # forget the longest-idle addresses
            self.buckets.popitem(last=False)
        return allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        chunked = b"chunked" in headers.get(b"transfer-encoding", b"").lower()
        if chunked or (length is not None and (not length.isdigit() or int(length) > self.limits.max_body)):
            response: Response = JSONResponse({"error": f"request body over {self.limits.max_body} bytes"}, 413,
                                              headers={"Connection": "close"})  # fmt: skip
            return await response(scope, receive, send)
        address = (scope.get("client") or ("?", 0))[0]
        if not self._allow(address):
            retry = max(1, round(1 / self.limits.rate))
            response = JSONResponse({"error": f"over {self.limits.rate:g} requests/s"}, 429,
                                    headers={"Retry-After": str(retry)})  # fmt: skip
            return await response(scope, receive, send)
        return await self.app(scope, receive, send)


class Engine:
    """The thread that runs the stream and publishes every frame to the hub."""

    def __init__(self, stream: Stream, hub: Hub, limits: ServeLimits, on_live_end: Any) -> None:
        self.stream, self.hub, self.limits, self.on_live_end = stream, hub, limits, on_live_end
        self.thread = threading.Thread(target=self._run, name="edgepose-engine", daemon=True)
        self.stopping = threading.Event()

    def _run(self) -> None:
        stream, skeleton = self.stream, self.stream.predictor.meta.skeleton
        params = [cv2.IMWRITE_JPEG_QUALITY, self.limits.jpeg_quality]
        error, start, frames = None, time.perf_counter(), 0
        try:
            for image, result in stream.iter_frames():
                ok, jpeg = cv2.imencode(".jpg", draw_result(image, result, skeleton), params)
                frames += 1
                fps = frames / max(time.perf_counter() - start, 1e-9)
                stats = {"frames": frames, "dropped": stream.dropped, "fps": round(fps, 2)}
                self.hub.publish(jpeg.tobytes() if ok else b"", result.to_dict(), stats)
                if self.stopping.is_set():
                    break
        except EdgeposeError as exc:
            error = str(exc)
        except Exception as exc:  # the server keeps answering; /health says what happened
            error = f"unexpected {type(exc).__name__}: {exc}"
        self.hub.end(error)
        if stream.source.live and not self.stopping.is_set():  # a camera that went away: exit, let systemd restart
            self.on_live_end(error or f"{stream.source.name} stopped delivering frames")
        elif error:  # a file: the server goes on with the last frame; /health says what happened
            log.error(f"source stopped: {error}")

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.stream.close()
        if self.thread.ident is not None:  # started
            self.thread.join(timeout=10)


def build_app(hub: Hub, limits: ServeLimits, engine: Engine | None = None) -> ASGIApp:
    """The Starlette app over a hub (``engine`` is started and stopped with the app's lifespan)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        hub.bind(asyncio.get_running_loop())
        if engine:
            engine.start()
        try:
            yield
        finally:
            hub._end(None)
            if engine:
                await asyncio.to_thread(engine.stop)

    def too_many() -> Response:
        return JSONResponse({"error": f"over {limits.max_clients} open streams"}, 503, headers={"Retry-After": "5"})

    def no_frame() -> Response:
        return JSONResponse({"error": hub.error or "no frame yet"}, 503, headers={"Retry-After": "1"})

    async def page(request: Request) -> Response:
        return HTMLResponse(PAGE)

    async def frame(request: Request) -> Response:
        if not hub.jpeg:
            return no_frame()
        return Response(hub.jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    async def results(request: Request) -> Response:
        if hub.record is None:
            return no_frame()
        return JSONResponse(hub.record, headers={"Cache-Control": "no-store"})

    async def health(request: Request) -> Response:
        source = engine.stream.source.name if engine else None
        return JSONResponse({"status": "ok", "source": source, "ended": hub.ended, "error": hub.error,
                             "clients": hub.clients, **hub.stats})  # fmt: skip

    def take_slot() -> Callable[[], None] | None:
        """A place under ``max_clients`` for one streaming client, taken in the handler itself (no
        await between the check and the count, so a burst cannot overrun it); None when full. The
        release it returns runs when the stream ends, and, in case its body never started (the
        client left first), as the response's background task: whichever comes first frees it."""
        if hub.clients >= limits.max_clients:
            return None
        hub.clients += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                hub.clients -= 1

        return release

    async def _frames(release: Callable[[], None]) -> AsyncIterator[int]:
        """Sequence numbers of new frames for one client, while it and the server last."""
        try:
            seq = max(hub.seq - 1, 0)  # the latest frame first
            while True:
                if await hub.wait(seq, timeout=15.0):
                    seq = hub.seq
                    yield seq
                elif hub.ended:
                    return
                else:
                    yield -1  # keep-alive
        finally:
            release()

    async def mjpeg(request: Request) -> Response:
        if (release := take_slot()) is None:
            return too_many()

        async def parts() -> AsyncIterator[bytes]:
            async for seq in _frames(release):
                if seq >= 0 and hub.jpeg:
                    yield (b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(hub.jpeg)
                           + hub.jpeg + b"\r\n")  # fmt: skip

        return StreamingResponse(parts(), media_type="multipart/x-mixed-replace; boundary=frame",
                                 headers={"Cache-Control": "no-store"}, background=BackgroundTask(release))  # fmt: skip

    async def events(request: Request) -> Response:
        if (release := take_slot()) is None:
            return too_many()

        async def lines() -> AsyncIterator[str]:
            async for seq in _frames(release):
                if seq < 0:
                    yield ": keep-alive\n\n"
                elif hub.record is not None:
                    yield f"id: {seq}\ndata: {json.dumps(hub.record, separators=(',', ':'))}\n\n"
            yield f"event: end\ndata: {json.dumps({'error': hub.error})}\n\n"  # the page shows why

        return StreamingResponse(lines(), media_type="text/event-stream", background=BackgroundTask(release),
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})  # fmt: skip

    routes = [Route("/", page), Route("/frame.jpg", frame), Route("/results", results), Route("/health", health),
              Route("/stream.mjpg", mjpeg), Route("/events", events)]  # fmt: skip
    return Guard(Starlette(routes=routes, lifespan=lifespan), limits)


class _Server(uvicorn.Server):
    """uvicorn's server that also ends the open streams at once on SIGTERM/SIGINT, so the graceful
    shutdown does not wait on responses that never end."""

    def __init__(self, config: uvicorn.Config, hub: Hub) -> None:
        super().__init__(config)
        self.hub = hub
        self.failure: str | None = None

    def handle_exit(self, sig: int, frame: Any) -> None:
        self.hub.end(None)
        super().handle_exit(sig, frame)

    def fail(self, message: str) -> None:
        """From the engine thread: a live source ended; stop with an error."""
        self.failure = message
        self.hub.end(message)
        self.should_exit = True


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise InputError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def run_server(stream: Stream, host: str = "127.0.0.1", port: int = 8000, limits: ServeLimits | None = None,
          announce: Any = print) -> None:  # fmt: skip
    """Serve ``stream`` until SIGTERM/SIGINT (returns) or until a live source ends (raises ``InputError``)."""
    limits = limits or ServeLimits()
    hub = Hub()
    sock = _bind(host, port)
    holder: dict[str, _Server] = {}
    engine = Engine(stream, hub, limits, on_live_end=lambda message: holder["server"].fail(message))
    config = uvicorn.Config(build_app(hub, limits, engine), log_level="warning", access_log=False,
                            limit_concurrency=limits.max_connections, timeout_keep_alive=5,
                            timeout_graceful_shutdown=5, lifespan="on")  # fmt: skip
    server = holder["server"] = _Server(config, hub)
    bound_host, bound_port = sock.getsockname()[:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    announce(f"serving {stream.source.name} on http://{shown}:{bound_port}/ (SIGTERM or Ctrl-C stops)")
    # uvicorn re-raises the signal it handled once it has shut down; a handler of ours takes it
    # instead of the default one, so a SIGTERM ends the process with 0 rather than killed by -15.
    main = threading.current_thread() is threading.main_thread()
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGTERM, signal.SIGINT)} if main else {}
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()
        engine.stop()
    if server.failure:
        raise InputError(server.failure)
