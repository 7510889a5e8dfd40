"""Gradio Blocks web UI: Chat (microphone with VAD, typed, uploaded), Text to speech, Voice
conversion, Voices, and a status area. Every handler turns engine errors into readable messages;
per-browser state (conversation, VAD) lives in gr.State, never in globals."""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

import gradio as gr
import numpy as np

from app.vad import VadSegmenter
from engine.audio import save_wav
from engine.errors import EngineError
from engine.pipeline import AudioChunk, ChatDone, Engine, GenerationOptions, TextDelta, Transcript

log = logging.getLogger(__name__)

UPLOAD = "(use the clip below)"
TINY_NOTE = "**Tiny profile**: the models are small and random — the app works end to end, but the voices are noise. Use the default profile for real speech."


def _out_file(wav: np.ndarray, sr: int, prefix: str) -> str:
    path = Path(tempfile.mkdtemp(prefix="speechgpt-gen-")) / f"{prefix}-{time.strftime('%H%M%S')}.wav"
    save_wav(path, wav, sr)
    return str(path)


class UI:
    """Handlers bound to one shared Engine."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.cfg = engine.config

    # ------------------------------------------------------------------ helpers
    def voice_choices(self) -> list[str]:
        try:
            return self.engine.voices.names()
        except Exception as exc:  # a broken library folder must not take the UI down
            log.warning("voice library: %s", exc)
            return []

    def _voice(self, name: str | None, clip) -> object:
        if clip is not None and (name in (None, "", UPLOAD)):
            return clip
        if name and name != UPLOAD:
            return name
        if clip is not None:
            return clip
        raise gr.Error("Choose a voice from the library, or upload / record a voice clip.")

    def _options(self, steps, chain, guidance, perceptual, temperature, top_p, seed) -> GenerationOptions:
        return GenerationOptions(
            steps=int(steps) if steps else None, chain=chain or None, guidance_scale=float(guidance) if guidance is not None else None,
            perceptual=perceptual or None, temperature=float(temperature) if temperature is not None else None,
            top_p=float(top_p) if top_p is not None else None, seed=int(seed) if seed not in (None, "", -1) else None,
        )

    def status_markdown(self) -> str:
        rows = ["| model | loaded | available | device | precision | details |", "|---|---|---|---|---|---|"]
        for s in self.engine.status():
            rows.append(f"| {s.role} ({s.name}) | {'yes' if s.loaded else 'no'} | {'yes' if s.available else '**no**'} | {s.device} | {s.dtype} | {s.message} |")
        note = f"\n\n{TINY_NOTE}" if self.cfg.profile == "tiny" else ""
        return "\n".join(rows) + note

    # ------------------------------------------------------------------ tasks
    def tts(self, text, voice, clip, steps, chain, guidance, perceptual, temperature, top_p, seed, progress=gr.Progress()):
        try:
            r = self.engine.tts(text or "", self._voice(voice, clip), options=self._options(steps, chain, guidance, perceptual, temperature, top_p, seed),
                                progress=lambda f, m: progress(f, desc=m))
        except EngineError as exc:
            raise gr.Error(str(exc)) from exc
        for w in r.warnings:
            gr.Warning(w)
        return (r.sample_rate, r.wav), _out_file(r.wav, r.sample_rate, "tts"), f"Normalised text: {r.text}\n\n{r.metrics.summary()}"

    def convert(self, source, voice, clip, steps, chain, guidance, perceptual, seed, progress=gr.Progress()):
        if source is None:
            raise gr.Error("Upload or record the speech to convert first.")
        try:
            r = self.engine.convert(source, self._voice(voice, clip), options=self._options(steps, chain, guidance, perceptual, None, None, seed),
                                    progress=lambda f, m: progress(f, desc=m))
        except EngineError as exc:
            raise gr.Error(str(exc)) from exc
        return (r.sample_rate, r.wav), _out_file(r.wav, r.sample_rate, "converted"), r.metrics.summary()

    def chat_turn(self, user, voice, clip, history, conversation, temperature, top_p, seed):
        """One turn (typed text or audio); yields (chatbot, reply audio, file, latency, conversation)."""
        history = list(history or [])
        if conversation is None:
            conversation = self.engine.new_conversation()
        if isinstance(user, str):
            if not user.strip():
                raise gr.Error("Type a message, or talk / upload a clip.")
            history.append({"role": "user", "content": user})
        else:
            history.append({"role": "user", "content": "🎤 (speech)"})
        history.append({"role": "assistant", "content": "…"})
        yield history, None, None, "thinking…", conversation
        reply, transcript = "", None
        try:
            options = self._options(None, None, None, None, temperature, top_p, seed)
            for event in self.engine.chat(user, self._voice(voice, clip), conversation, options=options):
                if isinstance(event, Transcript) and not isinstance(user, str):
                    transcript = event.text
                    history[-2] = {"role": "user", "content": f"🎤 {transcript}"}
                elif isinstance(event, TextDelta):
                    reply += event.text
                    history[-1] = {"role": "assistant", "content": reply}
                    yield history, None, None, "speaking…", conversation
                elif isinstance(event, AudioChunk):
                    continue
                elif isinstance(event, ChatDone):
                    history[-1] = {"role": "assistant", "content": event.text or "(no text)"}
                    for w in event.warnings:
                        gr.Warning(w)
                    audio = (event.sample_rate, event.wav) if event.wav.size else None
                    path = _out_file(event.wav, event.sample_rate, "reply") if event.wav.size else None
                    yield history, audio, path, event.metrics.summary(), conversation
        except EngineError as exc:
            history[-1] = {"role": "assistant", "content": f"⚠️ {exc}"}
            yield history, None, None, "error", conversation

    def chat_text(self, message, voice, clip, history, conversation, temperature, top_p, seed):
        yield from self.chat_turn(message, voice, clip, history, conversation, temperature, top_p, seed)

    def chat_clip(self, audio, voice, clip, history, conversation, temperature, top_p, seed):
        if audio is None:
            raise gr.Error("Record or upload a question first.")
        yield from self.chat_turn(audio, voice, clip, history, conversation, temperature, top_p, seed)

    def mic_stream(self, chunk, segmenter, pending):
        """Streaming microphone: feed the VAD; a finished utterance goes to ``pending``."""
        if segmenter is None:
            srv = self.cfg.server
            segmenter = VadSegmenter(aggressiveness=srv.vad_aggressiveness, pause_ms=srv.vad_pause_ms)
        if chunk is None:
            return segmenter, pending, "listening…"
        sr, data = chunk
        done = segmenter.feed(np.asarray(data), int(sr))
        if done:
            return segmenter, (16000, done[-1].audio), f"heard {done[-1].audio.size / 16000:.1f} s"
        return segmenter, pending, "speech…" if segmenter.active else "listening…"

    def chat_pending(self, pending, voice, clip, history, conversation, temperature, top_p, seed):
        if pending is None:
            yield history, None, None, gr.skip(), conversation, None
            return
        for out in self.chat_turn(pending, voice, clip, history, conversation, temperature, top_p, seed):
            yield (*out, None)

    # ------------------------------------------------------------------ voices tab
    def add_voice(self, name, clip, description):
        if clip is None:
            raise gr.Error("Upload or record a clip of the voice (3 s or more of speech).")
        try:
            v = self.engine.voices.add(name, clip, codec=self.engine.codec, description=description or "")
        except EngineError as exc:
            raise gr.Error(str(exc)) from exc
        gr.Info(f"Added voice {v.name}")
        return self._voice_updates(v.name)

    def rename_voice(self, old, new):
        try:
            v = self.engine.voices.rename(old, new)
        except EngineError as exc:
            raise gr.Error(str(exc)) from exc
        return self._voice_updates(v.name)

    def delete_voice(self, name):
        try:
            self.engine.voices.delete(name)
        except EngineError as exc:
            raise gr.Error(str(exc)) from exc
        return self._voice_updates(None)

    def preview_voice(self, name):
        if not name:
            return None, ""
        try:
            v = self.engine.voices.get(name)
            sr, wav = self.engine.voices.preview(name)
        except EngineError as exc:
            raise gr.Error(str(exc)) from exc
        info = f"**{v.name}** — {v.duration:.1f} s{' (bundled)' if v.bundled else ''}. {v.description} {('Licence: ' + v.licence) if v.licence else ''}"
        return (sr, wav), info

    def _voice_updates(self, selected):
        names = self.voice_choices()
        pick = [UPLOAD] + names
        return (gr.update(choices=names, value=selected), gr.update(choices=pick), gr.update(choices=pick), gr.update(choices=pick))


def knobs(cfg, with_llm: bool = True):
    with gr.Accordion("Settings", open=False):
        with gr.Row():
            steps = gr.Slider(1, 64, value=cfg.perceptual.flow.steps, step=1, label="ODE steps / MaskGIT iterations")
            chain = gr.Radio(["implicit", "explicit"], value=cfg.perceptual.flow.chain, label="Flow chain")
            perceptual = gr.Radio(["flow", "soundstorm"], value=cfg.perceptual.kind, label="Perceptual model")
        with gr.Row():
            guidance = gr.Slider(0, 5, value=cfg.perceptual.flow.guidance_scale, step=0.1, label="Voice guidance (flow)")
            temperature = gr.Slider(0, 1.5, value=cfg.semantic.sampling.temperature, step=0.05, label="LLM temperature", visible=with_llm)
            top_p = gr.Slider(0.1, 1, value=cfg.semantic.sampling.top_p, step=0.05, label="LLM top-p", visible=with_llm)
            seed = gr.Number(value=-1, precision=0, label="Seed (-1 = random)")
    return steps, chain, guidance, perceptual, temperature, top_p, seed


def build_demo(engine: Engine) -> gr.Blocks:
    ui = UI(engine)
    cfg = engine.config
    names = ui.voice_choices()
    default_voice = names[0] if names else UPLOAD
    with gr.Blocks(title="SpeechGPT-Gen assistant") as demo:
        gr.Markdown("# SpeechGPT-Gen assistant\nTalk, type, or convert speech — in any voice from a 3-second sample.")
        if cfg.profile == "tiny":
            gr.Markdown(f"> {TINY_NOTE}")
        with gr.Tab("Chat", id="chat"):
            with gr.Row():
                with gr.Column(scale=3):
                    chatbot = gr.Chatbot(label="Conversation", height=380)
                    with gr.Row():
                        message = gr.Textbox(placeholder="Type a message and press Enter", show_label=False, scale=4)
                        send = gr.Button("Send", variant="primary", scale=1)
                    with gr.Row():
                        mic = gr.Audio(sources=["microphone"], streaming=True, type="numpy", label="Talk hands-free (ends after a pause)")
                        question = gr.Audio(sources=["upload", "microphone"], type="numpy", label="…or send a clip")
                    ask = gr.Button("Send clip")
                with gr.Column(scale=2):
                    chat_voice = gr.Dropdown([UPLOAD] + names, value=default_voice, label="Reply voice")
                    chat_clip = gr.Audio(sources=["upload", "microphone"], type="numpy", label="Voice clip (when not from the library)")
                    reply_audio = gr.Audio(label="Reply", autoplay=True, interactive=False)
                    reply_file = gr.File(label="Download reply")
                    latency = gr.Markdown()
                    vad_state = gr.Markdown("listening…")
                    clear = gr.Button("Clear conversation")
            _, _, _, _, c_temp, c_top_p, c_seed = knobs(cfg)
            conversation = gr.State(None)
            segmenter = gr.State(None)
            pending = gr.State(None)
            chat_inputs = [chat_voice, chat_clip, chatbot, conversation, c_temp, c_top_p, c_seed]
            chat_outputs = [chatbot, reply_audio, reply_file, latency, conversation]
            message.submit(ui.chat_text, [message] + chat_inputs, chat_outputs, api_name="chat_text").then(lambda: "", None, message)
            send.click(ui.chat_text, [message] + chat_inputs, chat_outputs, api_name=False).then(lambda: "", None, message)
            ask.click(ui.chat_clip, [question] + chat_inputs, chat_outputs, api_name="chat_audio")
            mic.stream(ui.mic_stream, [mic, segmenter, pending], [segmenter, pending, vad_state], stream_every=0.5, api_name=False)
            pending.change(ui.chat_pending, [pending] + chat_inputs, chat_outputs + [pending], api_name=False)
            clear.click(lambda: ([], None, None, None, ""), None, [chatbot, conversation, reply_audio, reply_file, latency], api_name=False)
        with gr.Tab("Text to speech", id="tts"):
            with gr.Row():
                with gr.Column():
                    text = gr.Textbox(lines=5, label="Text", value="Hello! This is a zero-shot voice made from a three second sample.")
                    tts_voice = gr.Dropdown([UPLOAD] + names, value=default_voice, label="Voice")
                    tts_clip = gr.Audio(sources=["upload", "microphone"], type="numpy", label="Voice clip (when not from the library)")
                    t_knobs = knobs(cfg)
                    speak = gr.Button("Generate", variant="primary")
                with gr.Column():
                    tts_audio = gr.Audio(label="Speech", interactive=False)
                    tts_file = gr.File(label="Download")
                    tts_info = gr.Markdown()
            speak.click(ui.tts, [text, tts_voice, tts_clip, *t_knobs], [tts_audio, tts_file, tts_info], api_name="tts")
        with gr.Tab("Voice conversion", id="vc"):
            with gr.Row():
                with gr.Column():
                    source = gr.Audio(sources=["upload", "microphone"], type="numpy", label="Speech to convert")
                    vc_voice = gr.Dropdown([UPLOAD] + names, value=default_voice, label="Target voice")
                    vc_clip = gr.Audio(sources=["upload", "microphone"], type="numpy", label="Target voice clip (when not from the library)")
                    steps, chain, guidance, perceptual, _, _, seed = knobs(cfg, with_llm=False)
                    convert = gr.Button("Convert", variant="primary")
                with gr.Column():
                    vc_audio = gr.Audio(label="Converted", interactive=False)
                    vc_file = gr.File(label="Download")
                    vc_info = gr.Markdown()
            convert.click(ui.convert, [source, vc_voice, vc_clip, steps, chain, guidance, perceptual, seed], [vc_audio, vc_file, vc_info], api_name="convert")
        with gr.Tab("Voices", id="voices"):
            with gr.Row():
                with gr.Column():
                    library = gr.Dropdown(names, value=names[0] if names else None, label="Library")
                    preview = gr.Audio(label="Preview", interactive=False)
                    info = gr.Markdown()
                    with gr.Row():
                        new_name = gr.Textbox(label="Rename to")
                        rename = gr.Button("Rename")
                    delete = gr.Button("Delete", variant="stop")
                with gr.Column():
                    add_name = gr.Textbox(label="New voice name")
                    add_clip = gr.Audio(sources=["upload", "microphone"], type="numpy", label="Clip (3 s or more of one speaker)")
                    add_desc = gr.Textbox(label="Description (optional)")
                    add = gr.Button("Add voice", variant="primary")
            voice_outputs = [library, chat_voice, tts_voice, vc_voice]
            library.change(ui.preview_voice, library, [preview, info], api_name=False)
            add.click(ui.add_voice, [add_name, add_clip, add_desc], voice_outputs, api_name="add_voice")
            rename.click(ui.rename_voice, [library, new_name], voice_outputs, api_name=False)
            delete.click(ui.delete_voice, library, voice_outputs, api_name=False)
        with gr.Tab("Status", id="status"):
            status = gr.Markdown(ui.status_markdown())
            with gr.Row():
                refresh = gr.Button("Refresh")
                load = gr.Button("Load all models now")
            refresh.click(ui.status_markdown, None, status, api_name=False)

            def load_all(progress=gr.Progress()):
                try:
                    engine.load(progress=lambda f, m: progress(f, desc=m))
                except EngineError as exc:
                    raise gr.Error(str(exc)) from exc
                return ui.status_markdown()

            load.click(load_all, None, status, api_name=False)
    return demo
