"""Training a small LLaMA semantic model from scratch on instruction data built from codes.

``python -m engine train-llm build-data --codes DIR`` writes the cross-modal records (TTS: text ->
RVQ-1 units, ASR: units -> text); ``python -m engine train-llm run --model scratch:SIZE --config
assets/configs/train/llm_demo.yaml`` trains on them with the project's generic ``accelerate`` loop
(engine.train.trainer: warm-up + decay, gradient clipping, EMA, validation, checkpoints, exact
``--resume``; bf16 on a GPU, float32 on a CPU). The vocabulary is built for the model: one token
per character (``build_char_tokenizer``: characters of the written text, or of espeak-ng phonemes
with ``text_units: phonemes``), the prompt family's special tokens and the 1024 unit tokens, each
one token. ``OUT/final`` is an ordinary transformers LLaMA folder with its tokenizer beside it,
loaded by ``SemanticModel.from_pretrained`` (``semantic.path: OUT/final``); its ``config.json``
records ``text_units`` so that TTS input is converted at inference as it was in training.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from engine.jsonl import read_jsonl
from engine.semantic.frontend import TEXT_UNITS, TextFrontEnd
from engine.semantic.prompts import prompt_family
from engine.semantic.scratch import build_scratch_model, count_parameters, scratch_size
from engine.semantic.tokenizer import build_char_tokenizer
from engine.train.codes_data import LengthBucketSampler
from engine.train.llm_finetune import encode_record
from engine.train.trainer import TrainConfig, Trainer

log = logging.getLogger(__name__)

TOKENIZER_DIR = "tokenizer"  # OUT/tokenizer: built once, reused by --resume


@dataclass
class ScratchModelSpec:
    """Which model to create (see engine.semantic.scratch.SIZES) and how it reads text."""

    size: str = "demo"
    text_units: str = "chars"  # chars | phonemes (espeak-ng IPA of the TTS input; ASR still writes text)
    espeak_voice: str = "en-us"
    family: str = "speechgpt_gen"
    max_positions: int = 1024  # RoPE positions the model is built for (>= data.max_tokens)


@dataclass
class ScratchDataSpec:
    """How records become batches."""

    batch_tokens: int = 4096  # padded tokens (longest record x count) per micro-batch and device
    max_tokens: int = 1024  # longer records (prompt + response) are left out
    valid_fraction: float = 0.01  # of the utterances (both of an utterance's records go to one side)
    # share of the ASR records trained on (a seeded subset; TTS records always all): below 1 spends more
    # of a small budget on TTS, the harder direction (an ASR record costs as many tokens as a TTS one but
    # carries a loss on only its ~60 text tokens)
    asr_fraction: float = 1.0


@dataclass
class ScratchTrainConfig:
    """A training YAML (assets/configs/train/llm_demo.yaml). ``train.batch_frames`` and
    ``train.max_frames`` are not used here: ``data.batch_tokens`` / ``data.max_tokens`` are."""

    model: ScratchModelSpec = field(default_factory=ScratchModelSpec)
    data: ScratchDataSpec = field(default_factory=ScratchDataSpec)
    train: TrainConfig = field(default_factory=TrainConfig)
    # continue a saved model folder (OUT/final, or the shipped assets/models/demo/semantic): its weights
    # and tokenizer, a fresh optimiser and schedule. Size, text units and family must match the YAML.
    init_from: str = ""
    # allow init_from a model trained on another codec's units (e.g. demo codec v2 -> v3): the text side
    # and the prompt format carry over, the unit tokens (same ids, new meaning) are learnt again
    init_other_codec: bool = False


def read_instruction_records(path: str | Path) -> list[dict]:
    """The records of a ``build-data`` JSONL (each with ``prompt``, ``response``, ``task``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no instruction data at {path}; build it with `python -m engine train-llm build-data --codes DIR --out {path}`")
    records = []
    for n, rec in read_jsonl(path):
        try:
            rec["prompt"], rec["response"]
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{path} line {n}: not an instruction record with prompt and response ({exc})") from exc
        records.append(rec)
    if not records:
        raise ValueError(f"{path} holds no records")
    return records


def check_text_units(records: list[dict], text_units: str, path: str | Path) -> None:
    """Refuse data built with another text representation than the model's."""
    found = {r.get("text_units") for r in records if r.get("text_units")}
    other = sorted(found - {text_units})
    if other:
        raise ValueError(f"{path} was built with text_units {', '.join(other)} but the model reads {text_units}; rebuild it with "
                         f"`python -m engine train-llm build-data --codes DIR --text-units {text_units}` or set model.text_units")


def record_alphabet(records: list[dict], family: str) -> str:
    """Every character of the records outside the family's special and unit tokens (sorted)."""
    fam = prompt_family(family)
    unit = re.compile(re.escape(fam.units.prefix) + r"\d+" + re.escape(fam.units.suffix))
    chars: set[str] = set()
    for r in records:
        text = unit.sub("", r["prompt"] + r["response"])
        for token in fam.special_tokens:
            text = text.replace(token, "")
        chars.update(text)
    return "".join(sorted(chars))


def subsample_task(records: list[dict], task: str, fraction: float, seed: int) -> list[dict]:
    """``records`` with only a seeded ``fraction`` of those whose ``task`` is ``task`` (order kept)."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"data.{task}_fraction must be between 0 and 1, got {fraction}")
    if fraction >= 1.0:
        return records
    idx = [i for i, r in enumerate(records) if r.get("task") == task]
    keep = set(random.Random(seed).sample(idx, int(round(len(idx) * fraction))))
    return [r for i, r in enumerate(records) if r.get("task") != task or i in keep]


def split_records(records: list[dict], valid_fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """Training and validation records, split by utterance id (records without one: by position)."""
    keys = sorted({str(r.get("id", i)) for i, r in enumerate(records)})
    random.Random(seed).shuffle(keys)
    n_valid = min(int(round(len(keys) * valid_fraction)), max(len(keys) - 1, 0)) if valid_fraction > 0 else 0
    if valid_fraction > 0 and n_valid == 0 and len(keys) > 1:
        n_valid = 1
    valid_keys = set(keys[:n_valid])
    train, valid = [], []
    for i, r in enumerate(records):
        (valid if str(r.get("id", i)) in valid_keys else train).append(r)
    return train, valid


class TokenizedRecords(torch.utils.data.Dataset):
    """Records as token ids and labels (-100 on the prompt), those of at most ``max_tokens``."""

    def __init__(self, records: list[dict], tokenizer, max_tokens: int):
        self.items: list[tuple[list[int], list[int]]] = []
        self.too_long = 0
        for rec in records:
            ids, labels = encode_record(tokenizer, rec["prompt"], rec["response"], max_tokens + 1)
            if len(ids) > max_tokens:
                self.too_long += 1
                continue
            self.items.append((ids, labels))

    def __len__(self) -> int:
        return len(self.items)

    def lengths(self) -> list[int]:
        return [len(ids) for ids, _ in self.items]

    def __getitem__(self, i: int) -> tuple[list[int], list[int]]:
        return self.items[i]


def collate_tokens(pad_id: int):
    """(ids, labels) pairs -> input_ids / labels / attention_mask [B, T] (right padding) and lengths [B]."""

    def fn(items: list[tuple[list[int], list[int]]]) -> dict[str, Tensor]:
        lengths = torch.tensor([len(ids) for ids, _ in items])
        n = int(lengths.max())
        ids = torch.full((len(items), n), pad_id, dtype=torch.long)
        labels = torch.full((len(items), n), -100, dtype=torch.long)
        for i, (a, b) in enumerate(items):
            ids[i, : len(a)] = torch.tensor(a)
            labels[i, : len(b)] = torch.tensor(b)
        mask = (torch.arange(n)[None] < lengths[:, None]).long()
        return {"input_ids": ids, "labels": labels, "attention_mask": mask, "lengths": lengths}

    return fn


def lm_loss(model, batch: dict) -> tuple[Tensor, dict]:
    """Next-token cross-entropy on the response tokens."""
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"], use_cache=False)
    return out.loss, {}


def load_or_build_tokenizer(out: Path, records: list[dict], family: str, resume: bool):
    """``OUT/tokenizer`` when resuming a run that has one, else a new character tokenizer for
    ``records`` (saved there, so that every later ``--resume`` sees the same ids)."""
    from transformers import AutoTokenizer

    folder = out / TOKENIZER_DIR
    if resume and (folder / "tokenizer.json").is_file():
        return AutoTokenizer.from_pretrained(folder)
    tokenizer = build_char_tokenizer(family, record_alphabet(records, family))
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(folder)
    return tokenizer


def init_tokenizer(folder: str | Path, out: Path):
    """The tokenizer of the model that ``init_from`` continues (same ids), copied to ``OUT/tokenizer``."""
    from transformers import AutoTokenizer

    if not (Path(folder) / "tokenizer.json").is_file():
        raise FileNotFoundError(f"init_from: {folder} holds no tokenizer.json; point it at a trained model folder (RUN/final)")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.save_pretrained(out / TOKENIZER_DIR)
    return tokenizer


def load_init(model, folder: str | Path, other_codec: bool = False) -> None:
    """The weights of the saved model in ``folder`` into ``model`` (built from the YAML and the same
    tokenizer): a different size, vocabulary, text units or family is refused with what differs, and
    units of another codec unless ``other_codec``."""
    from transformers import LlamaForCausalLM

    saved = LlamaForCausalLM.from_pretrained(folder, torch_dtype=torch.float32)
    keys = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
            "num_key_value_heads", "max_position_embeddings", "text_units", "speech_family", "speech_codec")
    differ = [k for k in keys if getattr(model.config, k, None) != getattr(saved.config, k, None)
              and not (k == "speech_codec" and other_codec)]
    if differ:
        raise ValueError(f"init_from {folder}: its model differs from the training config in {differ}; "
                         "use the same model settings (model.size, model.text_units, model.family), or train a new model"
                         + (" (units of another codec: set init_other_codec: true)" if differ == ["speech_codec"] else ""))
    if getattr(model.config, "speech_codec", None) != getattr(saved.config, "speech_codec", None):
        log.info("init_from %s: its units were %s's, the data's are %s's; the unit tokens are learnt again",
                 folder, saved.config.speech_codec, model.config.speech_codec)
    model.load_state_dict(saved.state_dict())
    log.info("initialised from %s", folder)


def train_scratch(run: ScratchTrainConfig, data: str | Path, out_dir: str | Path, resume: bool = False, progress: bool = True) -> list[dict]:
    """Train a from-scratch LLaMA on the JSONL ``data``; export to ``out_dir/final`` (model,
    tokenizer, ``training.json``); returns the logged history."""
    spec, ds, tc = run.model, run.data, run.train
    scratch_size(spec.size)  # a clear error before any work
    if spec.text_units not in TEXT_UNITS:
        raise ValueError(f"unknown model.text_units {spec.text_units!r}; use {' or '.join(TEXT_UNITS)}")
    if ds.max_tokens > spec.max_positions:
        raise ValueError(f"data.max_tokens ({ds.max_tokens}) exceeds model.max_positions ({spec.max_positions})")
    out = Path(out_dir)
    records = read_instruction_records(data)
    check_text_units(records, spec.text_units, data)
    codecs = sorted({str(r["codec"]) for r in records if r.get("codec")})
    if run.init_from:
        tokenizer = init_tokenizer(run.init_from, out)
    else:
        tokenizer = load_or_build_tokenizer(out, records, spec.family, resume)
    train_recs, valid_recs = split_records(records, ds.valid_fraction, tc.seed)
    train_recs = subsample_task(train_recs, "asr", ds.asr_fraction, tc.seed)
    train_set = TokenizedRecords(train_recs, tokenizer, ds.max_tokens)
    if train_set.too_long:
        log.warning("%d training record(s) longer than data.max_tokens=%d are left out", train_set.too_long, ds.max_tokens)
    if not len(train_set):
        raise ValueError(f"no training record of {data} fits in data.max_tokens={ds.max_tokens}")
    sampler = LengthBucketSampler(train_set.lengths(), ds.batch_tokens, seed=tc.seed, bucket_width=32)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    train_loader = torch.utils.data.DataLoader(train_set, batch_sampler=sampler, collate_fn=collate_tokens(pad), num_workers=tc.num_workers,
                                               generator=torch.Generator().manual_seed(tc.seed))
    valid_loader = None
    if valid_recs:
        valid_set = TokenizedRecords(valid_recs, tokenizer, ds.max_tokens)
        if len(valid_set):
            vs = LengthBucketSampler(valid_set.lengths(), ds.batch_tokens, shuffle=False, bucket_width=32)
            valid_loader = torch.utils.data.DataLoader(valid_set, batch_sampler=vs, collate_fn=collate_tokens(pad))
    frontend = TextFrontEnd(spec.text_units, spec.espeak_voice)
    model = build_scratch_model(spec.size, tokenizer, spec.max_positions, seed=tc.seed, speech_family=spec.family,
                                speech_codec=codecs[0] if len(codecs) == 1 else None, **frontend.config_fields())
    if run.init_from and not (resume and any((out / "checkpoints").glob("step-*"))):
        load_init(model, run.init_from, other_codec=run.init_other_codec)
    n_params = count_parameters(model)
    log.info("scratch:%s: %.2f M parameters, %d tokens in the vocabulary, %d training / %d validation records",
             spec.size, n_params / 1e6, len(tokenizer), len(train_set), len(valid_recs))
    about = {"size": spec.size, "parameters": n_params, "text_units": spec.text_units, "family": spec.family, "codec": codecs,
             "data": str(data), "train_records": len(train_set), "valid_records": len(valid_recs), "vocab": len(tokenizer),
             "config": dataclasses.asdict(run)}

    def export(m, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        m.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        (folder / "training.json").write_text(json.dumps(about, indent=2, default=str))

    trainer = Trainer(model, train_loader, valid_loader, tc, out, lm_loss, export_fn=export,
                      run_config={**{f"model.{k}": v for k, v in dataclasses.asdict(spec).items()},
                                  **{f"data.{k}": v for k, v in dataclasses.asdict(ds).items()}, "parameters": n_params})
    if resume and not trainer.resume():
        log.warning("--resume: no checkpoint in %s, starting from scratch", out)
    return trainer.fit(progress=progress)
