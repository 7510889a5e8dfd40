"""Gradio Blocks web UI: Chat (hands-free microphone with VAD, typed, uploaded clip), Text to
speech, Voice conversion, Voices, and a status area.

Every handler turns errors into readable messages (``gr.Error``) and the app keeps serving.
Per-browser state (conversation, VAD segmenter, last utterance) lives in ``gr.State``, never in
globals. Events that run the models share one concurrency group (``--concurrency N``); cheap events
(microphone streaming, previews, status) are not queued behind them.

Uploaded audio reaches the handlers as Gradio's stored file (``type="filepath"``, no conversion),
and is read by the engine's loader (soundfile + soxr), so the page accepts exactly what the CLI
accepts, needs no ffmpeg, and refuses in our words without naming any server path. Typed text is
always sent to the engine as text.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import gradio as gr
import numpy as np

from app.status import PROFILE_SWITCH, TINY_NOTE, status_line, status_markdown
from app.vad import VadSegmenter
from engine.audio import SAMPLE_RATE, UploadedFile, save_wav
from engine.errors import EngineError
from engine.pipeline import MAX_CANDIDATES, AudioChunk, ChatDone, Engine, GenerationOptions, TextDelta, Transcript, TtsDone

log = logging.getLogger(__name__)

SPOKEN = "(spoken)"  # marks a user turn that was speech; plain text, so it renders without an emoji font
UPLOAD = "(my clip below)"  # voice dropdown entry: take the voice from the uploaded / recorded clip
MODELS = "models"  # concurrency group of every event that runs a model
PARAGRAPH = "\n\n"  # line break in Markdown (between the "models loaded" line and the timings)
OUTPUT_TTL_S = 3600  # generated files older than this are removed from the output folder
OUT_PREFIX = "speechgpt-gen-ui-"  # <prefix><pid>-<hex>: the output folder of one running app


def user_error(message: str) -> gr.Error:
    """An ordinary user mistake (empty text, missing upload): shown on the page, no traceback in the server console."""
    return gr.Error(message, print_exception=False)


def readable(exc: BaseException) -> gr.Error:
    """The message a user sees for an exception: engine errors verbatim, anything else by its type
    only (its text may hold server paths; it and the traceback go to the server log once, never to
    the page). User errors are not logged."""
    if isinstance(exc, gr.Error):
        return exc
    if isinstance(exc, EngineError):
        return user_error(str(exc))
    log.error("unexpected error in a UI handler", exc_info=exc)
    return user_error(f"Something went wrong ({type(exc).__name__}). Details are in the server log; the app is still running.")


def remove_stale_outputs(base: Path) -> None:
    """Remove output folders of UIs whose process is gone (a crash or kill skipped their cleanup)."""
    from app.stale import remove_dead_folders

    remove_dead_folders(base, OUT_PREFIX)



def pcm16(wav: np.ndarray) -> np.ndarray:
    """float [-1, 1] -> int16 PCM (what the browser player streams; no peak normalisation)."""
    return (np.clip(np.asarray(wav, dtype=np.float32), -1.0, 1.0) * 32767).astype(np.int16)


class UI:
    """Event handlers bound to one shared Engine."""

    def __init__(self, engine: Engine, out_dir: str | Path | None = None, live_audio: bool | None = None):
        """``live_audio``: stream reply chunks to the browser as they are generated (Gradio needs
        the ffmpeg program for that; by default on when ffmpeg is on PATH, else the whole reply
        plays when it is done)."""
        self.engine = engine
        self.live_audio = shutil.which("ffmpeg") is not None if live_audio is None else live_audio
        self.cfg = engine.config
        self.max_upload_bytes = int(self.cfg.server.max_upload_mb * 2**20)
        self.cache_bytes = int(self.cfg.server.output_cache_mb * 2**20)
        if out_dir:
            self.out_dir = Path(out_dir)
            self.out_dir.mkdir(parents=True, exist_ok=True)
        else:  # inside Gradio's cache folder, so Gradio serves our file instead of copying it
            from gradio.utils import get_upload_folder

            base = Path(get_upload_folder())
            base.mkdir(parents=True, exist_ok=True)
            remove_stale_outputs(base)
            self.out_dir = Path(tempfile.mkdtemp(prefix=f"{OUT_PREFIX}{os.getpid()}-", dir=base))

    def close(self) -> None:
        """Remove this UI's generated files (called when the server stops)."""
        shutil.rmtree(self.out_dir, ignore_errors=True)

    # ------------------------------------------------------------------ helpers
    def voice_choices(self) -> list[str]:
        """Library voice names (empty if the library cannot be read)."""
        try:
            return self.engine.voices.names()
        except Exception as exc:  # a broken library folder must not take the UI down
            log.warning("voice library: %s", exc)
            return []

    def default_voice(self) -> str:
        names = self.voice_choices()
        return names[0] if names else UPLOAD

    def out_file(self, wav: np.ndarray, sample_rate: int, prefix: str) -> str:
        """Save generated audio as a 16-bit WAV for playback and download. The folder is bounded:
        files older than an hour go, then the oldest until it is under ``server.output_cache_mb``."""
        now = time.time()
        files = []
        for old in self.out_dir.glob("*.wav"):
            try:
                st = old.stat()
                if now - st.st_mtime > OUTPUT_TTL_S:
                    old.unlink()
                else:
                    files.append((st.st_mtime, st.st_size, old))
            except OSError:
                pass
        budget = self.cache_bytes - 2 * wav.size - 1024  # room for the new file (16-bit)
        total = sum(size for _, size, _ in files)
        for _, size, old in sorted(files):
            if total <= budget:
                break
            old.unlink(missing_ok=True)
            total -= size
        path = self.out_dir / f"{prefix}-{time.strftime('%H%M%S')}-{uuid.uuid4().hex[:6]}.wav"
        save_wav(path, wav, sample_rate)
        return str(path)

    def audio_in(self, value):
        """Audio from a component -> what the engine takes: an uploaded file (Gradio's stored
        path) becomes an ``UploadedFile`` (size-checked, header-checked, never named by its path
        in a message); a (rate, samples) pair (microphone / VAD) passes as it is."""
        if value is None or isinstance(value, tuple):
            return value
        if isinstance(value, dict) and value.get("path"):  # FileData sent as a plain dict
            value = value["path"]
        if isinstance(value, (str, os.PathLike)):
            return UploadedFile(Path(value), self.max_upload_bytes)
        raise user_error("That audio input was not understood; upload or record the clip again.")

    def pick_voice(self, name: str | None, clip) -> object:
        """The voice argument for the engine: a library name, or the uploaded / recorded clip."""
        if name and name != UPLOAD:
            return name
        if clip is None:
            raise user_error(f"Choose a voice from the library, or upload / record a voice clip ({clip_hint(self.cfg)}).")
        return self.audio_in(clip)

    @staticmethod
    def options(steps=None, chain=None, guidance=None, perceptual=None, temperature=None, top_p=None, seed=None,
                candidates=None) -> GenerationOptions:
        """Knob values from the page -> checked GenerationOptions (``None`` / seed -1 = the
        configured default); a non-finite or out-of-range value is refused with gr.Error."""

        def num(name: str, value) -> float | None:
            if value is None or value == "":
                return None
            try:
                x = float(value)
            except (TypeError, ValueError):
                raise user_error(f"{name} must be a number, got {value!r}") from None
            if not math.isfinite(x):
                raise user_error(f"{name} must be a finite number, got {value!r}")
            return x

        s = num("Seed", seed)
        st = num("Steps", steps)
        opts = GenerationOptions(
            steps=int(st) if st else None,
            chain=chain or None,
            guidance_scale=num("Voice guidance", guidance),
            perceptual=perceptual or None,
            temperature=num("Temperature", temperature),
            top_p=num("Top-p", top_p),
            seed=None if s is None or s < 0 else int(s),
            candidates=int(n) if (n := num("Samples per sentence", candidates)) is not None else None,
        )
        try:
            return opts.validated()
        except EngineError as exc:
            raise user_error(str(exc)) from None

    def status(self) -> str:
        try:
            return status_markdown(self.engine.status(), self.cfg.profile, self.cfg.profile_reason)
        except Exception as exc:
            raise readable(exc) from exc

    def header_status(self) -> str:
        try:
            return status_line(self.engine.status())
        except Exception as exc:
            return f"**Status unavailable:** {exc}"

    def _progress(self, progress):
        return lambda fraction, message: progress(fraction, desc=message)

    # ------------------------------------------------------------------ TTS / conversion
    def tts(self, text, voice, clip=None, steps=None, chain=None, guidance=None, perceptual=None, temperature=None, top_p=None,
            seed=-1, candidates=None, progress=gr.Progress()):
        """Text -> (live audio piece, whole audio file, download file, info markdown), yielded as the
        pieces are generated (the first after the first sentence's first units) and then the whole."""
        if not text or not text.strip():
            raise user_error("There is no text to speak: type something first.")
        try:  # text, voice and settings are checked here, before anything runs
            events = self.engine.stream_tts(text, self.pick_voice(voice, clip),
                                            options=self.options(steps, chain, guidance, perceptual, temperature, top_p, seed, candidates),
                                            progress=self._progress(progress))
            for event in events:
                if isinstance(event, AudioChunk):
                    if event.wav.size and self.live_audio:
                        yield (event.sample_rate, pcm16(event.wav)), None, None, "speaking…"
                elif isinstance(event, TtsDone):
                    r = event.result
                    for w in r.warnings:
                        gr.Warning(w)
                    path = self.out_file(r.wav, r.sample_rate, "tts")
                    yield None, path, path, f"**Spoken text:** {r.text}\n\n{r.metrics.summary(PARAGRAPH)}"
        except Exception as exc:
            raise readable(exc) from exc

    def convert(self, source, voice, clip=None, steps=None, chain=None, guidance=None, perceptual=None, seed=-1,
                progress=gr.Progress()):
        """Source speech -> the same words in the target voice."""
        if source is None:
            raise user_error("Upload or record the speech to convert first.")
        source = self.audio_in(source)
        try:
            r = self.engine.convert(source, self.pick_voice(voice, clip), options=self.options(steps, chain, guidance, perceptual, None, None, seed),
                                    progress=self._progress(progress))
        except Exception as exc:
            raise readable(exc) from exc
        path = self.out_file(r.wav, r.sample_rate, "converted")
        return path, path, r.metrics.summary(PARAGRAPH)

    # ------------------------------------------------------------------ chat
    def chat_turn(self, user, voice, clip, history, conversation, *knobs):
        """One turn from typed text or audio. Yields (chatbot, live audio chunk, whole reply audio,
        reply file, latency, conversation) as the transcript, reply text, audio chunks and finally
        the joined reply arrive."""
        history = list(history or [])
        if conversation is None:
            conversation = self.engine.new_conversation()
        spoken = not isinstance(user, str)  # a str is always a typed message; audio arrives as AudioInput
        voice_arg = self.pick_voice(voice, clip)
        try:  # text, length, voice and settings are checked here, before the turn starts
            events = self.engine.chat(user, voice_arg, conversation, options=self.options(*knobs))
        except Exception as exc:
            raise readable(exc) from exc
        history.append({"role": "user", "content": f"{SPOKEN} …" if spoken else user})
        history.append({"role": "assistant", "content": "…"})
        yield history, None, None, None, "thinking…", conversation
        reply = ""
        try:
            for event in events:
                if isinstance(event, Transcript) and spoken:
                    history[-2] = {"role": "user", "content": f"{SPOKEN} {event.text}" if event.text else f"{SPOKEN} (no words recognised)"}
                    yield history, None, None, None, "replying…", conversation
                elif isinstance(event, TextDelta):
                    reply += event.text
                    history[-1] = {"role": "assistant", "content": reply}
                    yield history, None, None, None, "replying…", conversation
                elif isinstance(event, AudioChunk):  # played as it comes; the joined reply follows with ChatDone
                    if event.wav.size and self.live_audio:
                        yield history, (event.sample_rate, pcm16(event.wav)), None, None, "replying…", conversation
                elif isinstance(event, ChatDone):
                    history[-1] = {"role": "assistant", "content": event.text or "(no text)"}
                    for w in event.warnings:
                        gr.Warning(w)
                    path = self.out_file(event.wav, event.sample_rate, "reply") if event.wav.size else None
                    yield history, None, path, path, event.metrics.summary(PARAGRAPH), conversation
        except Exception as exc:
            err = readable(exc)
            history[-1] = {"role": "assistant", "content": f"Error: {err.message}"}
            yield history, None, None, None, "error", conversation

    def chat_text(self, message, voice, clip=None, history=None, conversation=None, steps=None, chain=None, guidance=None, perceptual=None,
                  temperature=None, top_p=None, seed=-1):
        if not isinstance(message, str) or not message.strip():
            raise user_error("Type a message first (or talk, or send a clip).")
        for out in self.chat_turn(message.strip(), voice, clip, history, conversation,
                                  steps, chain, guidance, perceptual, temperature, top_p, seed):
            yield (*out, "")  # the last output clears the message box

    def chat_audio(self, audio, voice, clip=None, history=None, conversation=None, steps=None, chain=None, guidance=None, perceptual=None,
                  temperature=None, top_p=None, seed=-1):
        if audio is None:
            raise user_error("Record or upload a question first.")
        yield from self.chat_turn(self.audio_in(audio), voice, clip, history, conversation, steps, chain, guidance, perceptual, temperature, top_p, seed)

    def new_segmenter(self) -> VadSegmenter:
        return VadSegmenter.from_config(self.cfg.server)

    def mic_stream(self, chunk, segmenter):
        """Streaming microphone chunk -> VAD. A finished utterance becomes the ``heard`` state
        (whose change runs a chat turn); otherwise ``heard`` is left untouched."""
        if segmenter is None:
            segmenter = self.new_segmenter()
        if chunk is None:
            return segmenter, gr.skip(), "listening…"
        try:
            sr, data = chunk
            done = segmenter.feed(np.asarray(data), int(sr))
        except Exception as exc:
            raise readable(exc) from exc
        if done:
            u = done[-1]
            return segmenter, (SAMPLE_RATE, u.audio), f"heard {u.audio.size / SAMPLE_RATE:.1f} s — replying"
        return segmenter, gr.skip(), "hearing speech…" if segmenter.active else "listening…"

    def mic_stopped(self, segmenter):
        """Recording stopped: the utterance in progress (if long enough) is sent too."""
        if segmenter is None:
            return None, gr.skip(), ""
        done = segmenter.flush()
        segmenter.reset()
        if done:
            return segmenter, (SAMPLE_RATE, done[-1].audio), f"heard {done[-1].audio.size / SAMPLE_RATE:.1f} s — replying"
        return segmenter, gr.skip(), "microphone off"

    def chat_heard(self, heard, voice, clip=None, history=None, conversation=None, steps=None, chain=None, guidance=None, perceptual=None,
                  temperature=None, top_p=None, seed=-1):
        if heard is None:
            yield (gr.skip(),) * 6
            return
        yield from self.chat_turn(self.audio_in(heard), voice, clip, history, conversation, steps, chain, guidance, perceptual, temperature, top_p, seed)

    # ------------------------------------------------------------------ voices tab
    def add_voice(self, name, clip, description, overwrite, *current):
        """Add (or, with ``overwrite``, replace) a voice; the form is cleared afterwards.
        Returns (library, 3 pickers, name, clip, description, overwrite)."""
        if not name or not name.strip():
            raise user_error("Give the new voice a name (letters, digits, - and _).")
        if clip is None:
            raise user_error(f"Upload or record a clip of the voice ({clip_hint(self.cfg)}).")
        try:
            v = self.engine.voices.add(name.strip(), self.audio_in(clip), codec=self.engine.codec, description=description or "",
                                       overwrite=bool(overwrite))
        except Exception as exc:
            err = readable(exc)
            if "already exists" in err.message:  # the library's message offers the overwrite this form has
                err = user_error(f"{err.message} (tick \"Replace a voice of the same name\").")
            raise err from exc
        gr.Info(f"{'Replaced' if overwrite else 'Added'} voice {v.name}")
        return (*self.voice_updates(v.name, current), "", None, "", False)

    def rename_voice(self, old, new, *current):
        """Returns (library, 3 pickers, the cleared new-name box)."""
        if not old:
            raise user_error("Choose the voice to rename.")
        try:
            v = self.engine.voices.rename(old, (new or "").strip())
        except Exception as exc:
            raise readable(exc) from exc
        gr.Info(f"Renamed {old} to {v.name}")
        return (*self.voice_updates(v.name, current, renamed=(old, v.name)), "")

    def ask_delete(self, name):
        """First step of a delete: show the confirmation row naming the voice."""
        if not name:
            raise user_error("Choose the voice to delete.")
        try:
            v = self.engine.voices.get(name)
        except Exception as exc:
            raise readable(exc) from exc
        if v.bundled:
            raise user_error(f"{name} is a bundled voice; bundled voices cannot be deleted.")
        return gr.update(visible=True), f"Delete **{name}** for good? This cannot be undone."

    def delete_voice(self, name, *current):
        """Confirmed delete. Returns (library, 3 pickers, the hidden confirmation row)."""
        if not name:
            raise user_error("Choose the voice to delete.")
        try:
            self.engine.voices.delete(name)
        except Exception as exc:
            raise readable(exc) from exc
        gr.Info(f"Deleted {name}")
        return (*self.voice_updates(None, current), gr.update(visible=False))

    def preview_voice(self, name):
        if not name:
            return None, ""
        try:
            v = self.engine.voices.get(name)
            sr, wav = self.engine.voices.preview(name)
        except Exception as exc:
            raise readable(exc) from exc
        licence = getattr(v, "licence", "")
        info = (f"**{v.name}** — {v.duration:.1f} s{' (bundled)' if v.bundled else ''}. {v.description}"
                f"{'  Licence: ' + licence if licence else ''}")
        return (sr, wav), info

    def voice_updates(self, selected: str | None, current=(), renamed: tuple[str, str] | None = None):
        """New choices for the library dropdown and the three voice pickers; a picker whose voice
        was renamed follows it, one whose voice is gone falls back to the first voice."""
        names = self.voice_choices()
        library = gr.update(choices=names, value=selected if selected in names else (names[0] if names else None))
        pickers = []
        for value in list(current) + [None] * (3 - len(current)):
            if renamed and value == renamed[0]:
                value = renamed[1]
            if value != UPLOAD and value not in names:
                value = names[0] if names else UPLOAD
            pickers.append(gr.update(choices=[UPLOAD] + names, value=value))
        return (library, *pickers)

    def current_choices(self, value):
        """The library dropdown's choices as they are now (another session may have changed them)."""
        return gr.update(choices=self.voice_choices(), value=value)

    def current_picker_choices(self, value):
        return gr.update(choices=[UPLOAD] + self.voice_choices(), value=value)

    def on_load(self, *current):
        """Page load: fresh voice lists (the library may have changed from the CLI), the selected
        voice's preview, and the status line. Returns (library, 3 pickers, preview, info, header)."""
        updates = self.voice_updates(None, current)
        selected = updates[0].get("value")
        try:
            preview, info = self.preview_voice(selected)
        except gr.Error as exc:
            preview, info = None, exc.message
        return (*updates, preview, info, self.header_status())


def clip_hint(cfg) -> str:
    """What a voice clip needs, in the words of this profile's prompt length (what the library stores)."""
    return f"{cfg.perceptual.prompt_seconds:g} s or more of one speaker"


def flow_visibility(kind: str):
    """The flow-only settings (chain, guidance) are shown only while the flow model is chosen."""
    return gr.update(visible=kind == "flow"), gr.update(visible=kind == "flow")


def knobs(cfg, with_llm: bool = True, elem_id: str | None = None, samples: bool = False) -> tuple:
    """The generation settings accordion; returns (steps, chain, guidance, perceptual, temperature, top_p, seed),
    and with ``samples`` (text to speech) also the samples-per-sentence slider (shown where the profile
    speaks the best of several samples: the demo codec's phoneme head chooses)."""
    flow = cfg.perceptual.kind == "flow"
    with gr.Accordion("Settings", open=False, elem_id=elem_id):
        with gr.Row():
            perceptual = gr.Radio(["flow", "soundstorm"], value=cfg.perceptual.kind, label="Perceptual model")
            steps = gr.Slider(1, 64, value=cfg.perceptual.flow.steps, step=1, label="Steps",
                              info="ODE steps (flow) or MaskGIT iterations (SoundStorm)")
            chain = gr.Radio(["implicit", "explicit"], value=cfg.perceptual.flow.chain, label="Chain", info="flow model only", visible=flow)
        with gr.Row():
            guidance = gr.Slider(0, 5, value=cfg.perceptual.flow.guidance_scale, step=0.1, label="Voice guidance",
                                 info="flow model only", visible=flow)
            temperature = gr.Slider(0, 1.5, value=cfg.semantic.sampling.temperature, step=0.05, label="LLM temperature", visible=with_llm)
            top_p = gr.Slider(0.1, 1, value=cfg.semantic.sampling.top_p, step=0.05, label="LLM top\u2011p", visible=with_llm)
            seed = gr.Number(value=-1, precision=0, label="Seed", info="-1 = random")
            if samples:
                best_of = gr.Slider(1, MAX_CANDIDATES, value=cfg.semantic.tts_candidates, step=1, label="Samples per sentence",
                                    info="the best one is spoken; fewer for long sentences; 1 = one sample, streamed (starts sooner)",
                                    visible=cfg.semantic.tts_candidates > 1)
        perceptual.change(flow_visibility, perceptual, [chain, guidance], api_name=False, queue=False, show_progress="hidden")
    return (steps, chain, guidance, perceptual, temperature, top_p, seed, *((best_of,) if samples else ()))


def voice_picker(names: list[str], default: str, label: str, hint: str = "3 s or more"):
    """Library dropdown + upload/record clip; a new clip selects itself in the dropdown."""
    # allow_custom_value: a voice added in another browser session after this page loaded is still
    # accepted (the engine checks every name); opening the list fetches the current choices
    dropdown = gr.Dropdown([UPLOAD] + names, value=default, label=label, allow_custom_value=True)
    with gr.Accordion(f"…or use your own voice clip (upload or record {hint})", open=not names):
        clip = gr.Audio(sources=["upload", "microphone"], type="filepath", format=None, label="Voice clip")
    clip.change(lambda c: gr.update(value=UPLOAD) if c is not None else gr.skip(), clip, dropdown, api_name=False,
                concurrency_limit=None, queue=False)
    return dropdown, clip


# labels wrap between words, never inside one (narrow columns used to break "Perceptual" mid-word);
# Gradio 6 takes page CSS in launch(): app/server.py passes it
CSS = "label, label span, .block-info, [data-testid='block-info'] { word-break: normal !important; overflow-wrap: normal !important; hyphens: none; }"


def clear_result():
    """Empty result components, set before a request so its progress never shows over an old result."""
    return None, None, ""


def build_demo(engine: Engine, concurrency: int = 1, live_audio: bool | None = None) -> gr.Blocks:
    """The whole app. ``concurrency``: how many model requests run at once (all users together);
    ``live_audio``: see ``UI``."""
    ui = UI(engine, live_audio=live_audio)
    cfg = engine.config
    names = ui.voice_choices()
    default_voice = names[0] if names else UPLOAD
    heavy = {"concurrency_id": MODELS, "concurrency_limit": max(1, int(concurrency))}
    light = {"concurrency_limit": None}
    hint = clip_hint(cfg)
    with gr.Blocks(title="SpeechGPT-Gen assistant", analytics_enabled=False, delete_cache=(OUTPUT_TTL_S, OUTPUT_TTL_S)) as demo:
        gr.Markdown(f"# SpeechGPT-Gen assistant\nTalk, type, or convert speech — in any voice from a {cfg.perceptual.prompt_seconds:g}-second sample.")
        header = gr.Markdown(ui.header_status(), elem_id="header-status")
        # after a request the header names the models actually loaded (e.g. SoundStorm chosen in Settings)
        refresh_header = (ui.header_status, None, header)
        quiet = {"api_name": False, "queue": False, "show_progress": "hidden"}
        if cfg.profile == "tiny":
            gr.Markdown(f"> {TINY_NOTE}")
        elif cfg.profile == "demo":  # which models serve, and how to switch (also in the Status tab)
            gr.Markdown(f"> {PROFILE_SWITCH['demo']}")
        with gr.Tab("Chat", id="chat"):
            with gr.Row():
                with gr.Column(scale=3):
                    chatbot = gr.Chatbot(label="Conversation", height=380, placeholder="Talk, type, or send a clip.", elem_id="chatbot")
                    with gr.Row():
                        message = gr.Textbox(placeholder="Type a message and press Enter", show_label=False, scale=4)
                        send = gr.Button("Send", variant="primary", scale=1)
                    with gr.Row():
                        mic = gr.Audio(sources=["microphone"], streaming=True, type="numpy",
                                       label="Talk hands-free (a pause ends your turn)", elem_id="handsfree")
                        question = gr.Audio(sources=["upload", "microphone"], type="filepath", format=None, label="…or send a recorded / uploaded clip")
                    with gr.Row():
                        vad_state = gr.Markdown("microphone off", elem_id="vad-state")
                        ask = gr.Button("Send clip")
                with gr.Column(scale=2):
                    chat_voice, chat_clip = voice_picker(names, default_voice, "Reply voice", hint)
                    if ui.live_audio:
                        live = gr.Audio(label="Reply (plays as it is generated)", streaming=True, autoplay=True, interactive=False,
                                        elem_id="live-reply")
                    else:  # same outputs either way, so the API does not depend on ffmpeg
                        live = gr.Audio(visible=False, interactive=False, elem_id="live-reply")
                    reply_audio = gr.Audio(label="Whole reply" if ui.live_audio else "Reply", autoplay=not ui.live_audio,
                                           interactive=False, elem_id="reply")
                    reply_file = gr.File(label="Download reply")
                    latency = gr.Markdown(elem_id="latency")
                    clear = gr.Button("Clear conversation")
            c_knobs = knobs(cfg, elem_id="chat-settings")
            conversation = gr.State(None)  # engine Conversation, one per browser session
            segmenter = gr.State(None)  # VadSegmenter of this session's microphone
            heard = gr.State(None)  # the last utterance the VAD finished: (16000, float32 array)
            chat_in = [chat_voice, chat_clip, chatbot, conversation, *c_knobs]
            chat_out = [chatbot, live, reply_audio, reply_file, latency, conversation]
            once = {"show_progress_on": [latency]}  # progress shows once, where the turn's result line appears
            message.submit(ui.chat_text, [message, *chat_in], chat_out + [message], api_name="chat_text", **once, **heavy).then(*refresh_header, **quiet)
            send.click(ui.chat_text, [message, *chat_in], chat_out + [message], api_name=False, **once, **heavy).then(*refresh_header, **quiet)
            ask.click(ui.chat_audio, [question, *chat_in], chat_out, api_name="chat_audio", **once, **heavy).then(*refresh_header, **quiet)
            mic.stream(ui.mic_stream, [mic, segmenter], [segmenter, heard, vad_state], stream_every=0.5, api_name=False,
                       show_progress="hidden", **light)
            mic.stop_recording(ui.mic_stopped, segmenter, [segmenter, heard, vad_state], api_name=False, **light)
            heard.change(ui.chat_heard, [heard, *chat_in], chat_out, api_name=False, **once, **heavy).then(*refresh_header, **quiet)
            clear.click(lambda: ([], None, None, None, None, "", None), None, [chatbot, conversation, live, reply_audio, reply_file, latency, segmenter],
                        api_name=False, queue=False)
        with gr.Tab("Text to speech", id="tts"):
            with gr.Row():
                with gr.Column():
                    text = gr.Textbox(lines=5, label="Text", value="Hello! This is a zero-shot voice made from a short sample.")
                    tts_voice, tts_clip = voice_picker(names, default_voice, "Voice", hint)
                    t_knobs = knobs(cfg, elem_id="tts-settings", samples=True)
                    speak = gr.Button("Generate", variant="primary")
                with gr.Column():
                    if ui.live_audio:
                        tts_live = gr.Audio(label="Speech (plays as it is generated)", streaming=True, autoplay=True, interactive=False,
                                            elem_id="tts-live")
                    else:  # same outputs either way, so the API does not depend on ffmpeg
                        tts_live = gr.Audio(visible=False, interactive=False, elem_id="tts-live")
                    tts_audio = gr.Audio(label="Whole speech" if ui.live_audio else "Speech", interactive=False, elem_id="tts-audio")
                    tts_file = gr.File(label="Download")
                    tts_info = gr.Markdown(elem_id="tts-info")
            # the previous result is cleared first, so progress (shown once, on the player) never sits over a stale one
            speak.click(clear_result, None, [tts_audio, tts_file, tts_info], api_name=False, queue=False, show_progress="hidden").then(
                ui.tts, [text, tts_voice, tts_clip, *t_knobs], [tts_live, tts_audio, tts_file, tts_info], api_name="tts",
                show_progress_on=[tts_audio], **heavy).then(*refresh_header, **quiet)
        with gr.Tab("Voice conversion", id="vc"):
            with gr.Row():
                with gr.Column():
                    source = gr.Audio(sources=["upload", "microphone"], type="filepath", format=None, label="Speech to convert")
                    vc_voice, vc_clip = voice_picker(names, default_voice, "Target voice", hint)
                    steps, chain, guidance, perceptual, _, _, seed = knobs(cfg, with_llm=False, elem_id="vc-settings")
                    convert = gr.Button("Convert", variant="primary")
                with gr.Column():
                    vc_audio = gr.Audio(label="Converted", interactive=False, elem_id="vc-audio")
                    vc_file = gr.File(label="Download")
                    vc_info = gr.Markdown()
            convert.click(clear_result, None, [vc_audio, vc_file, vc_info], api_name=False, queue=False, show_progress="hidden").then(
                ui.convert, [source, vc_voice, vc_clip, steps, chain, guidance, perceptual, seed], [vc_audio, vc_file, vc_info],
                api_name="convert", show_progress_on=[vc_audio], **heavy).then(*refresh_header, **quiet)
        with gr.Tab("Voices", id="voices"):
            with gr.Row():
                with gr.Column():
                    library = gr.Dropdown(names, value=names[0] if names else None, label="Library", allow_custom_value=True)
                    preview = gr.Audio(label="Preview", interactive=False, elem_id="voice-preview")  # filled on page load
                    info = gr.Markdown(elem_id="voice-info")
                    with gr.Row():
                        new_name = gr.Textbox(label="Rename to")
                        rename = gr.Button("Rename")
                    delete = gr.Button("Delete", variant="stop")
                    with gr.Group(visible=False) as confirm_row:
                        confirm_text = gr.Markdown()
                        with gr.Row():
                            confirm = gr.Button("Yes, delete it", variant="stop")
                            cancel = gr.Button("Cancel")
                with gr.Column():
                    add_name = gr.Textbox(label="New voice name")
                    add_clip = gr.Audio(sources=["upload", "microphone"], type="filepath", format=None, label=f"Clip ({hint})")
                    add_desc = gr.Textbox(label="Description (optional)")
                    add_overwrite = gr.Checkbox(False, label="Replace a voice of the same name")
                    add = gr.Button("Add voice", variant="primary")
            pickers = [chat_voice, tts_voice, vc_voice]
            voice_out = [library, *pickers]
            library.change(ui.preview_voice, library, [preview, info], api_name=False, show_progress_on=[preview], **light)
            library.focus(ui.current_choices, library, library, api_name=False, queue=False)
            for picker in pickers:
                picker.focus(ui.current_picker_choices, picker, picker, api_name=False, queue=False)
            add.click(ui.add_voice, [add_name, add_clip, add_desc, add_overwrite, *pickers], voice_out + [add_name, add_clip, add_desc, add_overwrite],
                      api_name="add_voice", show_progress_on=[add_clip], **heavy)
            rename.click(ui.rename_voice, [library, new_name, *pickers], voice_out + [new_name], api_name="rename_voice",
                         show_progress_on=[library], **light)
            delete.click(ui.ask_delete, library, [confirm_row, confirm_text], api_name=False, queue=False, show_progress="hidden")
            cancel.click(lambda: gr.update(visible=False), None, confirm_row, api_name=False, queue=False, show_progress="hidden")
            library.change(lambda _: gr.update(visible=False), library, confirm_row, api_name=False, queue=False, show_progress="hidden")
            confirm.click(ui.delete_voice, [library, *pickers], voice_out + [confirm_row], api_name="delete_voice",
                          show_progress_on=[library], **light)
        with gr.Tab("Status", id="status"):
            status = gr.Markdown(ui.status())
            with gr.Row():
                refresh = gr.Button("Refresh")
                load = gr.Button("Load all models now")
            refresh.click(ui.status, None, status, api_name="status", **light).then(ui.header_status, None, header, api_name=False, queue=False)

            def load_all(progress=gr.Progress()):
                try:
                    engine.load(progress=ui._progress(progress))
                except Exception as exc:
                    raise readable(exc) from exc
                return ui.status(), ui.header_status()

            load.click(load_all, None, [status, header], api_name=False, show_progress_on=[status], **heavy)
        demo.load(ui.on_load, pickers, [library, *pickers, preview, info, header], api_name=False, show_progress="hidden", **light)
    return demo
