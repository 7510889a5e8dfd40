"""UI handlers in-process on the real tiny Engine: hands-free microphone turns, wiring of the
model concurrency group, voice picking."""

import gradio as gr
import numpy as np
import pytest
import soundfile as sf

from app.ui import MODELS, UI, UPLOAD, build_demo
from tests.app_helpers import tiny_engine
from tests.audio_helpers import voiced


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    return UI(tiny_engine(), out_dir=tmp_path_factory.mktemp("out"), live_audio=True)


def browser_chunks(audio16: np.ndarray, seconds: float = 0.5):
    """What a browser streams: 48 kHz int16 chunks every ``seconds``."""
    x48 = np.interp(np.arange(0, audio16.size, 1 / 3), np.arange(audio16.size), audio16)
    pcm = (np.clip(x48, -1, 1) * 32767).astype(np.int16)
    step = int(48000 * seconds)
    return [(48000, pcm[i : i + step]) for i in range(0, pcm.size, step)]


def test_microphone_stream_makes_one_turn_per_utterance(ui):
    rng = np.random.default_rng(0)
    audio = np.concatenate([np.zeros(8000), voiced(1.0, seed=1), np.zeros(20000), voiced(0.7, f0=210, seed=2), np.zeros(4000)])
    audio = (audio + 0.003 * rng.standard_normal(audio.size)).astype(np.float32)
    segmenter, heard, statuses = None, [], []
    for chunk in browser_chunks(audio):
        segmenter, value, status = ui.mic_stream(chunk, segmenter)
        statuses.append(status)
        if isinstance(value, tuple):
            heard.append(value)
    assert len(heard) == 1 and heard[0][0] == 16000 and 0.9 * 16000 < heard[0][1].size < 1.8 * 16000
    assert segmenter.active and any("hearing" in s for s in statuses)
    # stopping the recording sends the second utterance, still in progress
    segmenter, value, status = ui.mic_stopped(segmenter)
    assert isinstance(value, tuple) and 0.6 * 16000 < value[1].size < 1.4 * 16000 and not segmenter.active
    # the heard utterance becomes a chat turn: transcript bubble, reply text, reply audio + file
    outputs = list(ui.chat_heard(heard[0], "flite-slt", None, [], None, steps=2, seed=0))
    history, _, audio_path, file_path, latency, conversation = outputs[-1]
    live = [o[1] for o in outputs if o[1] is not None]  # audio chunks streamed to the live player as they come
    assert live and all(sr == 16000 and chunk.dtype == np.int16 for sr, chunk in live)
    assert abs(sum(c.size for _, c in live) - sf.info(audio_path).frames) < 0.1 * sf.info(audio_path).frames
    # without ffmpeg (no live player) the same turn sends only the whole reply
    quiet = UI(ui.engine, out_dir=ui.out_dir, live_audio=False)
    outputs = list(quiet.chat_heard(heard[0], "flite-slt", None, [], None, steps=2, seed=0))
    assert all(o[1] is None for o in outputs) and outputs[-1][2]
    assert [m["role"] for m in history] == ["user", "assistant"] and history[0]["content"].startswith("(spoken)")
    assert audio_path and audio_path == file_path and "RTF" in latency and len(conversation) > 0


def test_voice_picking_and_options(ui):
    assert ui.pick_voice("flite-slt", (16000, np.zeros(10))) == "flite-slt"
    clip = (16000, voiced(1.0))
    assert ui.pick_voice(UPLOAD, clip) is clip
    with pytest.raises(gr.Error, match="voice clip"):
        ui.pick_voice(UPLOAD, None)
    o = ui.options(8, "explicit", 1.5, "soundstorm", 0.7, 0.9, -1)
    assert (o.steps, o.chain, o.guidance_scale, o.perceptual, o.temperature, o.top_p, o.seed) == (8, "explicit", 1.5, "soundstorm", 0.7, 0.9, None)
    assert ui.options(seed=42).seed == 42 and ui.options().steps is None


def test_tts_streams_live_pieces_then_the_whole_speech(ui):
    outputs = list(ui.tts("It is 3:30 pm. The price is $5! Is that right? Yes, it is.", "flite-slt", steps=2, seed=0))
    live = [o[0] for o in outputs[:-1]]
    assert len(live) >= 2 and all(rate == 16000 and pcm.dtype == np.int16 and pcm.size for rate, pcm in live)
    assert all(o[1] is None for o in outputs[:-1])  # the whole file comes last
    final_live, path, download, info = outputs[-1]
    assert final_live is None and path == download and "RTF" in info and "five dollars" in info
    whole, sr = sf.read(path, dtype="int16")
    assert sr == 16000 and abs(whole.size - sum(pcm.size for _, pcm in live)) <= 1  # the pieces are the whole


def test_engine_errors_become_readable_messages(ui):
    with pytest.raises(gr.Error, match="no text|There is no text"):
        list(ui.tts(" ", "flite-slt"))
    with pytest.raises(gr.Error, match="silent"):
        ui.convert((16000, np.zeros(16000, np.float32)), "flite-slt", steps=2)
    history = list(ui.chat_audio((16000, np.zeros(16000, np.float32)), "flite-slt", None, [], None))[-1][0]
    assert history[-1]["content"].startswith("Error:") and "silent" in history[-1]["content"]


def test_model_events_share_one_concurrency_group(ui):
    demo = build_demo(ui.engine, concurrency=3)
    by_name = {fn.api_name: fn for fn in demo.fns.values() if fn.api_name}
    for name in ["tts", "convert", "chat_text", "chat_audio", "add_voice"]:
        assert by_name[name].concurrency_id == MODELS and by_name[name].concurrency_limit == 3, name
    streams = [fn for fn in demo.fns.values() if fn.name == "mic_stream"]
    assert len(streams) == 1 and streams[0].concurrency_limit is None  # listening never waits behind a model


def test_status_tab_reports_model_loading_apart(ui):
    list(ui.tts("Hello.", "flite-slt", steps=2, seed=0))  # the models are loaded by now
    text = ui.status()
    assert "**Models loaded in** codec" in text and "not counted in any request's timings" in text
    assert "perceptual model flow" in ui.header_status()


def test_user_errors_are_not_logged_as_tracebacks(ui):
    with pytest.raises(gr.Error) as err:
        list(ui.tts(" ", "flite-slt"))
    assert err.value.print_exception is False  # Gradio prints a traceback only when this is True
    with pytest.raises(gr.Error) as err:
        ui.convert(None, "flite-slt")
    assert err.value.print_exception is False


def test_voices_tab_overwrite_clear_confirm_and_preview(ui, tmp_path):
    from app.ui import clip_hint, flow_visibility

    clip = (16000, voiced(2.0, seed=7))
    out = ui.add_voice("Tab-Test", clip, "first", False, "flite-slt", "flite-slt", UPLOAD)
    library, *pickers, name, new_clip, desc, overwrite = out
    assert library["value"] == "Tab-Test" and (name, new_clip, desc, overwrite) == ("", None, "", False)  # the form is cleared
    with pytest.raises(gr.Error, match="Replace a voice of the same name"):  # the message names the choice the form has
        ui.add_voice("Tab-Test", clip, "second", False)
    ui.add_voice("Tab-Test", clip, "second", True)
    added = ui.engine.voices.get("Tab-Test")
    assert added.description == "second"
    *_, cleared = ui.rename_voice("Tab-Test", "Tab-Renamed", "flite-slt")
    assert cleared == ""
    row, question = ui.ask_delete("Tab-Renamed")  # delete asks first; nothing is gone yet
    assert row["visible"] is True and "Tab-Renamed" in question and ui.engine.voices.exists("Tab-Renamed")
    with pytest.raises(gr.Error, match="bundled"):
        ui.ask_delete("flite-slt")
    *_, row = ui.delete_voice("Tab-Renamed")
    assert row["visible"] is False and not ui.engine.voices.exists("Tab-Renamed")
    # page load: the library's selected voice is previewed
    library, *pickers, preview, info, header = ui.on_load("flite-slt", "flite-slt", "flite-slt")
    sr, wav = preview
    assert library["value"] in info and sr == 16000 and wav.size > 0
    # what the labels promise is what the library stores on this profile
    seconds = ui.engine.config.perceptual.prompt_seconds
    assert clip_hint(ui.engine.config).startswith(f"{seconds:g} s")
    assert seconds - 0.05 <= added.duration <= seconds + 0.05  # a 2 s clip is stored as one prompt length
    assert [u["visible"] for u in flow_visibility("soundstorm")] == [False, False]
    assert [u["visible"] for u in flow_visibility("flow")] == [True, True]
