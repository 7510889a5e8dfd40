"""An OpenAI-compatible speech API on the same server, models and voice library as the web UI.

    POST /v1/audio/speech          text -> speech (JSON: model, input, voice, response_format, speed,
                                   stream_format; ours: seed)
    GET  /v1/audio/voices          the voice library (also at /v1/voices)
    POST /v1/audio/transcriptions  speech -> text (multipart: file, model): OpenAI's names through the app's
                                   speech recogniser (Whisper tiny.en in the demo profile), speechgpt-gen
                                   through the semantic model's ASR
    POST /v1/audio/conversions     voice conversion (ours; multipart: file, voice, response_format)
    GET  /v1/models                the model names accepted

Model names: OpenAI's speech names (``tts-1``, ``tts-1-hd``, ``gpt-4o-mini-tts``) and ``speechgpt-gen``
run the configured chain; ``speechgpt-gen-flow`` / ``speechgpt-gen-soundstorm`` choose the perceptual
model. Transcription: ``whisper-1``, ``gpt-4o-transcribe``, ``gpt-4o-mini-transcribe`` (the app's
recogniser) and ``speechgpt-gen`` (the chain), as above.
Errors use OpenAI's JSON shape ``{"error": {"message", "type", "param", "code"}}``; a key set with
``--api-key`` (or ``--auth`` users as ``user:password``) is checked as ``Authorization: Bearer ...``.
Uploaded audio is decoded from the request bytes by the engine's loader (soundfile; length checked
from the header first), never through a file path, and reaches the engine as a ``(rate, samples)``
``AudioInput``. Request sizes are limited by ``app.security.SecurityGate`` before the body is read.
"""

from __future__ import annotations

import hmac
import io
import json
import logging
import struct
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
from fastapi import Request  # at module level: FastAPI resolves the handlers' annotations here

from engine.audio import SAMPLE_RATE
from engine.errors import EngineError, ModelUnavailableError

log = logging.getLogger(__name__)

SPEECH_MODELS = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts", "speechgpt-gen", "speechgpt-gen-flow", "speechgpt-gen-soundstorm")
TRANSCRIPTION_MODELS = ("whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe", "speechgpt-gen")
PERCEPTUAL_OF_MODEL = {"speechgpt-gen-flow": "flow", "speechgpt-gen-soundstorm": "soundstorm"}
MAX_INPUT_CHARS = 4096  # OpenAI's limit; the engine's own (pipeline.max_text_chars) applies too

#: response_format -> (soundfile format, subtype, content type); offered where libsndfile can write it
FORMATS: dict[str, tuple[str, str, str]] = {
    "wav": ("WAV", "PCM_16", "audio/wav"),
    "flac": ("FLAC", "PCM_16", "audio/flac"),
    "mp3": ("MP3", "MPEG_LAYER_III", "audio/mpeg"),
    "opus": ("OGG", "OPUS", "audio/ogg"),
    "pcm": ("RAW", "PCM_16", "audio/pcm"),
}
STREAMABLE = ("wav", "pcm")  # formats sent sentence by sentence when a stream is asked for


@dataclass
class ApiSettings:
    """Who may call the API and how much it accepts."""

    tokens: list[str] = field(default_factory=list)  # accepted Bearer tokens; empty = open
    max_upload_bytes: int = 25 * 2**20  # OpenAI's 25 MB; the server sets server.max_upload_mb (the web UI's limit)


class ApiError(Exception):
    """A request the API refuses; becomes OpenAI's error JSON with ``status``."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


def settings_from(api_key: str | None, auth: list[tuple[str, str]] | None) -> ApiSettings:
    """Bearer tokens: the API key, and ``user:password`` of each ``--auth`` user."""
    tokens = [api_key] if api_key else []
    tokens += [f"{user}:{password}" for user, password in auth or []]
    return ApiSettings(tokens=tokens)


def available_formats() -> list[str]:
    """The response formats this machine's libsndfile can write."""
    import soundfile as sf

    return [name for name, (fmt, subtype, _) in FORMATS.items() if sf.check_format(fmt, subtype)]


def encode_audio(wav: np.ndarray, sample_rate: int, response_format: str) -> bytes:
    """float32 mono -> the bytes of ``response_format`` (16-bit where the format has samples)."""
    import soundfile as sf

    fmt, subtype, _ = FORMATS[response_format]
    # one float -> 16-bit rounding for every format (libsndfile's own scaling differs between them)
    pcm = (np.clip(np.asarray(wav, dtype=np.float32), -1.0, 1.0) * 32767).astype("<i2")
    if response_format == "pcm":
        return pcm.tobytes()
    buf = io.BytesIO()
    sf.write(buf, pcm, sample_rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def wav_stream_header(sample_rate: int) -> bytes:
    """A 16-bit mono WAV header whose sizes say "unknown length" (0xFFFFFFFF), for streaming."""
    unknown = 0xFFFFFFFF
    return (b"RIFF" + struct.pack("<I", unknown) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 1, sample_rate, sample_rate * 2, 2, 16)
            + b"data" + struct.pack("<I", unknown))


def decode_upload(data: bytes, what: str = "file", max_seconds: float | None = None, min_seconds: float = 0.0) -> tuple[int, np.ndarray]:
    """Uploaded audio bytes -> (sample rate, float32 samples): the engine's loader reads them with
    soundfile from memory, checking channels, rate and length from the header before decoding
    (so a long clip costs no memory), exactly as the UI and the CLI accept audio."""
    from engine.audio import AudioError, load_audio

    if not data:
        raise ApiError(400, f"the uploaded {what} is empty", param=what)
    try:
        wav = load_audio(bytes(data), max_seconds=max_seconds, min_seconds=min_seconds)
    except AudioError as exc:  # names the problem (format, length, channels, corruption), never a path
        raise ApiError(400, f"the uploaded {what}: {exc}", param=what, code="invalid_audio") from exc
    return SAMPLE_RATE, wav


class SpeechApi:
    """The request handlers over a shared engine (a ``GatedEngine`` on the server)."""

    def __init__(self, engine: Any, settings: ApiSettings | None = None):
        self.engine = engine
        self.settings = settings or ApiSettings()

    # -------------------------------------------------------------- checks
    def authorize(self, header: str | None) -> None:
        """Raise 401 unless the Bearer token is one of the accepted ones (or none are set)."""
        if not self.settings.tokens:
            return
        scheme, _, token = (header or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "You didn't provide an API key. Send it as 'Authorization: Bearer KEY' (the server's --api-key).",
                           code="missing_api_key")
        if not any(hmac.compare_digest(token.strip().encode(), t.encode()) for t in self.settings.tokens):
            raise ApiError(401, "Incorrect API key provided.", code="invalid_api_key")

    def voice_name(self, voice: Any) -> str:
        """A library voice (OpenAI's voice names are not in the library unless you add them)."""
        if isinstance(voice, dict):  # newer clients may send {"id": name}
            voice = voice.get("id") or voice.get("name")
        names = self.engine.voices.names()
        if not isinstance(voice, str) or voice not in names:
            raise ApiError(400, f"unknown voice {voice!r}; the library has: {', '.join(names) or 'no voices yet'} "
                                "(GET /v1/audio/voices; add one in the Voices tab or with `.venv/bin/python -m engine voices add`)",
                           param="voice", code="voice_not_found")
        return voice

    def response_format(self, value: Any, default: str = "mp3") -> str:
        fmt = default if value in (None, "") else value
        formats = available_formats()
        if fmt not in formats:
            raise ApiError(400, f"response_format {fmt!r} is not available; choose one of {', '.join(formats)}", param="response_format")
        return fmt

    def options(self, model: Any, seed: Any = None):
        from engine.pipeline import GenerationOptions

        if model not in SPEECH_MODELS:
            raise ApiError(400, f"unknown model {model!r}; use one of {', '.join(SPEECH_MODELS)}", param="model", code="model_not_found")
        if seed is not None and not (isinstance(seed, int) and not isinstance(seed, bool)):
            raise ApiError(400, "seed must be an integer", param="seed")
        return GenerationOptions(perceptual=PERCEPTUAL_OF_MODEL.get(model), seed=seed)

    # -------------------------------------------------------------- endpoints
    def models(self) -> dict[str, Any]:
        names = list(dict.fromkeys(SPEECH_MODELS + TRANSCRIPTION_MODELS))
        return {"object": "list", "data": [{"id": n, "object": "model", "created": 0, "owned_by": "speechgpt-gen"} for n in names]}

    def voices(self) -> dict[str, Any]:
        out = []
        for v in self.engine.voices.list():
            out.append({"id": v.name, "name": v.name, "duration_s": round(v.duration, 2), "bundled": v.bundled,
                        "description": v.description, "licence": getattr(v, "licence", "")})
        return {"object": "list", "voices": out, "data": out}

    def speech(self, body: Any) -> tuple[str, Iterator[bytes] | bytes, dict[str, str]]:
        """(content type, whole bytes or a stream of chunks, extra headers) for a /v1/audio/speech body."""
        if not isinstance(body, dict):
            raise ApiError(400, "the request body must be a JSON object with model, input and voice")
        text = body.get("input")
        if not isinstance(text, str) or not text.strip():
            raise ApiError(400, "input is empty: give the text to speak", param="input")
        limit = min(MAX_INPUT_CHARS, self.engine.config.pipeline.max_text_chars)
        if len(text) > limit:
            raise ApiError(400, f"input has {len(text)} characters; the limit is {limit}", param="input", code="string_above_max_length")
        options = self.options(body.get("model"), body.get("seed"))
        voice = self.voice_name(body.get("voice"))
        fmt = self.response_format(body.get("response_format"))
        speed = body.get("speed", 1.0)
        if not isinstance(speed, (int, float)) or isinstance(speed, bool) or not 0.25 <= float(speed) <= 4.0:
            raise ApiError(400, "speed must be a number from 0.25 to 4.0", param="speed")
        if abs(float(speed) - 1.0) > 1e-6:
            raise ApiError(400, "speed other than 1.0 is not supported: the models speak at their own pace "
                                "(changing it after synthesis would change the pitch)", param="speed", code="unsupported_value")
        stream = body.get("stream_format")
        if stream not in (None, "audio"):
            raise ApiError(400, f"stream_format {stream!r} is not supported; use 'audio' (raw chunks) or leave it out", param="stream_format")
        headers = {"X-Sample-Rate": str(SAMPLE_RATE)}
        content_type = FORMATS[fmt][2]
        if (stream == "audio" or body.get("stream") is True) and fmt in STREAMABLE:
            return content_type, self._stream_speech(text, voice, options, fmt), headers
        result = self.engine.tts(text, voice, options=options)
        headers.update(self._metric_headers(result))
        return content_type, encode_audio(result.wav, result.sample_rate, fmt), headers

    def _stream_speech(self, text: str, voice: str, options, fmt: str) -> Iterator[bytes]:
        """The engine's streamed TTS: each piece is sent as soon as its audio exists (the first
        after the first sentence's first units). Text, voice and options are checked here, before
        the response starts."""
        from engine.pipeline import AudioChunk

        events = self.engine.stream_tts(text, voice, options=options)

        def body() -> Iterator[bytes]:
            first = True
            try:
                for event in events:
                    if not isinstance(event, AudioChunk) or not event.wav.size:
                        continue
                    if first and fmt == "wav":
                        yield wav_stream_header(event.sample_rate)
                    first = False
                    yield encode_audio(event.wav, event.sample_rate, "pcm")
            except EngineError as exc:
                # the status line has been sent: the stream ends early; the reason goes to the log
                log.warning("speech stream stopped early: %s", exc)

        return body()

    @staticmethod
    def _metric_headers(result) -> dict[str, str]:
        m = result.metrics
        out = {"X-Audio-Seconds": f"{m.audio_s:.3f}", "X-Real-Time-Factor": f"{m.rtf:.3f}", "X-First-Audio-Seconds": f"{m.first_audio_s:.3f}"}
        load = getattr(m, "load_s", 0.0)
        if load:
            out["X-Models-Load-Seconds"] = f"{load:.3f}"
        return out

    def _upload(self, data: bytes) -> tuple[int, np.ndarray]:
        """An uploaded clip within the engine's length limits (pipeline.min/max_input_seconds)."""
        cfg = self.engine.config.pipeline
        return decode_upload(data, max_seconds=cfg.max_input_seconds, min_seconds=cfg.min_input_seconds)

    def transcription(self, data: bytes, model: Any, response_format: Any) -> tuple[str, Any]:
        """(kind "json" or "text", payload) for an uploaded clip. ``speechgpt-gen`` transcribes through the
        chain (RVQ-1 units -> the semantic model that serves ASR, with its text-output settings); OpenAI's
        names through the app's speech recogniser, the one that hears spoken chat messages (Whisper
        tiny.en where ``semantic.chat_asr`` is ``whisper``, as in the demo profile; else the chain)."""
        if model not in TRANSCRIPTION_MODELS:
            raise ApiError(400, f"unknown model {model!r}; use one of {', '.join(TRANSCRIPTION_MODELS)}", param="model", code="model_not_found")
        if response_format not in (None, "", "json", "text", "verbose_json"):
            raise ApiError(400, f"response_format {response_format!r} is not supported; use json, text or verbose_json", param="response_format")
        rate, wav = self._upload(data)
        text = self.engine.transcribe((rate, wav), recognizer="chain" if model == "speechgpt-gen" else "chat")
        if response_format == "text":
            return "text", text
        if response_format == "verbose_json":
            return "json", {"task": "transcribe", "language": "english", "duration": wav.size / SAMPLE_RATE, "text": text}
        return "json", {"text": text}

    def conversion(self, data: bytes, voice: Any, response_format: Any, model: Any = "speechgpt-gen", seed: Any = None) -> tuple[str, bytes, dict[str, str]]:
        """Voice conversion of an uploaded clip into a library voice."""
        options = self.options(model or "speechgpt-gen", seed)
        name = self.voice_name(voice)
        fmt = self.response_format(response_format, default="wav")
        rate, samples = self._upload(data)
        result = self.engine.convert((rate, samples), name, options=options)  # an AudioInput pair, never a path
        return FORMATS[fmt][2], encode_audio(result.wav, result.sample_rate, fmt), self._metric_headers(result)


def error_status(exc: BaseException) -> ApiError:
    """Any exception -> the ApiError sent back (tracebacks only for real faults, in the server log)."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, ModelUnavailableError):
        return ApiError(503, str(exc), code="model_unavailable", kind="server_error")
    if isinstance(exc, EngineError):
        return ApiError(400, str(exc))
    log.error("unexpected error in the speech API", exc_info=exc)
    return ApiError(500, f"internal error ({type(exc).__name__}: {exc}); details are in the server log", kind="server_error")


def build_router(api: SpeechApi):
    """The FastAPI routes of ``api`` under /v1."""
    from fastapi import APIRouter
    from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
    from starlette.concurrency import run_in_threadpool

    router = APIRouter()

    def fail(exc: BaseException) -> JSONResponse:
        err = error_status(exc)
        headers = {"WWW-Authenticate": "Bearer"} if err.status == 401 else None
        return JSONResponse(err.body(), status_code=err.status, headers=headers)

    async def read_json(request: Request) -> Any:
        raw = await request.body()
        if len(raw) > api.settings.max_upload_bytes:
            raise ApiError(413, "the request body is too large")
        try:
            return json.loads(raw or b"null")
        except ValueError as exc:
            raise ApiError(400, f"the request body is not valid JSON: {exc}") from exc

    async def read_form(request: Request) -> tuple[bytes, dict[str, str]]:
        size = request.headers.get("content-length")
        if size and size.isdigit() and int(size) > api.settings.max_upload_bytes:
            raise ApiError(413, f"the upload is larger than {api.settings.max_upload_bytes // 2**20} MB", param="file")
        try:
            form = await request.form(max_part_size=api.settings.max_upload_bytes)
        except Exception as exc:
            raise ApiError(400, f"expected a multipart form with a 'file' field: {exc}") from exc
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise ApiError(400, "the form has no 'file' upload with the audio", param="file")
        data = await upload.read()
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        return data, fields

    @router.get("/v1/models")
    async def models(request: Request):
        try:
            api.authorize(request.headers.get("authorization"))
            return JSONResponse(api.models())
        except Exception as exc:
            return fail(exc)

    @router.get("/v1/audio/voices")
    @router.get("/v1/voices")
    async def voices(request: Request):
        try:
            api.authorize(request.headers.get("authorization"))
            return JSONResponse(await run_in_threadpool(api.voices))
        except Exception as exc:
            return fail(exc)

    @router.post("/v1/audio/speech")
    async def speech(request: Request):
        try:
            api.authorize(request.headers.get("authorization"))
            body = await read_json(request)
            content_type, payload, headers = await run_in_threadpool(api.speech, body)
        except Exception as exc:
            return fail(exc)
        if isinstance(payload, bytes):
            return Response(payload, media_type=content_type, headers=headers)
        return StreamingResponse(payload, media_type=content_type, headers=headers)

    @router.post("/v1/audio/transcriptions")
    async def transcriptions(request: Request):
        try:
            api.authorize(request.headers.get("authorization"))
            data, fields = await read_form(request)
            kind, payload = await run_in_threadpool(api.transcription, data, fields.get("model"), fields.get("response_format"))
        except Exception as exc:
            return fail(exc)
        return PlainTextResponse(payload) if kind == "text" else JSONResponse(payload)

    @router.post("/v1/audio/conversions")
    async def conversions(request: Request):
        try:
            api.authorize(request.headers.get("authorization"))
            data, fields = await read_form(request)
            seed = fields.get("seed")
            try:
                seed = int(seed) if seed not in (None, "") else None
            except ValueError as exc:
                raise ApiError(400, "seed must be an integer", param="seed") from exc
            content_type, payload, headers = await run_in_threadpool(api.conversion, data, fields.get("voice"), fields.get("response_format"),
                                                                     fields.get("model") or "speechgpt-gen", seed)
        except Exception as exc:
            return fail(exc)
        return Response(payload, media_type=content_type, headers=headers)

    return router
