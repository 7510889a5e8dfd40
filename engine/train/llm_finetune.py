"""Fine-tuning a LLaMA-family LM on the instruction data (transformers Trainer; full or LoRA).

The tokenizer is extended with the family's special and unit tokens and the embeddings resized;
the loss is masked to the response. Launch with ``accelerate launch`` (DeepSpeed ZeRO / FSDP
configs in assets/configs/accelerate/) to scale to many GPUs.
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
    seed: int = 0
    logging_steps: int = 10
    save_steps: int = 500


class InstructionDataset(torch.utils.data.Dataset):
    """prompt + response tokens; labels -100 on the prompt (and on padding)."""

    def __init__(self, path: str | Path, tokenizer, max_length: int):
        self.items = []
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            rec = json.loads(line)
            bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
            p = bos + tokenizer(rec["prompt"], add_special_tokens=False).input_ids
            r = tokenizer(rec["response"], add_special_tokens=False).input_ids
            ids = (p + r)[:max_length]
            labels = ([-100] * len(p) + r)[:max_length]
            if any(l != -100 for l in labels):
                self.items.append((ids, labels))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        ids, labels = self.items[i]
        return {"input_ids": ids, "labels": labels}


def collate(pad_id: int):
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
        tokenizer = AutoTokenizer.from_pretrained(cfg.model)
        model = AutoModelForCausalLM.from_pretrained(cfg.model, dtype=torch.bfloat16 if cfg.bf16 else torch.float32)
    added = extend_tokenizer(tokenizer, cfg.family)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if added:
        model.resize_token_embeddings(len(tokenizer))
        log.info("added %d tokens (special + units) to the vocabulary", added)
    return model, tokenizer


def finetune(cfg: FinetuneConfig, data: str | Path, out: str | Path) -> list[dict]:
    """Train and save model + tokenizer to ``out`` (loadable with semantic.path=out); returns the log history."""
    from transformers import Trainer, TrainingArguments

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
        report_to=[], remove_unused_columns=False, lr_scheduler_type="cosine", use_cpu=not torch.cuda.is_available(),
        disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=collate(tokenizer.pad_token_id))
    trainer.train()
    if cfg.lora:
        model = model.merge_and_unload()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    history = trainer.state.log_history
    Path(out, "train_history.json").write_text(json.dumps(history, indent=1))
    return history
