"""Run zero-shot TTS / voice-conversion evaluation over a manifest and write the report.

For every chain (flow), every ODE-step setting and every item: generate with the engine, transcribe
with Whisper (WER against the item's text) and embed with a speaker encoder (cosine similarity to
the voice prompt and, for VC, to the source voice), as in section 4.2 of the paper. Outputs in ``out_dir``::

    audio/<system>/<id>.wav    generated speech
    items.csv                  one row per (system, item)
    summary.md / summary.json  corpus WER and mean similarity per system
    wer_sim_vs_steps.png       when several step counts are evaluated: WER, SIM to the prompt and
                               (VC) SIM to the source against NFE, one line per chain

"system" names the setting (``flow-implicit-8`` = flow model, implicit chain, 8 ODE steps;
``ground-truth`` = the real recording of the text (TTS); ``source`` = the unconverted source (VC):
its WER is the floor and its similarity to the prompt the "no conversion" baseline). A conversion
that works has SIM to the prompt well above SIM to the source; one that copies the source has the reverse.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Protocol, Sequence

import numpy as np

from engine.audio import SAMPLE_RATE, load_audio, save_wav
from engine.errors import EngineError, ModelUnavailableError
from engine.eval.speaker import SpeakerEncoder, cosine
from engine.eval.testsets import EvalItem
from engine.eval.textnorm import corpus_stats, normalize_for_wer, wer_stats

log = logging.getLogger(__name__)

Progress = Callable[[int, int, str], None]  # (done, total, message)


class Transcriber(Protocol):
    name: str

    def transcribe(self, wav: np.ndarray, sample_rate: int = SAMPLE_RATE) -> str: ...


@dataclass
class Row:
    system: str
    steps: int | None
    id: str
    wer: float
    errors: int
    reference_words: int
    similarity: float
    audio_seconds: float
    rtf: float | None
    reference_text: str
    hypothesis: str
    audio: str
    error: str = ""
    similarity_source: float = float("nan")  # VC: cosine to the source voice (nan for TTS)
    # with voice references (references.jsonl): the highest cosine to another voice's reference, that
    # voice, and whether the prompt's own voice is nearer than every other one (1.0 / 0.0; nan without)
    similarity_other: float = float("nan")
    nearest_other: str = ""
    voice_match: float = float("nan")


@dataclass
class Summary:
    system: str
    steps: int | None
    items: int
    failed: int
    wer: float  # corpus WER: all errors / all reference words
    similarity: float  # mean over items
    rtf: float | None  # mean real-time factor of generation
    similarity_source: float = float("nan")  # VC: mean similarity to the source voice
    similarity_other: float = float("nan")  # mean of the highest similarity to another voice's reference
    voice_id: float = float("nan")  # share of items whose own voice's reference is the nearest


NFE_PER_STEP = {"euler": 1, "midpoint": 2}  # network evaluations per ODE step of each flow solver


def system_name(perceptual: str, chain: str | None, steps: int | None) -> str:
    head = perceptual if perceptual != "flow" else f"flow-{chain or 'implicit'}"
    return f"{head}-{steps if steps is not None else 'default'}"


class Evaluator:
    """Scores audio; holds the scorers and caches prompt embeddings."""

    def __init__(self, asr: Transcriber, speaker: SpeakerEncoder, references: dict[str, tuple[str, str]] | None = None):
        """``references``: voice -> (speaker, audio path) of every voice of the test's corpus
        (``testsets.read_references``); items then also get the voice-ID scores."""
        self.asr = asr
        self.speaker = speaker
        self.references = dict(references or {})
        self._prompt_emb: dict[str, np.ndarray] = {}  # audio path -> speaker embedding (prompts, sources, references)
        self._heard: dict[str, str] = {}  # source path -> ASR transcript (VC items without text)

    def _audio_embedding(self, path: str) -> np.ndarray:
        """Speaker embedding of an audio file (prompts, sources, voice references), computed once."""
        if path not in self._prompt_emb:
            self._prompt_emb[path] = self.speaker.embed(load_audio(path))
        return self._prompt_emb[path]

    def prompt_embedding(self, item: EvalItem) -> np.ndarray:
        return self._audio_embedding(item.prompt)

    def source_embedding(self, item: EvalItem) -> np.ndarray | None:
        """Speaker embedding of a VC item's source audio (None for TTS items)."""
        return self._audio_embedding(item.source) if item.source else None

    def voice_scores(self, item: EvalItem, emb: np.ndarray) -> tuple[float, str, float]:
        """(highest similarity to another voice's reference, that voice, 1.0 when the item's own
        voice's reference is nearer than all of them else 0.0); nan/"" without references or when
        the item's voice has none. Voices of the same speaker as the item's are not "other"."""
        own = self.references.get(item.speaker or "")
        if own is None:
            return float("nan"), "", float("nan")
        others = {v: path for v, (spk, path) in self.references.items() if v != item.speaker and spk != own[0]}
        if not others:
            return float("nan"), "", float("nan")
        sims = {v: cosine(emb, self._audio_embedding(path)) for v, path in others.items()}
        nearest = max(sims, key=sims.get)
        return sims[nearest], nearest, float(cosine(emb, self._audio_embedding(own[1])) > sims[nearest])

    def reference_text(self, item: EvalItem) -> str:
        """The item's text; for a VC item without one, the ASR transcript of the source."""
        if item.text:
            return item.text
        if item.source:
            if item.source not in self._heard:
                self._heard[item.source] = self.asr.transcribe(load_audio(item.source))
            return self._heard[item.source]
        raise EngineError(f"item {item.id} has neither text nor source audio to score against")

    def score(self, item: EvalItem, wav: np.ndarray, system: str, steps: int | None, audio_path: str,
              rtf: float | None) -> Row:
        ref = self.reference_text(item)
        hyp = self.asr.transcribe(wav)
        stats = wer_stats(ref, hyp)
        sim = sim_src = sim_other = match = float("nan")
        nearest = ""
        if wav.size >= SAMPLE_RATE // 4:
            emb = self.speaker.embed(wav)
            sim = cosine(emb, self.prompt_embedding(item))
            source = self.source_embedding(item)
            if source is not None:
                sim_src = cosine(emb, source)
            sim_other, nearest, match = self.voice_scores(item, emb)
        return Row(system, steps, item.id, stats.wer, stats.errors, stats.reference_words, sim,
                   wav.size / SAMPLE_RATE, rtf, normalize_for_wer(ref), normalize_for_wer(hyp), audio_path, similarity_source=sim_src,
                   similarity_other=sim_other, nearest_other=nearest, voice_match=match)


def _failed_row(item: EvalItem, ref: str, system: str, steps: int | None, error: str) -> Row:
    words = len(normalize_for_wer(ref).split())
    return Row(system, steps, item.id, 1.0, words, words, float("nan"), 0.0, None, normalize_for_wer(ref), "", "", error)


def evaluate(
    task: str,
    items: Sequence[EvalItem],
    engine,
    evaluator: Evaluator,
    out_dir: str | Path,
    *,
    steps: Sequence[int | None] = (None,),
    chains: Sequence[str | None] = (None,),
    options=None,
    ground_truth: bool = True,
    resume: bool = False,
    progress: Progress | None = None,
) -> list[Row]:
    """Generate and score every item at every step count (and, for the flow model, with every chain
of ``chains``; None: ``options.chain`` or the config's); write the report; return all rows.

    ``items.csv`` is rewritten after every item, so an interrupted run keeps what it did; with
    ``resume`` the rows of an earlier run whose audio is still there are kept, not redone.
    """
    from engine.pipeline import GenerationOptions

    if task not in ("tts", "vc"):
        raise EngineError(f"unknown evaluation task {task!r}; use tts or vc")
    out_dir = Path(out_dir)
    options = options or GenerationOptions(seed=0)
    perceptual = options.perceptual or engine.config.perceptual.kind
    rows: list[Row] = []
    chains = list(chains) if perceptual == "flow" else [None]
    total = len(items) * (len(steps) * len(chains) + int(ground_truth))
    done = 0
    earlier = read_rows(out_dir / "items.csv") if resume else {}

    def tick(message: str) -> None:
        nonlocal done
        done += 1
        write_rows(out_dir / "items.csv", rows)
        if progress:
            progress(done, total, message)

    def reuse(system: str, item: EvalItem) -> bool:
        row = earlier.get((system, item.id))
        audio = None if row is None else Path(row.audio) if Path(row.audio).is_absolute() else out_dir / row.audio
        if row is None or row.error or audio is None or not audio.is_file():
            return False
        rows.append(row)
        tick(f"{system} {item.id} (kept from the earlier run)")
        return True

    # the models this task needs, loaded before any work so that missing weights stop the run at once
    engine.codec  # noqa: B018
    model = engine.perceptual(perceptual)
    for chain in chains:
        if chain is not None and hasattr(model, "model"):
            model.model(chain)  # every chain's model loads (or fails) before any work
    if task == "tts":
        engine.semantic_for("tts")
    if ground_truth:
        truth = "ground-truth" if task == "tts" else "source"
        for item in items:
            real = item.reference if task == "tts" else item.source
            if reuse(truth, item):
                continue
            if real:
                rows.append(evaluator.score(item, load_audio(real), truth, None, real, None))
            tick(f"{truth} {item.id}")
    settings = [(c, n) for c in chains for n in steps]
    for chain_asked, n_steps in settings:
        asked = chain_asked or options.chain
        chain = (asked or getattr(model, "default_chain", None) or engine.config.perceptual.flow.chain) if perceptual == "flow" else None
        system = system_name(perceptual, chain, n_steps)
        call = replace(options, steps=n_steps, chain=asked)
        for item in items:
            if reuse(system, item):
                continue
            ref = evaluator.reference_text(item)
            try:
                if task == "tts":
                    result = engine.tts(ref, Path(item.prompt), options=call)  # manifest paths: a trusted caller
                else:
                    result = engine.convert(Path(item.source), Path(item.prompt), options=call)
            except ModelUnavailableError:
                raise  # missing weights fail every item alike: stop with the one message that says how to get them
            except EngineError as exc:
                log.warning("%s %s failed: %s", system, item.id, exc)
                rows.append(_failed_row(item, ref, system, n_steps, str(exc)))
                tick(f"{system} {item.id} (failed)")
                continue
            path = save_wav(out_dir / "audio" / system / f"{item.id}.wav", result.wav, result.sample_rate)
            rows.append(evaluator.score(item, result.wav, system, n_steps, str(path.relative_to(out_dir)), result.metrics.rtf))
            tick(f"{system} {item.id}")
    meta = {"task": task, "items": len(items), "asr": evaluator.asr.name, "speaker_encoder": evaluator.speaker.name,
            "profile": engine.config.profile, "perceptual": perceptual}
    if perceptual == "flow":
        flow = engine.config.perceptual.flow
        meta |= {"solver": flow.solver, "nfe_per_step": NFE_PER_STEP.get(flow.solver, 1), "schedule": flow.schedule}
    write_report(task, rows, out_dir, meta=meta)
    return rows


# ----------------------------------------------------------------------------- report
def summarize(rows: Sequence[Row]) -> list[Summary]:
    """One summary per system, in first-seen order."""
    out: list[Summary] = []
    for system in dict.fromkeys(r.system for r in rows):
        group = [r for r in rows if r.system == system]
        stats = corpus_stats(group)
        sims = [r.similarity for r in group if not math.isnan(r.similarity)]
        sims_src = [r.similarity_source for r in group if not math.isnan(r.similarity_source)]
        rtfs = [r.rtf for r in group if r.rtf is not None]
        others = [r.similarity_other for r in group if not math.isnan(r.similarity_other)]
        matches = [r.voice_match for r in group if not math.isnan(r.voice_match)]
        out.append(Summary(system, group[0].steps, len(group), sum(bool(r.error) for r in group), stats.wer,
                           float(np.mean(sims)) if sims else float("nan"), float(np.mean(rtfs)) if rtfs else None,
                           float(np.mean(sims_src)) if sims_src else float("nan"),
                           float(np.mean(others)) if others else float("nan"), float(np.mean(matches)) if matches else float("nan")))
    return out


def markdown_table(summaries: Sequence[Summary]) -> str:
    """One row per system; the voice-ID columns (SIM other, voice ID %) only when any system has them."""
    voice = any(math.isfinite(s.voice_id) for s in summaries)
    head = "| system | steps | items | failed | WER % | SIM | SIM src |" + (" SIM other | voice ID % |" if voice else "") + " RTF |"
    lines = [head, "|---|" + "---:|" * (head.count("|") - 2)]
    for s in summaries:
        rtf = f"{s.rtf:.3f}" if s.rtf is not None else "-"
        steps = str(s.steps) if s.steps is not None else "-"
        src = f"{s.similarity_source:.3f}" if math.isfinite(s.similarity_source) else "-"
        extra = ""
        if voice:
            other = f"{s.similarity_other:.3f}" if math.isfinite(s.similarity_other) else "-"
            vid = f"{100 * s.voice_id:.0f}" if math.isfinite(s.voice_id) else "-"
            extra = f" {other} | {vid} |"
        lines.append(f"| {s.system} | {steps} | {s.items} | {s.failed} | {100 * s.wer:.1f} | {s.similarity:.3f} | {src} |{extra} {rtf} |")
    return "\n".join(lines)


def write_rows(path: Path, rows: Sequence[Row]) -> None:
    """items.csv, written atomically (a crash never leaves half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(Row.__dataclass_fields__))
        writer.writeheader()
        for r in rows:
            writer.writerow(asdict(r))
    tmp.replace(path)


def read_rows(path: Path) -> dict[tuple[str, str], Row]:
    """Rows of an earlier items.csv by (system, id); empty when there is none."""
    if not path.is_file():
        return {}
    out = {}
    with open(path, newline="", encoding="utf-8") as f:
        for raw in csv.DictReader(f):
            out[(raw["system"], raw["id"])] = Row(
                raw["system"], int(raw["steps"]) if raw["steps"] else None, raw["id"], float(raw["wer"]), int(raw["errors"]),
                int(raw["reference_words"]), float(raw["similarity"]), float(raw["audio_seconds"]),
                float(raw["rtf"]) if raw["rtf"] else None, raw["reference_text"], raw["hypothesis"], raw["audio"], raw["error"],
                float(raw.get("similarity_source") or "nan"),  # absent in reports written before it existed
                float(raw.get("similarity_other") or "nan"), raw.get("nearest_other") or "", float(raw.get("voice_match") or "nan"),
            )
    return out


def write_report(task: str, rows: Sequence[Row], out_dir: str | Path, meta: dict | None = None) -> dict[str, Path]:
    """items.csv, summary.md, summary.json and (several step counts) the plot. Returns the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out_dir / "items.csv", "markdown": out_dir / "summary.md", "json": out_dir / "summary.json"}
    write_rows(paths["csv"], rows)
    summaries = summarize(rows)
    meta = dict(meta or {})
    header = [f"# Zero-shot {'TTS' if task == 'tts' else 'voice conversion'} evaluation", ""]
    header += [f"- {k.replace('_', ' ')}: {v}" for k, v in meta.items()]
    header += ["", "WER: corpus word error rate of the ASR transcript against the text (both normalised). "
               "SIM: mean cosine similarity of speaker embeddings, generated vs. voice prompt. "
               "SIM src (VC): the same against the source speech (the voice that should be gone). "
               "SIM other (with voice references): mean of the highest similarity to another voice's reference recording; "
               "voice ID: share of items whose own voice's reference is nearer than every other voice's. "
               "RTF: generation time / audio length."]
    if meta.get("profile") == "tiny":
        header += ["", "**Tiny profile: randomly initialised models. These numbers only show that the pipeline runs.**"]
    paths["markdown"].write_text("\n".join(header) + "\n\n" + markdown_table(summaries) + "\n", encoding="utf-8")
    paths["json"].write_text(json.dumps({"meta": meta, "systems": [asdict(s) for s in summaries]}, indent=2,
                                        allow_nan=True), encoding="utf-8")
    plot = plot_vs_steps(summaries, out_dir / "wer_sim_vs_steps.png", nfe_per_step=int(meta.get("nfe_per_step", 0)))
    if plot is not None:
        paths["plot"] = plot
    return paths


def plot_vs_steps(summaries: Sequence[Summary], path: str | Path, nfe_per_step: int = 0) -> Path | None:
    """WER, SIM to the prompt and (when any system has it: VC) SIM to the source against the step
    count, one line per model/chain, in one figure; None when fewer than two step counts.
    ``nfe_per_step`` > 0 puts the number of function evaluations (steps x it) on the x axis."""
    series: dict[str, list[Summary]] = {}
    for s in summaries:
        if s.steps is not None:
            series.setdefault(s.system.rsplit("-", 1)[0], []).append(s)
    if not any(len(v) > 1 for v in series.values()):
        return None
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    with_source = any(math.isfinite(s.similarity_source) for points in series.values() for s in points)
    panels = [("WER (%)", lambda s: 100 * s.wer), ("speaker similarity to prompt", lambda s: s.similarity)]
    if with_source:
        panels.append(("speaker similarity to source", lambda s: s.similarity_source))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.6))
    scale = nfe_per_step if nfe_per_step > 0 else 1
    all_x = sorted({s.steps * scale for points in series.values() for s in points})
    for name, points in series.items():
        points = sorted(points, key=lambda s: s.steps)
        for ax, (_, value) in zip(axes, panels):
            xy = [(p.steps * scale, value(p)) for p in points if math.isfinite(value(p))]  # failed settings have no SIM
            if xy:
                ax.plot(*zip(*xy), marker="o", label=name)
    truth = next((s for s in summaries if s.system in ("ground-truth", "source")), None)
    if truth is not None:
        label = truth.system.replace("-", " ") + (" (unconverted)" if truth.system == "source" else "")
        for ax, (_, value) in zip(axes, panels):
            if math.isfinite(value(truth)):
                ax.axhline(value(truth), color="gray", linestyle="--", label=label)
    for ax, (label, _) in zip(axes, panels):
        ax.set_xscale("log", base=2)
        ax.set_xlim(all_x[0] / 1.3, all_x[-1] * 1.3)
        ax.set_xticks(all_x, [str(x) for x in all_x])
        ax.ticklabel_format(axis="y", useOffset=False)
        ax.set_xlabel("NFE (network evaluations)" if nfe_per_step > 0 else "ODE steps / iterations")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    if axes[1].get_legend_handles_labels()[0]:
        axes[1].legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
