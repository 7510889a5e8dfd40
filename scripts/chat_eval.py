"""Spoken chat, measured on a few general questions read by a held-out corpus voice (default flite ``rms``).

For each question: the transcript (and its WER against the question), the reply text, Whisper tiny.en's
transcript of the reply audio and its WER against the reply text (issue: within 15 %), first audio and
total time. Models are loaded before the first question's clock starts.

    .venv/bin/python scripts/chat_eval.py --profile demo --voice flite-slt --threads 2
    .venv/bin/python scripts/chat_eval.py --profile demo --set semantic.chat_asr=semantic   # the semantic model transcribes
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

QUESTIONS = [
    "What is the capital of France?",
    "Who wrote Romeo and Juliet?",
    "How many legs does a spider have?",
    "What is the largest planet in our solar system?",
    "What do bees make?",
]


class Turn(NamedTuple):  # a NamedTuple: the docs test loads this file without registering it as a module
    question: str
    transcript: str
    transcript_wer: float
    reply: str
    heard: str  # Whisper tiny.en's transcript of the reply audio
    reply_wer: float
    reply_words: int
    first_audio_s: float
    total_s: float
    audio_s: float


def main(argv: list[str] | None = None) -> int:
    from engine.demo.voices_tts import DEFAULT_VOICES

    readers = {v.name: v for v in DEFAULT_VOICES}
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--voice", default="flite-slt", help="the reply's voice (a library voice)")
    parser.add_argument("--reader", default="flite_rms", choices=sorted(readers),
                        help="demo-corpus voice that reads the questions (default flite_rms: held out of the corpus)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)

    from engine.audio import resample
    from engine.config import load_config
    from engine.demo.voices_tts import open_engine
    from engine.eval.asr import WhisperASR
    from engine.eval.textnorm import word_error_rate
    from engine.pipeline import ChatDone, Engine, GenerationOptions

    spoken_questions = open_engine(readers[args.reader]).synth(QUESTIONS)  # (wave, rate) or the exception, per question
    failed = [str(r) for r in spoken_questions if isinstance(r, Exception)]
    if failed:
        parser.error(f"{args.reader} could not read the questions: {failed[0]}")
    engine = Engine(load_config(args.profile, overrides=[f"pipeline.cpu_threads={args.threads}", *args.overrides]))
    asr = WhisperASR.load("tiny")
    turns: list[Turn] = []
    for question, (wave, rate) in zip(QUESTIONS, spoken_questions):
        events = engine.chat((16000, resample(wave, rate)), args.voice, options=GenerationOptions(seed=args.seed))
        done = next(e for e in events if isinstance(e, ChatDone))
        heard = asr.transcribe(done.wav)
        # the reply's words as they are spoken: Whisper's normaliser drops text in brackets, which TTS does read
        spoken = re.sub(r"[()\[\]{}]", " ", done.text)
        t = Turn(question, done.transcript, word_error_rate(question, done.transcript), done.text, heard,
                 word_error_rate(spoken, heard), len(spoken.split()), done.metrics.first_audio_s, done.metrics.total_s, done.metrics.audio_s)
        turns.append(t)
        print(f"Q: {question}\n  transcript: {t.transcript}\n  reply: {t.reply}\n  reply audio heard as: {t.heard}\n"
              f"  transcript WER {100 * t.transcript_wer:.1f} %, reply audio WER {100 * t.reply_wer:.1f} %, "
              f"first audio {t.first_audio_s:.2f} s, total {t.total_s:.2f} s for {t.audio_s:.2f} s of audio", flush=True)
    n = len(turns)
    print(f"\n{n} questions: transcript WER {100 * sum(t.transcript_wer for t in turns) / n:.1f} %, "
          f"reply audio WER {100 * sum(t.reply_wer for t in turns) / n:.1f} % (mean per reply; "
          f"{100 * sum(t.reply_wer * t.reply_words for t in turns) / sum(t.reply_words for t in turns):.1f} % over all reply words), "
          f"first audio {sum(t.first_audio_s for t in turns) / n:.2f} s, RTF {sum(t.total_s for t in turns) / sum(t.audio_s for t in turns):.2f}, "
          f"threads {args.threads}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
