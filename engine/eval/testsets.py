"""Evaluation manifests and builders for the paper's test protocols (section 4.2).

A manifest is a JSONL file, one ``EvalItem`` per line. Paths are relative to the manifest's
folder (or absolute)::

    {"id": "1089-134686-0001", "prompt": "prompts/1089-134686-0001.wav",
     "text": "Stuff it into you his belly counselled him", "reference": "/data/.../1089-134686-0001.flac"}
    {"id": "p226_010-p225", "prompt": "prompts/p226_010-p225.wav", "source": "/data/.../p226_010_mic1.flac",
     "text": "transcript of the source"}

* ``tts``: ``prompt`` (voice, cropped to 3 s) + ``text`` (what to say); ``reference`` (the real
  recording of ``text``, optional) gives a ground-truth row in the report.
* ``vc``: ``prompt`` + ``source`` (speech to convert); ``text`` (the source's transcript) is the
  WER reference. Without ``text`` the source audio's own ASR transcript is used.

Builders, from a local copy of the corpus:

* LibriSpeech test-clean (zero-shot TTS, Table 1): 40 speakers; per speaker a random 3 s crop of
  one utterance is the prompt and the transcript of *another* 4-10 s utterance is the text
  (its ALL-CAPS turned into sentence case, as the LLM reads text; WER ignores case anyway).
* VCTK (zero-shot VC, Table 1 and section 5): per speaker a random 3 s crop of one utterance is
  the prompt and a 4-10 s utterance is the source. The source is taken from a *different*
  speaker (otherwise "conversion" would only copy the source's own voice); ``--task tts`` builds
  the TTS variant of section 5.1 instead.
* demo corpus (``python -m engine demo corpus``; zero-shot VC on voices and sentences no demo model
  was trained on, issue "Demo voice, part 2"): the source is a held-out sentence read by one held-out
  voice, the prompt a 3 s crop of another held-out voice (a different speaker) reading another sentence.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Iterable

from engine.audio import SAMPLE_RATE, load_audio, save_wav
from engine.errors import EngineError

PROMPT_SECONDS = 3.0
MIN_TARGET_SECONDS = 4.0
MAX_TARGET_SECONDS = 10.0


@dataclass
class EvalItem:
    id: str
    prompt: str  # voice prompt audio
    text: str | None = None  # TTS input / reference transcript
    source: str | None = None  # VC source audio
    reference: str | None = None  # ground-truth recording of ``text`` (TTS)
    speaker: str | None = None  # prompt speaker
    source_speaker: str | None = None


def read_manifest(path: str | Path, task: str | None = None) -> list[EvalItem]:
    """Read a JSONL manifest; relative paths become absolute. Checks what ``task`` needs."""
    path = Path(path)
    if not path.is_file():
        raise EngineError(f"manifest {path} not found; build one with `python -m engine eval build-testset`")
    base = path.parent
    names = {f.name for f in fields(EvalItem)}
    items: list[EvalItem] = []
    seen: set[str] = set()
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            raise EngineError(f"{path}:{n}: not JSON ({exc.msg})") from exc
        unknown = set(raw) - names
        if unknown:
            raise EngineError(f"{path}:{n}: unknown field(s) {sorted(unknown)}; allowed: {sorted(names)}")
        if "prompt" not in raw:
            raise EngineError(f"{path}:{n}: every item needs a 'prompt' audio path")
        raw.setdefault("id", f"item{n:05d}")
        raw["id"] = str(raw["id"])
        if raw["id"] in seen:
            raise EngineError(f"{path}:{n}: duplicate id {raw['id']!r}")
        seen.add(raw["id"])
        for key in ("prompt", "source", "reference"):
            if raw.get(key):
                p = Path(raw[key]).expanduser()
                raw[key] = str(p if p.is_absolute() else (base / p).resolve())
                if not Path(raw[key]).is_file():
                    raise EngineError(f"{path}:{n}: {key} file {raw[key]} does not exist")
        item = EvalItem(**raw)
        if task == "tts" and not item.text:
            raise EngineError(f"{path}:{n}: a TTS item needs 'text'")
        if task == "vc" and not item.source:
            raise EngineError(f"{path}:{n}: a VC item needs 'source' audio")
        items.append(item)
    if not items:
        raise EngineError(f"manifest {path} has no items")
    return items


def write_manifest(path: str | Path, items: Iterable[EvalItem]) -> Path:
    """Write items as JSONL; paths inside the manifest's folder are stored relative to it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = path.parent.resolve()
    lines = []
    for item in items:
        row = {k: v for k, v in asdict(item).items() if v is not None}
        for key in ("prompt", "source", "reference"):
            if key in row:
                p = Path(row[key]).resolve()
                row[key] = str(p.relative_to(base)) if p.is_relative_to(base) else str(p)
        lines.append(json.dumps(row, ensure_ascii=False))
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


# ----------------------------------------------------------------------------- corpora
@dataclass
class Utterance:
    id: str
    speaker: str
    path: Path
    text: str
    seconds: float


def _duration(path: Path) -> float:
    import soundfile as sf

    return float(sf.info(str(path)).duration)


def sentence_case(text: str) -> str:
    """LibriSpeech's ALL-CAPS transcripts as a language model reads text: "he said i was" -> "He said I was".
    Text that is not all upper case is returned unchanged."""
    if not text or text != text.upper():
        return text
    words = text.lower().split()
    words = ["I" if w == "i" else "I" + w[1:] if w.startswith("i'") else w for w in words]
    out = " ".join(words)
    return out[:1].upper() + out[1:]


def scan_librispeech(root: str | Path) -> list[Utterance]:
    """``root`` is a LibriSpeech split (``.../LibriSpeech/test-clean``) or any folder above it."""
    from engine.train.extract import folder_transcripts

    root = Path(root)
    texts = folder_transcripts(root)  # the *.trans.txt files, as extraction reads them
    utts = [Utterance(audio.stem, audio.stem.split("-")[0], audio, sentence_case(texts[audio.stem]), _duration(audio))
            for audio in sorted(root.rglob("*")) if audio.suffix in (".flac", ".wav") and audio.stem in texts]
    if not utts:
        raise EngineError(f"no LibriSpeech utterances under {root} (expected SPEAKER/CHAPTER/*.trans.txt with .flac files)")
    return utts


def scan_vctk(root: str | Path) -> list[Utterance]:
    """VCTK 0.92 (``wav48_silence_trimmed/pXXX/pXXX_NNN_mic1.flac``) or 0.80 (``wav48/pXXX/pXXX_NNN.wav``) + ``txt/``."""
    root = Path(root)
    texts = {t.stem: t for t in root.rglob("txt/*/*.txt")}
    utts: list[Utterance] = []
    for audio in sorted(p for p in root.rglob("*") if p.suffix in (".flac", ".wav") and "txt" not in p.parts):
        stem = audio.stem
        if stem.endswith("_mic2"):
            continue  # one microphone is enough
        uid = stem.removesuffix("_mic1")
        if uid not in texts:
            continue
        utts.append(Utterance(uid, uid.split("_")[0], audio, texts[uid].read_text(encoding="utf-8").strip(), _duration(audio)))
    if not utts:
        raise EngineError(f"no VCTK utterances under {root} (expected txt/pXXX/*.txt and wav48*/pXXX/ audio)")
    return utts


def _crop_prompt(utt: Utterance, out: Path, rng: random.Random, seconds: float) -> Path:
    wav = load_audio(utt.path)  # 16 kHz mono
    n = int(seconds * SAMPLE_RATE)
    start = rng.randint(0, max(wav.size - n, 0))
    return save_wav(out, wav[start:start + n], SAMPLE_RATE)


def build_testset(
    corpus: str,
    root: str | Path,
    out_dir: str | Path,
    *,
    task: str | None = None,
    speakers: int | None = None,
    per_speaker: int = 1,
    prompt_seconds: float = PROMPT_SECONDS,
    min_seconds: float = MIN_TARGET_SECONDS,
    max_seconds: float = MAX_TARGET_SECONDS,
    seed: int = 0,
) -> Path:
    """Build ``out_dir/manifest.jsonl`` (+ ``out_dir/prompts/*.wav``) for ``corpus`` in librispeech | vctk.

    ``task`` defaults to the paper's use of the corpus (librispeech -> tts, vctk -> vc);
    ``speakers`` to the paper's count (40 for LibriSpeech, all for VCTK). Deterministic in ``seed``.
    """
    if corpus == "librispeech":
        utts, task, speakers = scan_librispeech(root), task or "tts", speakers if speakers is not None else 40
    elif corpus == "vctk":
        utts, task, speakers = scan_vctk(root), task or "vc", speakers if speakers is not None else 0
    else:
        raise EngineError(f"unknown corpus {corpus!r}; use librispeech or vctk")
    if task not in ("tts", "vc"):
        raise EngineError(f"unknown task {task!r}; use tts or vc")
    rng = random.Random(seed)
    by_speaker: dict[str, list[Utterance]] = {}
    for u in utts:
        by_speaker.setdefault(u.speaker, []).append(u)
    targets = {s: [u for u in us if min_seconds <= u.seconds <= max_seconds] for s, us in by_speaker.items()}
    usable = sorted(s for s, us in by_speaker.items()
                    if targets[s] and any(u.seconds >= prompt_seconds for u in us) and len(us) >= 2)
    if task == "vc" and len(usable) < 2:
        raise EngineError("voice conversion needs at least two usable speakers (a source and a target voice)")
    if not usable:
        raise EngineError(f"no speaker has both a {min_seconds:g}-{max_seconds:g} s utterance and another of at least {prompt_seconds:g} s")
    chosen = sorted(rng.sample(usable, speakers)) if speakers and speakers < len(usable) else usable
    out_dir = Path(out_dir)
    prompt_dir = out_dir / "prompts"
    items: list[EvalItem] = []
    for i, spk in enumerate(chosen):
        # the source/target utterances: from this speaker (TTS) or the next chosen speaker (VC)
        src_spk = chosen[(i + 1) % len(chosen)] if task == "vc" else spk
        pool = list(targets[src_spk])
        rng.shuffle(pool)
        for target in pool[: per_speaker if per_speaker > 0 else len(pool)]:
            prompts = [u for u in by_speaker[spk] if u.id != target.id and u.seconds >= prompt_seconds]
            if not prompts:
                continue
            prompt_utt = rng.choice(prompts)
            item_id = target.id if task == "tts" else f"{target.id}-to-{spk}"
            prompt_path = _crop_prompt(prompt_utt, prompt_dir / f"{item_id}.wav", rng, prompt_seconds)
            if task == "tts":
                items.append(EvalItem(item_id, str(prompt_path), text=target.text, reference=str(target.path), speaker=spk))
            else:
                items.append(EvalItem(item_id, str(prompt_path), text=target.text, source=str(target.path),
                                      speaker=spk, source_speaker=src_spk))
    return write_manifest(out_dir / "manifest.jsonl", items)


DEMO_MIN_SOURCE_SECONDS = 3.0  # demo sentences are 1-12 s; 3-10 s keeps the short voices usable
REFERENCE_MIN_SECONDS = 1.0  # a voice reference: the longest of a few utterances drawn, at least this long


REFERENCES_FILE = "references.jsonl"  # beside a manifest: one reference recording per voice (voice ID scoring)


def read_references(manifest: str | Path) -> dict[str, tuple[str, str]]:
    """``voice -> (speaker, audio path)`` from the ``references.jsonl`` beside ``manifest`` (empty
    when there is none). With references, the evaluation also scores which voice an output sounds
    like: its similarity to every *other* voice's reference (``SIM other``) and whether the prompt's
    voice is the nearest (``voice ID``)."""
    path = Path(manifest).parent / REFERENCES_FILE
    if not path.is_file():
        return {}
    out: dict[str, tuple[str, str]] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            voice, audio = str(raw["voice"]), Path(raw["path"])
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise EngineError(f"{path}:{n}: expected {{\"voice\": ..., \"path\": ..., \"speaker\": ...}} ({exc})") from exc
        audio = audio if audio.is_absolute() else path.parent / audio
        if not audio.is_file():
            raise EngineError(f"{path}:{n}: reference file {audio} does not exist")
        out[voice] = (str(raw.get("speaker") or voice), str(audio.resolve()))
    return out


def build_demo_testset(
    corpus: str | Path,
    out_dir: str | Path,
    *,
    task: str = "vc",
    per_voice: int = 20,
    prompt_seconds: float = PROMPT_SECONDS,
    min_seconds: float = DEMO_MIN_SOURCE_SECONDS,
    max_seconds: float = MAX_TARGET_SECONDS,
    seed: int = 0,
) -> Path:
    """Build ``out_dir/manifest.jsonl`` (+ ``prompts/``, ``references/``) from a demo corpus's held-out voices.

    ``vc``: per held-out source voice, up to ``per_voice`` (0: all) of its held-out-sentence test rows
    of ``min_seconds``-``max_seconds`` are sources; the k-th one gets the k-th other held-out voice (of
    another speaker, in turn) as target, whose prompt is a ``prompt_seconds`` crop of one of that
    voice's utterances of another sentence.
    ``tts``: per held-out voice, up to ``per_voice`` held-out sentences it reads are the texts (its
    recording is the ground truth) and the prompt is a crop of the same voice reading another sentence.
    ``self``: voice conversion of each such recording into its *own* voice (the prompt as for ``tts``):
    the perceptual model's reconstruction ceiling, RVQ-1 units of real speech and the right voice in,
    so that its WER and SIM bound what conversion and TTS through it can reach.
    Both write ``references.jsonl``: one whole utterance of every voice of the corpus (training voices
    too; for a held-out voice one that no item uses), for the voice-ID score. No training row is used
    as an item or prompt. Deterministic in ``seed``.
    """
    from engine.train.extract import corpus_manifest_path, read_corpus_rows

    if task not in ("tts", "vc", "self"):
        raise EngineError(f"unknown task {task!r}; use tts, vc or self")
    path = corpus_manifest_path(corpus)
    base = path.parent
    every = read_corpus_rows(path)
    rows = [r for r in every if r["heldout_voice"] and r["split"] == "test"]
    voices = sorted({r["voice"] for r in rows})
    if len(voices) < (2 if task == "vc" else 1):
        raise EngineError(f"{path} has {len(voices)} held-out voice(s); voice conversion between held-out voices needs at least two")
    speaker_of = {r["voice"]: r.get("speaker") or r["voice"] for r in every}
    by_voice = {v: sorted((r for r in rows if r["voice"] == v), key=lambda r: r["id"]) for v in voices}

    def utterance(r: dict) -> Utterance:
        p = Path(r["path"])
        return Utterance(str(r["id"]), r["voice"], p if p.is_absolute() else base / p, r["text"], float(r["duration"]))

    out_dir = Path(out_dir)
    items: list[EvalItem] = []
    used: set[str] = set()  # utterance ids that items and prompts use (references avoid them)
    for voice in voices:
        if task == "vc":
            targets = [v for v in voices if v != voice and speaker_of[v] != speaker_of[voice]]
        else:
            targets = [voice]
        if not targets:
            continue
        sources = [r for r in by_voice[voice] if r["heldout_sentence"] and min_seconds <= float(r["duration"]) <= max_seconds]
        rng = random.Random(f"{seed}-{voice}" if task == "vc" else f"{seed}-tts-{voice}")  # self: the tts draw
        rng.shuffle(sources)
        for k, src in enumerate(sources[: per_voice if per_voice > 0 else len(sources)]):
            target = targets[k % len(targets)]
            prompts = [r for r in by_voice[target] if r["sentence_id"] != src["sentence_id"] and float(r["duration"]) >= prompt_seconds]
            if not prompts:
                continue
            item_id = {"vc": f"{src['id']}-to-{target}", "self": f"{src['id']}-self"}.get(task, str(src["id"]))
            chosen = rng.choice(prompts)
            used.update((str(src["id"]), str(chosen["id"])))
            prompt = _crop_prompt(utterance(chosen), out_dir / "prompts" / f"{item_id}.wav", rng, prompt_seconds)
            if task in ("vc", "self"):
                items.append(EvalItem(item_id, str(prompt), text=src["text"], source=str(utterance(src).path),
                                      speaker=target, source_speaker=voice))
            else:
                items.append(EvalItem(item_id, str(prompt), text=src["text"], reference=str(utterance(src).path), speaker=voice))
    if not items:
        what = "another held-out voice with" if task == "vc" else "another utterance with"
        raise EngineError(f"no held-out voice in {path} has a {min_seconds:g}-{max_seconds:g} s held-out sentence and {what} "
                          f"a {prompt_seconds:g} s utterance to prompt with")
    _write_voice_references(every, base, out_dir, used, REFERENCE_MIN_SECONDS, max_seconds, seed)
    return write_manifest(out_dir / "manifest.jsonl", items)


def _write_voice_references(rows: list[dict], base: Path, out_dir: Path, used: set[str], min_seconds: float,
                            max_seconds: float, seed: int) -> Path:
    """``references.jsonl`` + ``references/VOICE.wav``: one whole utterance of every voice of the
    corpus (the longest of a few drawn, ``min_seconds``-``max_seconds`` where the voice has one), none
    that an item or prompt uses."""
    lines = []
    for voice in sorted({r["voice"] for r in rows}):
        pool = sorted((r for r in rows if r["voice"] == voice and str(r["id"]) not in used
                       and float(r["duration"]) <= max_seconds), key=lambda r: r["id"])
        pool = [r for r in pool if float(r["duration"]) >= min_seconds] or pool  # shorter ones only if that is all there is
        if not pool:
            continue
        drawn = random.Random(f"{seed}-reference-{voice}").sample(pool, min(5, len(pool)))
        pick = max(drawn, key=lambda r: (float(r["duration"]), r["id"]))
        src = Path(pick["path"]) if Path(pick["path"]).is_absolute() else base / pick["path"]
        dest = save_wav(out_dir / "references" / f"{voice}.wav", load_audio(src), SAMPLE_RATE)
        lines.append(json.dumps({"voice": voice, "speaker": pick.get("speaker") or voice, "path": str(dest.relative_to(out_dir)),
                                 "id": str(pick["id"])}))
    path = out_dir / REFERENCES_FILE
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
