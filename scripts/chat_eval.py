"""Spoken chat, measured on a few general questions read by a held-out voice (flite ``rms``).

For each question: the transcript (and its WER against the question), the reply text, Whisper tiny.en's
transcript of the reply audio and its WER against the reply text (issue: within 15 %), first audio and
total time. Models are loaded before the first question's clock starts.

    .venv/bin/python scripts/chat_eval.py --profile demo --voice flite-slt --threads 2
    .venv/bin/python scripts/chat_eval.py --profile demo --set semantic.chat_asr=semantic   # the semantic model transcribes
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

QUESTIONS = [
    "What is the capital of France?",
    "Who wrote Romeo and Juliet?",
    "How many legs does a spider have?",
    "What is the largest planet in our solar system?",
    "What do bees make?",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--voice", default="flite-slt", help="the reply's voice (a library voice)")
    parser.add_argument("--reader", default="rms", help="flite voice that reads the questions (rms: held out of the demo corpus)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    if shutil.which("flite") is None:
        parser.error("flite is needed to read the questions (apt-get install flite)")

    from engine.audio import load_audio
    from engine.config import load_config
    from engine.eval.asr import WhisperASR
    from engine.eval.textnorm import word_error_rate
    from engine.pipeline import ChatDone, Engine, GenerationOptions

    cfg = load_config(args.profile, overrides=[f"pipeline.cpu_threads={args.threads}", *args.overrides])
    engine = Engine(cfg)
    asr = WhisperASR.load("tiny")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, question in enumerate(QUESTIONS):
            path = Path(tmp) / f"q{i}.wav"
            subprocess.run(["flite", "-voice", args.reader, "-t", question, "-o", str(path)], check=True)
            wav = load_audio(path)
            done = [e for e in engine.chat((16000, wav), args.voice, options=GenerationOptions(seed=args.seed)) if isinstance(e, ChatDone)][0]
            heard = asr.transcribe(done.wav)
            # the reply's words as they are spoken: Whisper's normaliser drops text in brackets, which TTS does read
            spoken = re.sub(r"[()\[\]{}]", " ", done.text)
            rows.append((question, done.transcript, word_error_rate(question, done.transcript), done.text, heard,
                         word_error_rate(spoken, heard), done.metrics.first_audio_s, done.metrics.total_s, done.metrics.audio_s,
                         len(spoken.split())))
            print(f"Q: {question}\n  transcript: {done.transcript}\n  reply: {done.text}\n  reply audio heard as: {heard}\n"
                  f"  transcript WER {100 * rows[-1][2]:.1f} %, reply audio WER {100 * rows[-1][5]:.1f} %, "
                  f"first audio {rows[-1][6]:.2f} s, total {rows[-1][7]:.2f} s for {rows[-1][8]:.2f} s of audio", flush=True)
    n = len(rows)
    print(f"\n{n} questions: transcript WER {100 * sum(r[2] for r in rows) / n:.1f} %, "
          f"reply audio WER {100 * sum(r[5] for r in rows) / n:.1f} % (mean per reply; "
          f"{100 * sum(r[5] * r[9] for r in rows) / sum(r[9] for r in rows):.1f} % over all reply words), "
          f"first audio {sum(r[6] for r in rows) / n:.2f} s, RTF {sum(r[7] for r in rows) / sum(r[8] for r in rows):.2f}, "
          f"threads {args.threads}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
