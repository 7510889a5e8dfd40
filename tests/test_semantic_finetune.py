"""train-llm: instruction data from audio via the codec, then the real fine-tuning entry point
memorises it (TTS, ASR and the chain of modality)."""

import json

import soundfile as sf

from engine.cli.train_llm import main as train_llm
from engine.codec import Codec
from engine.semantic.config import SamplingConfig, SemanticConfig
from engine.semantic.history import Conversation
from engine.semantic.model import SemanticModel
from engine.semantic.prompts import prompt_family
from engine.semantic.tokenizer import build_tokenizer
from engine.train.llm_finetune import encode_record
from tests.audio_helpers import voiced

GREEDY = SamplingConfig(temperature=0, repetition_penalty=1.0, max_new_tokens=60)


def test_encode_record_masks_the_prompt():
    tok = build_tokenizer("speechgpt_gen")
    fam = prompt_family("speechgpt_gen")
    prompt, response = fam.tts_prompt("hi"), fam.tts_response([5, 6])
    ids, labels = encode_record(tok, prompt, response, 512)
    n_prompt = 1 + len(tok(prompt, add_special_tokens=False).input_ids)
    assert ids == [tok.bos_token_id] + tok(prompt + response, add_special_tokens=False).input_ids
    assert labels[:n_prompt] == [-100] * n_prompt and labels[n_prompt:] == ids[n_prompt:]
    assert tok.decode(ids[n_prompt:]) == response
    short_ids, short_labels = encode_record(tok, prompt, response, 8)
    assert len(short_ids) == len(short_labels) == 8 and set(short_labels) == {-100}


def test_build_data_and_finetune_memorises(tmp_path):
    codec = Codec.tiny()
    texts = {"alpha": 130.0, "bravo": 260.0}
    lines = []
    for text, f0 in texts.items():
        sf.write(tmp_path / f"{text}.wav", voiced(0.3, f0=f0, seed=int(f0)), 16000)
        lines.append(f"{text}.wav\t{text}")
    (tmp_path / "pairs.tsv").write_text("\n".join(lines) + "\n")
    triples = tmp_path / "triples.jsonl"
    triples.write_text(json.dumps({"question_audio": "alpha.wav", "question_text": "alpha", "answer_text": "bravo", "answer_audio": "bravo.wav"}) + "\n")
    data = tmp_path / "data.jsonl"
    assert train_llm(["build-data", "--pairs", str(tmp_path / "pairs.tsv"), "--triples", str(triples), "--out", str(data), "--profile", "tiny", "--seed", "1"]) == 0
    records = [json.loads(line) for line in data.read_text().splitlines()]
    assert sorted(r["task"] for r in records) == ["asr", "asr", "chain_of_modality", "tts", "tts"]
    fam = prompt_family("speechgpt_gen")
    units = {t: codec.encode(voiced(0.3, f0=f0, seed=int(f0))).semantic_tokens.tolist() for t, f0 in texts.items()}
    cot = next(r for r in records if r["task"] == "chain_of_modality")
    assert cot["prompt"] == f"[Human]: {fam.units.encode(units['alpha'])} <eoh>. [SpeechGPT]:"
    assert cot["response"] == f" alpha; [ta] bravo; [ua] {fam.units.encode(units['bravo'])}<eoa>"
    tts = [r for r in records if r["task"] == "tts"]
    assert all(r["response"] == fam.tts_response(units[r["prompt"].split("This is input: ")[1].split(" <eoh>")[0]]) for r in tts)
    # deterministic with a seed
    again = tmp_path / "again.jsonl"
    train_llm(["build-data", "--pairs", str(tmp_path / "pairs.tsv"), "--triples", str(triples), "--out", str(again), "--profile", "tiny", "--seed", "1"])
    assert again.read_text() == data.read_text()

    out = tmp_path / "model"
    assert train_llm(["run", "--model", "tiny", "--data", str(data), "--out", str(out), "--epochs", "120", "--lr", "5e-3",
                      "--batch-size", "5", "--warmup-steps", "5", "--save-steps", "100000"]) == 0
    history = json.loads((out / "train_history.json").read_text())
    losses = [h["loss"] for h in history if "loss" in h]
    assert losses[-1] < losses[0] / 5, losses

    model = SemanticModel.from_pretrained(str(out), SemanticConfig(family="speechgpt_gen", sampling=GREEDY, text_sampling=GREEDY))
    for r in tts:  # TTS: the memorised units for a memorised text
        text = r["prompt"].split("This is input: ")[1].split(" <eoh>")[0]
        instruction = next(i for i, ins in enumerate(fam.instructions_tts) if ins in r["prompt"])
        assert model.speak(text, instruction=instruction) == units[text]
    for r in (r for r in records if r["task"] == "asr"):  # ASR: the memorised transcript
        instruction = next(i for i, ins in enumerate(fam.instructions_asr) if ins in r["prompt"])
        spoken = next(t for t in texts if fam.units.encode(units[t]) in r["prompt"])
        assert model.transcribe(units[spoken], instruction=instruction) == spoken
    reply = model.respond(Conversation(), units["alpha"])  # chain of modality
    assert (reply.transcript, reply.text, reply.units, reply.warnings) == ("alpha", "bravo", units["bravo"], [])
