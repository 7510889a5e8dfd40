"""Make the bundled voices in assets/voices/ (voice.wav + meta.json each, and README.md).

Sources, all free to redistribute (see the licence field of each voice):
- Flite 2.2 (Debian package ``flite``): the CMU ARCTIC clustergen voices slt, rms and awb,
  reading sentences written for this project.
- LibriVox (public domain): a clip of "Sense and Sensibility", chapter 1, as shipped in the
  Debian package ``pocketsphinx-testdata`` (/usr/share/pocketsphinx/test/data/librivox/).

Every clip goes through the library's own prompt preparation (``engine.voices.prepare_prompt_audio``:
silence trimmed, peak 0.9) and is saved as 16 kHz mono 16-bit WAV. The output is deterministic
(Flite synthesis is; ``created`` is a fixed date), so running this again reproduces the files.

    sudo apt-get install -y flite pocketsphinx-testdata
    .venv/bin/python scripts/make_bundled_voices.py [--out assets/voices]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine.audio import SAMPLE_RATE, load_audio, save_wav  # noqa: E402
from engine.voices import prepare_prompt_audio  # noqa: E402

LIBRIVOX_DIR = Path("/usr/share/pocketsphinx/test/data/librivox")
CREATED = "2026-11-23T00:00:00Z"
MAX_SECONDS = 6.0
FLITE_LICENCE = (
    "CMU Flite licence (free, BSD-style: use, modify and redistribute, keep the copyright notice; "
    "Copyright 1999-2001 Language Technologies Institute, Carnegie Mellon University). "
    "The voice models are built from the CMU ARCTIC databases, released under the same free licence. "
    "The synthesised clip is free to use."
)
LIBRIVOX_LICENCE = (
    "Public domain (LibriVox recordings are released into the public domain). "
    "Redistributed via the Debian package pocketsphinx-testdata (package files BSD-2, CMU)."
)


@dataclass
class Spec:
    name: str
    description: str
    speaker: str
    transcript: str
    flite_voice: str = ""  # synthesise with flite
    librivox_file: str = ""  # or cut from a LibriVox clip


VOICES = [
    Spec(
        name="librivox-reader",
        description="Human reader, US English, calm audiobook narration (LibriVox)",
        speaker="LibriVox volunteer reader of Jane Austen's Sense and Sensibility, chapter 1",
        transcript="unless to be rather cold hearted and rather selfish is to be ill disposed",
        librivox_file="sense_and_sensibility_01_austen_64kb-0890.wav",
    ),
    Spec(
        name="flite-slt",
        description="Synthetic US English female voice (Flite, CMU ARCTIC slt)",
        speaker="CMU ARCTIC slt (US English, female), Flite clustergen voice",
        transcript="Good morning. I can read your messages aloud in a clear voice.",
        flite_voice="slt",
    ),
    Spec(
        name="flite-rms",
        description="Synthetic US English male voice (Flite, CMU ARCTIC rms)",
        speaker="CMU ARCTIC rms (US English, male), Flite clustergen voice",
        transcript="The weather will be mild this afternoon, with a light breeze.",
        flite_voice="rms",
    ),
    Spec(
        name="flite-awb",
        description="Synthetic Scottish English male voice (Flite, CMU ARCTIC awb)",
        speaker="CMU ARCTIC awb (Scottish English, male), Flite clustergen voice",
        transcript="Please water the plants and close the windows before you leave.",
        flite_voice="awb",
    ),
]


def _package_version(package: str) -> str:
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def synthesise_flite(voice: str, text: str, workdir: Path) -> Path:
    flite = shutil.which("flite")
    if flite is None:
        raise SystemExit("flite is not installed: sudo apt-get install -y flite")
    out = workdir / f"flite-{voice}.wav"
    subprocess.run([flite, "-voice", voice, "-t", text, "-o", str(out)], check=True)
    return out


def make_voice(spec: Spec, out_dir: Path, workdir: Path) -> dict:
    if spec.flite_voice:
        source_path = synthesise_flite(spec.flite_voice, spec.transcript, workdir)
        source = (
            f"synthesised with Flite {_package_version('flite')} (Debian package flite), "
            f"command: flite -voice {spec.flite_voice} -t \"{spec.transcript}\""
        )
        licence = FLITE_LICENCE
    else:
        source_path = LIBRIVOX_DIR / spec.librivox_file
        if not source_path.is_file():
            raise SystemExit(f"{source_path} is missing: sudo apt-get install -y pocketsphinx-testdata")
        source = (
            "LibriVox recording of Jane Austen, Sense and Sensibility, chapter 1 (librivox.org); clip "
            f"{spec.librivox_file} from Debian package pocketsphinx-testdata {_package_version('pocketsphinx-testdata')}"
        )
        licence = LIBRIVOX_LICENCE
    wav = prepare_prompt_audio(load_audio(source_path), MAX_SECONDS)
    folder = out_dir / spec.name
    folder.mkdir(parents=True, exist_ok=True)
    save_wav(folder / "voice.wav", wav)
    meta = {
        "name": spec.name,
        "created": CREATED,
        "duration": round(len(wav) / SAMPLE_RATE, 4),
        "sample_rate": SAMPLE_RATE,
        "description": spec.description,
        "speaker": spec.speaker,
        "source": source,
        "licence": licence,
        "transcript": spec.transcript,
        "codec": None,
    }
    (folder / "meta.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return meta


README_HEAD = """# Bundled voices

Read-only voice prompts shipped with the app. The voice library lists them with `bundled=True`;
they cannot be renamed or deleted, and their codec codes are computed on first use and cached
in the user's library (`<voices_dir>/.bundled/<name>/`). Each folder holds `voice.wav`
(16 kHz mono 16-bit PCM, silence trimmed, peak 0.9) and `meta.json` (provenance, licence,
transcript).

Made by `scripts/make_bundled_voices.py` (reproducible: run it again to rebuild these files;
it needs the Debian packages `flite` and `pocketsphinx-testdata`).

| name | speaker | duration | transcript |
|---|---|---|---|
"""

README_TAIL = """
## Provenance and licences

### LibriVox (human speech)
`librivox-reader` is cut from a LibriVox recording of Jane Austen's *Sense and Sensibility*,
chapter 1, read by a LibriVox volunteer. LibriVox recordings are in the **public domain**. The
clip comes from the Debian package `pocketsphinx-testdata` (file
`/usr/share/pocketsphinx/test/data/librivox/{librivox}`; that package's files are under the
BSD-2 licence of Carnegie Mellon University).

### Flite (synthetic speech)
`flite-slt`, `flite-rms` and `flite-awb` were synthesised with CMU Flite (Debian package `flite`,
version {flite}) from the sentences in the table above, which were written for this project.
The voices are Flite's clustergen models of the CMU ARCTIC speakers slt (US female), rms (US
male) and awb (Scottish male). Flite and the ARCTIC voices are distributed under the CMU Flite
licence, a free BSD-style licence:

> Copyright (c) 1999-2001 Language Technologies Institute, Carnegie Mellon University. All Rights
> Reserved. Permission is hereby granted, free of charge, to use and distribute this software and
> its documentation without restriction, including without limitation the rights to use, copy,
> modify, merge, publish, distribute, sublicense, and/or sell copies of this work, and to permit
> persons to whom this work is furnished to do so, subject to the following conditions: 1. The
> code must retain the above copyright notice, this list of conditions and the following
> disclaimer. 2. Any modifications must be clearly marked as such. 3. Original authors' names are
> not deleted. 4. The authors' names are not used to endorse or promote products derived from
> this software without specific prior written permission.

These are prompts for *voice cloning*: use them, and any voice you add, only in ways the
speaker would agree to.
"""


def write_readme(out_dir: Path, metas: list[dict]) -> None:
    rows = "".join(f"| `{m['name']}` | {m['speaker']} | {m['duration']:.1f} s | {m['transcript']} |\n" for m in metas)
    tail = README_TAIL.replace("{librivox}", VOICES[0].librivox_file).replace("{flite}", _package_version("flite"))
    (out_dir / "README.md").write_text(README_HEAD + rows + tail, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "assets" / "voices", help="output folder (default: assets/voices)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    metas = []
    with tempfile.TemporaryDirectory() as tmp:
        for spec in VOICES:
            meta = make_voice(spec, args.out, Path(tmp))
            size = (args.out / spec.name / "voice.wav").stat().st_size
            print(f"{spec.name}: {meta['duration']:.2f} s, {size / 1024:.0f} KB")
            metas.append(meta)
    write_readme(args.out, metas)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
