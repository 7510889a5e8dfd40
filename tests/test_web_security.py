"""Issue 15 through the real web app (launch.py, tiny profile, login required): nothing is readable
before login, failed logins slow down, a 1 GB upload is refused without the server storing or
decoding it, uploads of every format the CLI reads are accepted (no ffmpeg), refusals name no
server path, new voices work from other sessions, temporary files go on exit."""

from __future__ import annotations

import http.cookiejar
import re
import select
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import numpy as np
import pytest
import soundfile as sf
from gradio_client import Client, handle_file

from tests.app_helpers import start_app, tiny_engine
from tests.audio_helpers import voiced

USER, PASSWORD = "ann", "correct horse battery"
LEAKS = ["SpeechGPT", "flite-", "gradio_api_info", "chat_text", "add_voice", "components", "dependencies"]


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("web")
    proc, url = start_app(tmp, env={"SPEECHGPT_AUTH": f"{USER}:{PASSWORD}"})
    yield proc, url, tmp
    if proc.poll() is None:
        proc.terminate()
        proc.wait(timeout=30)


def request(url: str, method: str = "GET", data: bytes | None = None, headers: dict | None = None, opener=None):
    """(status, headers, body) without raising on HTTP errors."""
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with (opener.open if opener else urllib.request.urlopen)(req, timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def login(url: str, password: str, opener=None):
    form = urllib.parse.urlencode({"username": USER, "password": password}).encode()
    return request(url + "login", "POST", form, {"Content-Type": "application/x-www-form-urlencoded"}, opener)


def every_route() -> list[tuple[str, str]]:
    """(method, path) of every HTTP route of the app, path parameters filled in."""
    from gradio.routes import App

    from app.server import api_routes
    from app.ui import build_demo

    engine = tiny_engine()  # the page's routes and, as launch.py serves them, the OpenAI-compatible API's
    app = App.create_app(build_demo(engine), app_kwargs={"routes": api_routes(engine, None, [(USER, PASSWORD)])})
    out = set()

    def walk(routes, prefix: str) -> None:
        for route in routes:
            context = getattr(route, "include_context", None)
            if context is not None:  # an included router (FastAPI >= 0.12x): its routes carry full paths
                walk(context.included_router.routes, prefix + context.prefix)
                continue
            path = prefix + (getattr(route, "path", "") or "")
            if getattr(route, "routes", None):  # a mount
                walk(route.routes, path)
                continue
            for method in sorted(getattr(route, "methods", None) or {"GET"}):
                out.add((method, re.sub(r"\{[^}]+\}", "x", path)))

    walk(app.routes, "")
    return sorted(out)


def test_nothing_is_readable_before_login(web):
    _, url, _ = web
    status, _, body = request(url)
    page = body.decode()
    assert status == 200 and "Sign in" in page and not [w for w in LEAKS if w in page]
    routes = every_route()
    assert len(routes) > 40 and ("POST", "/gradio_api/reset") in routes and ("GET", "/gradio_api/heartbeat/x") in routes
    assert ("POST", "/v1/audio/speech") in routes and ("GET", "/v1/audio/voices") in routes  # the API: 401 without a token
    answered = []
    for method, path in routes:
        if path in ("/", "/login", "/login/"):
            continue
        status, _, body = request(url.rstrip("/") + path, method, data=b"{}" if method in ("POST", "PUT") else None,
                                  headers={"Content-Type": "application/json"})
        text = body.decode(errors="replace")
        if status != 401 or [w for w in LEAKS if w in text]:
            answered.append((method, path, status, text[:80]))
    assert answered == []


def test_failed_logins_slow_down(web):
    _, url, _ = web
    started = time.perf_counter()
    statuses = [login(url, "wrong")[0] for _ in range(30)]
    took = time.perf_counter() - started
    assert statuses[:3] == [400, 400, 400], statuses
    assert statuses.count(429) >= 24, (statuses, took)
    status, headers, body = login(url, PASSWORD)  # the right password at once: still has to wait
    assert status == 429 and int(headers["retry-after"]) >= 1 and b"try again" in body
    time.sleep(int(headers["retry-after"]) + 0.2)
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    assert login(url, PASSWORD, opener)[0] == 200
    status, _, body = request(url + "config", opener=opener)
    assert status == 200 and b"chat_text" in body  # after login, the app is there


def test_the_api_takes_a_login_as_its_bearer_token_and_throttles_wrong_ones(web):
    """/v1 is not behind the browser login but behind its own Bearer check (a login's user:password
    here, no --api-key); a wrong token counts as a failed login."""
    _, url, _ = web
    api = url.rstrip("/") + "/v1/models"
    status, _, body = request(api)
    assert status == 401 and b"flite-" not in body and b"tts-1" not in body
    status, _, body = request(api, headers={"Authorization": f"Bearer {USER}:{PASSWORD}"})
    assert status == 200 and b"tts-1" in body
    statuses = [request(api, headers={"Authorization": "Bearer ann:wrong"})[0] for _ in range(4)]
    assert statuses == [401, 401, 401, 429], statuses
    status, headers, body = request(api, headers={"Authorization": f"Bearer {USER}:{PASSWORD}"})
    assert status == 429 and b"rate_limit_error" in body  # the right token waits too
    time.sleep(int(headers["retry-after"]) + 0.2)
    assert request(api, headers={"Authorization": f"Bearer {USER}:{PASSWORD}"})[0] == 200  # and clears the count


def server_rss(pid: int) -> int:
    import psutil

    return psutil.Process(pid).memory_info().rss


def push_upload(url: str, cookie: str, total: int, chunked: bool) -> tuple[int, int]:
    """Send a ``total``-byte WAV upload (multipart) and stop when the server answers; returns
    (HTTP status, bytes sent before the answer)."""
    host, port = urllib.parse.urlparse(url).netloc.split(":")
    s = socket.create_connection((host, int(port)), timeout=30)
    boundary = "b0undary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"big.wav\"\r\n"
            "Content-Type: audio/wav\r\n\r\n").encode()
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {total}"
    s.sendall((f"POST /gradio_api/upload HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\n"
               f"Content-Type: multipart/form-data; boundary={boundary}\r\n{framing}\r\n\r\n").encode())
    block = bytes(2**20)
    sent, status = 0, 0
    first = True
    try:
        while sent < total:
            if select.select([s], [], [], 0.5 if first else 0)[0]:
                break  # the server has answered
            piece = head + block[len(head):] if first else block
            first = False
            s.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            sent += len(piece)
    except OSError:  # the server closed the connection while we were still sending
        pass
    try:
        answer = s.recv(4096).decode(errors="replace")
        status = int(answer.split()[1]) if answer.startswith("HTTP/") else 0
    except OSError:
        status = -1
    s.close()
    return status, sent


def test_a_1gb_upload_is_refused_without_storing_it_and_memory_stays_bounded(web):
    proc, url, tmp = web
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    assert login(url, PASSWORD, opener)[0] == 200
    cookie = "; ".join(f"{c.name}={c.value}" for c in jar)
    peak = [server_rss(proc.pid)]
    before = peak[0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak.append(server_rss(proc.pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        started = time.perf_counter()
        status, sent = push_upload(url, cookie, 2**30, chunked=False)  # declared 1 GiB: refused from the header
        declared_s = time.perf_counter() - started
        assert status == 413 and sent <= 64 * 2**20, (status, sent)
        status, sent_chunked = push_upload(url, cookie, 2**30, chunked=True)  # no length: cut off at the limit while it streams
        assert status == 413 and sent_chunked <= 200 * 2**20, (status, sent_chunked)
    finally:
        done.set()
        sampler.join()
    grown = max(peak) - before
    print(f"1 GiB upload: refused after {sent / 2**20:.0f} MiB sent in {declared_s:.2f} s (Content-Length), "
          f"after {sent_chunked / 2**20:.0f} MiB (chunked); server RSS grew by {grown / 2**20:.1f} MiB at most")
    assert grown < 100 * 2**20, f"server memory grew by {grown / 2**20:.0f} MB"
    stored = sum(f.stat().st_size for f in tmp.glob("speechgpt-gen-web-*/**/*") if f.is_file())
    assert stored < 60 * 2**20  # nothing of the declared-length upload; at most the limit of the chunked one


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("formats")
    speech = np.concatenate([voiced(1.4, f0=170, seed=5), np.zeros(2000)]).astype(np.float32)
    files = {}
    for name, kw in [("flac", dict(format="FLAC")), ("mp3", dict(format="MP3")), ("float-wav", dict(format="WAV", subtype="FLOAT"))]:
        path = d / f"clip-{name}.{name.split('-')[-1]}"
        sf.write(path, speech, 22050 if name == "mp3" else 16000, **kw) if name != "mp3" else sf.write(path, np.interp(
            np.arange(0, speech.size, 16000 / 22050), np.arange(speech.size), speech), 22050, **kw)
        files[name] = path
    fake = d / "notes.wav"
    fake.write_text("not audio, just a text file renamed to .wav\n" * 50)
    files["text"] = fake
    return files


def test_uploads_in_every_format_go_through_the_engine_loader(web, clips):
    _, url, tmp = web
    client = Client(url, auth=(USER, PASSWORD), verbose=False)
    for name in ["flac", "mp3", "float-wav"]:
        library, *_ = client.predict(f"fresh-{name}", handle_file(str(clips[name])), "", False, "flite-slt", "flite-slt", "flite-slt",
                                     api_name="/add_voice")
        assert library["value"] == f"fresh-{name}", name
    with pytest.raises(Exception) as err:
        client.predict("fake", handle_file(str(clips["text"])), "", False, "flite-slt", "flite-slt", "flite-slt", api_name="/add_voice")
    message = str(err.value)
    assert "not audio in a format we read" in message, message
    assert "/" not in message.split("(")[0] and str(tmp) not in message and "gradio" not in message.lower(), message
    # another browser session (its page loaded before these voices existed) can use and delete them
    other = Client(url, auth=(USER, PASSWORD), verbose=False)
    _, audio, _, _ = other.predict("Hi.", "fresh-flac", None, steps=2, seed=0, api_name="/tts")
    assert sf.info(audio).frames > 0
    assert len(list(tmp.glob("speechgpt-gen-web-*/**/tts-*.wav"))) == 1  # one copy: written in Gradio's cache, not copied there
    library, *_ = other.predict("fresh-mp3", "flite-slt", "flite-slt", "flite-slt", api_name="/delete_voice")
    assert "fresh-mp3" not in [c[0] for c in library["choices"]]


def test_temporary_files_are_removed_on_exit(web):
    proc, _, tmp = web
    folders = list(tmp.glob("speechgpt-gen-web-*"))
    assert [f.name for f in folders] == [f"speechgpt-gen-web-{proc.pid}"]
    proc.terminate()
    proc.wait(timeout=60)
    assert not folders[0].exists()
