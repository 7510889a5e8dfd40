"""Fine-tuning a LLaMA-family LM on the instruction data (transformers Trainer; full or LoRA).

The tokenizer is extended with the family's special and unit tokens and the embeddings resized
(new rows start at the mean of the old ones); each record's ``prompt + response`` is tokenized as
one string (exactly the text the model sees at inference) and the loss is masked to the response.
Launch with ``accelerate launch`` (DeepSpeed ZeRO / FSDP configs in assets/configs/accelerate/) to
scale to many GPUs; the Trainer picks the distributed setup up from the launcher.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from engine.semantic.tokenizer import build_tokenizer, extend_tokenizer

log = logging.getLogger(__name__)


@dataclass
class FinetuneConfig:
    model: str  # hub id / folder of a LLaMA-family LM, or "tiny" (random, for tests)
    family: str = "speechgpt_gen"
    epochs: float = 3.0
    max_steps: int = -1
    lr: float = 2e-5
    batch_size: int = 4
    grad_accum: int = 1
    max_length: int = 1024
    warmup_steps: int = 100
    lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    bf16: bool = False
    gradient_checkpointing: bool = False
    seed: int = 0
    logging_steps: int = 10
    save_steps: int = 500
    resume: bool = False


def encode_record(tokenizer, prompt: str, response: str, max_length: int) -> tuple[list[int], list[int]]:
    """Token ids of ``prompt + response`` (with BOS) and labels: -100 on the prompt's tokens."""
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    text = prompt + response
    try:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids, offsets = enc["input_ids"], enc["offset_mapping"]
        n_prompt = next((i for i, (_, end) in enumerate(offsets) if end > len(prompt)), len(ids))
    except NotImplementedError:  # a slow tokenizer without offsets: the prompt's own tokens as prefix
        ids = tokenizer(text, add_special_tokens=False).input_ids
        p = tokenizer(prompt, add_special_tokens=False).input_ids
        n_prompt = len(p) if ids[: len(p)] == p else len(p) - 1
    ids = bos + list(ids)
    labels = [-100] * (len(bos) + n_prompt) + ids[len(bos) + n_prompt :]
    return ids[:max_length], labels[:max_length]


class InstructionDataset(torch.utils.data.Dataset):
    """Records of a JSONL built by ``build-data``; items are ``{"input_ids", "labels"}``."""

    def __init__(self, path: str | Path, tokenizer, max_length: int):
        self.items = []
        skipped = 0
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            rec = json.loads(line)
            ids, labels = encode_record(tokenizer, rec["prompt"], rec["response"], max_length)
            if any(l != -100 for l in labels):
                self.items.append((ids, labels))
            else:
                skipped += 1
        if skipped:
            log.warning("%d record(s) skipped: the prompt alone fills max_length=%d", skipped, max_length)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        ids, labels = self.items[i]
        return {"input_ids": ids, "labels": labels}


def collate(pad_id: int):
    """Right-padding collator: input_ids [B, T], labels [B, T] (-100 on padding), attention_mask [B, T]."""

    def fn(batch: list[dict]) -> dict:
        n = max(len(b["input_ids"]) for b in batch)
        ids = torch.full((len(batch), n), pad_id)
        labels = torch.full((len(batch), n), -100)
        att = torch.zeros((len(batch), n), dtype=torch.long)
        for i, b in enumerate(batch):
            k = len(b["input_ids"])
            ids[i, :k] = torch.tensor(b["input_ids"])
            labels[i, :k] = torch.tensor(b["labels"])
            att[i, :k] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": att}

    return fn


def load_base(cfg: FinetuneConfig):
    """The base LM and its tokenizer, extended with the family's tokens."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    if cfg.model == "tiny":
        tokenizer = build_tokenizer(None)  # a plain text tokenizer, like a base LLaMA's
        torch.manual_seed(cfg.seed)
        model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                             num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=2048,
                                             bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id))
    else:
        try:
            tokenizer = AutoTokenizer.from_pretrained(cfg.model)
            model = AutoModelForCausalLM.from_pretrained(cfg.model, dtype=torch.bfloat16 if cfg.bf16 else torch.float32)
        except OSError as exc:
            raise OSError(f"cannot load the base model {cfg.model!r}: {exc}. Download it first (`hf download {cfg.model}`) or give a local folder") from exc
    added = extend_tokenizer(tokenizer, cfg.family)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0] or added:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
        log.info("added %d tokens (special + units) to the vocabulary", added)
    return model, tokenizer


def finetune(cfg: FinetuneConfig, data: str | Path, out: str | Path) -> list[dict]:
    """Train and save model + tokenizer to ``out`` (loadable with semantic.path=out); returns the log history."""
    from transformers import Trainer, TrainingArguments
    from transformers.trainer_utils import get_last_checkpoint

    model, tokenizer = load_base(cfg)
    if cfg.lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                                                 modules_to_save=["embed_tokens", "lm_head"], task_type="CAUSAL_LM"))
    dataset = InstructionDataset(data, tokenizer, cfg.max_length)
    if not len(dataset):
        raise ValueError(f"{data} holds no usable records")
    args = TrainingArguments(
        output_dir=str(out), num_train_epochs=cfg.epochs, max_steps=cfg.max_steps, learning_rate=cfg.lr,
        per_device_train_batch_size=cfg.batch_size, gradient_accumulation_steps=cfg.grad_accum, warmup_steps=cfg.warmup_steps,
        logging_steps=cfg.logging_steps, save_steps=cfg.save_steps, save_total_limit=2, bf16=cfg.bf16, seed=cfg.seed,
        gradient_checkpointing=cfg.gradient_checkpointing, report_to=[], remove_unused_columns=False, lr_scheduler_type="cosine",
        use_cpu=not torch.cuda.is_available(), disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=collate(tokenizer.pad_token_id))
    resume = get_last_checkpoint(str(out)) if cfg.resume and Path(out).is_dir() else None
    trainer.train(resume_from_checkpoint=resume)
    sharded = trainer.is_deepspeed_enabled or trainer.is_fsdp_enabled
    if cfg.lora and not sharded:
        if trainer.is_world_process_zero():
            trainer.model.merge_and_unload().save_pretrained(out)
    else:
        trainer.save_model(str(out))  # gathers DeepSpeed / FSDP shards (LoRA under them: the adapter)
    history = trainer.state.log_history
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(out)
        Path(out, "train_history.json").write_text(json.dumps(history, indent=1))
    return history
