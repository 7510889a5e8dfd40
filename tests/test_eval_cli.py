"""`python -m engine eval vc|tts --profile tiny` end to end: generation, scoring, CSV, table, plot."""

import csv
import json

import pytest

from engine.cli import main as cli
from engine.eval.testsets import EvalItem, write_manifest
from tests.speech_helpers import SENTENCES, flite


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("clips")
    return {
        "src": flite(SENTENCES[0], "rms", d / "src.wav"),
        "prompt": flite(SENTENCES[1], "slt", d / "prompt.wav"),
    }


def test_eval_vc_tiny_writes_csv_table_and_plot(tmp_path, clips, capsys):
    manifest = write_manifest(tmp_path / "set" / "manifest.jsonl", [
        EvalItem("a", str(clips["prompt"]), text=SENTENCES[0], source=str(clips["src"])),
        EvalItem("b", str(clips["src"]), source=str(clips["prompt"])),  # no text: the source's ASR transcript is the reference
    ])
    out = tmp_path / "report"
    rc = cli(["eval", "vc", "--profile", "tiny", "--manifest", str(manifest), "--out", str(out), "--steps", "1,2"])
    assert rc == 0
    rows = list(csv.DictReader(open(out / "items.csv")))
    systems = [r["system"] for r in rows]
    assert systems.count("source") == 2 and systems.count("flow-implicit-1") == 2 and systems.count("flow-implicit-2") == 2
    for r in rows:
        assert 0.0 <= float(r["wer"]) and -1.0 <= float(r["similarity"]) <= 1.0 and r["error"] == ""
        assert (out / r["audio"]).is_file() or r["system"] == "source"
    truth = {r["id"]: r for r in rows if r["system"] == "source"}
    assert float(truth["a"]["wer"]) < 0.3  # the real source is intelligible; the reference text is used
    assert float(truth["b"]["wer"]) == 0.0  # without text, the source's own transcript is the reference
    summary = json.loads((out / "summary.json").read_text())
    assert [s["system"] for s in summary["systems"]] == ["source", "flow-implicit-1", "flow-implicit-2"]
    assert summary["meta"]["asr"].startswith("whisper-") and summary["meta"]["profile"] == "tiny"
    table = (out / "summary.md").read_text()
    assert "| flow-implicit-2 | 2 | 2 | 0 |" in table
    assert (out / "wer_sim_vs_steps.png").stat().st_size > 5000
    assert "flow-implicit-1" in capsys.readouterr().out

    # --resume keeps what is done and redoes only what is missing
    (out / "audio" / "flow-implicit-2" / "b.wav").unlink()
    rc = cli(["eval", "vc", "--profile", "tiny", "--manifest", str(manifest), "--out", str(out), "--steps", "1,2", "--resume"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert printed.count("kept from the earlier run") == 5 and "flow-implicit-2 b\n" in printed
    again = {(r["system"], r["id"]): r for r in csv.DictReader(open(out / "items.csv"))}
    assert len(again) == 6 and (out / "audio" / "flow-implicit-2" / "b.wav").is_file()
    for r in rows:
        if (r["system"], r["id"]) != ("flow-implicit-2", "b"):
            assert again[(r["system"], r["id"])] == r


def test_eval_tts_tiny_soundstorm(tmp_path, clips):
    manifest = write_manifest(tmp_path / "m.jsonl", [EvalItem("t", str(clips["prompt"]), text="Hello there.", reference=str(clips["src"]))])
    out = tmp_path / "report"
    rc = cli(["eval", "tts", "--profile", "tiny", "--perceptual", "soundstorm", "--manifest", str(manifest),
              "--out", str(out), "--no-ground-truth"])
    assert rc == 0
    rows = list(csv.DictReader(open(out / "items.csv")))
    assert [r["system"] for r in rows] == ["soundstorm-default"]
    assert float(rows[0]["audio_seconds"]) > 0 and not (out / "wer_sim_vs_steps.png").exists()


def test_eval_reports_bad_manifest(tmp_path, capsys):
    (tmp_path / "m.jsonl").write_text('{"id": "x", "prompt": "nope.wav"}\n')
    rc = cli(["eval", "vc", "--profile", "tiny", "--manifest", str(tmp_path / "m.jsonl"), "--out", str(tmp_path / "o")])
    assert rc == 1 and "does not exist" in capsys.readouterr().err


def test_eval_asr_tiny_transcribes_through_the_semantic_model(tmp_path, clips, capsys):
    """`eval asr`: each recording with text is heard twice, through the chain (codec units -> the
    semantic model's ASR; the tiny model's text is noise) and by Whisper on the same audio (the floor)."""
    manifest = write_manifest(tmp_path / "set" / "manifest.jsonl", [
        EvalItem("a", str(clips["prompt"]), text=SENTENCES[0], reference=str(clips["src"])),
        EvalItem("b", str(clips["src"]), text=SENTENCES[1], source=str(clips["prompt"])),
        EvalItem("c", str(clips["src"])),  # neither audio nor text to score: left out
    ])
    out = tmp_path / "asr"
    assert cli(["eval", "asr", "--profile", "tiny", "--manifest", str(manifest), "--out", str(out),
                "--set", "semantic.text_sampling.max_new_tokens=8"]) == 0
    rows = list(csv.DictReader(open(out / "items.csv")))
    assert [(r["system"], r["id"]) for r in rows] == [("semantic-asr", "a"), ("whisper", "a"), ("semantic-asr", "b"), ("whisper", "b")]
    whisper = {r["id"]: float(r["wer"]) for r in rows if r["system"] == "whisper"}
    assert whisper["a"] < 0.3 and whisper["b"] < 0.3  # the recordings are clear
    assert all(float(r["wer"]) > 0.5 for r in rows if r["system"] == "semantic-asr")  # random weights do not transcribe
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["wer"]) == {"semantic-asr", "whisper"} and summary["meta"]["items"] == 2
    assert "| semantic-asr | 2 |" in capsys.readouterr().out
