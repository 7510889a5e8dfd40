"""Training of the demo codec (SpeechTokenizer's recipe at demo scale) on a `demo corpus` folder.

Losses (they live here, not with the model):
- mel reconstruction: L1 between the decoder's vocoder mel and the mel of the input resampled to
  22.05 kHz (the frozen HiFi-GAN turns that mel into a waveform, so no waveform GAN is trained);
- semantic distillation: 1 - cosine similarity between a projection of the RVQ-1 output and the
  Whisper tiny.en encoder's features of the same frames (SpeechTokenizer's "D-axis" loss, with
  Whisper as the teacher): RVQ-1 is pushed to carry content, leaving the voice to RVQ-2..8;
- RVQ commitment.
Quantiser dropout (a random number of layers in some batches) teaches the decoder to decode RVQ-1
alone, so that ``codec --layers 1`` gives speech with the content and an average voice.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from engine.melcodec.config import MelCodecConfig
from engine.melcodec.features import LogMel
from engine.melcodec.model import MelCodecModel, init_codebooks
from engine.train.teacher import TeacherCache
from engine.train.trainer import TrainConfig, Trainer

log = logging.getLogger(__name__)


@dataclass
class CodecLossConfig:
    mel: float = 1.0
    semantic: float = 1.0
    commit: float = 1.0
    quantizer_dropout: float = 0.3  # share of batches decoded from a random number (1..8) of layers
    rvq1_share: float = 0.0  # of those batches, the share decoded from RVQ-1 alone (the rest: uniform 1..8)


@dataclass
class CodecTrainConfig:
    model: MelCodecConfig = field(default_factory=MelCodecConfig)
    loss: CodecLossConfig = field(default_factory=CodecLossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    segment_frames: int = 100  # 2 s crops
    batch_size: int = 16
    # which training-split utterances are used, by a stable hash of the id (so the choice of each
    # utterance never changes when the corpus grows): hash < valid_fraction -> validation,
    # then the next train_fraction -> training
    valid_fraction: float = 0.005
    train_fraction: float = 1.0


# ---------------------------------------------------------------------- data
@dataclass
class Utterance:
    id: str
    path: Path
    frames: int


def read_corpus(corpus: str | Path, split: str = "train") -> list[Utterance]:
    """Utterances of one split of a ``python -m engine demo corpus`` folder (extraction's reader and
    split rules: a training row never names a held-out voice or sentence)."""
    from engine.train.extract import corpus_manifest_path, read_corpus_rows, select_split

    base = corpus_manifest_path(corpus).parent
    rows, _ = select_split(read_corpus_rows(base), split)
    return [Utterance(str(r["id"]), base / r["path"], int(-(-round(float(r["duration"]) * 16000) // 320))) for r in rows]


class SegmentDataset(torch.utils.data.Dataset):
    """Random 2 s crops: 16 kHz audio, the same audio at 22.05 kHz, teacher features, a frame mask."""

    def __init__(self, utterances: list[Utterance], teacher: TeacherCache, cfg: MelCodecConfig, segment_frames: int,
                 random_crop: bool = True, seed: int = 0):
        self.utts = [u for u in utterances if u.id in teacher]
        if len(self.utts) < len(utterances):
            log.warning("%d utterances have no teacher features and are skipped", len(utterances) - len(self.utts))
        self.teacher = teacher
        self.cfg = cfg
        self.frames = segment_frames
        self.random_crop = random_crop
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.utts)

    def __getitem__(self, i: int) -> dict:
        import soundfile as sf
        import soxr

        utt = self.utts[i]
        feats = self.teacher.features(utt.id)
        hop, T = self.cfg.hop_length, self.frames
        total = min(utt.frames, feats.shape[0])
        start = 0
        if self.random_crop and total > T:
            rng = np.random.default_rng((self.seed, self.epoch, i))
            start = int(rng.integers(0, total - T + 1))
        wav, sr = sf.read(utt.path, start=start * hop, frames=T * hop, dtype="float32", always_2d=True)
        wav = wav.mean(1)
        if sr != self.cfg.sample_rate:
            raise ValueError(f"{utt.path} is {sr} Hz; the corpus must be {self.cfg.sample_rate} Hz")
        n = min(wav.size // hop, total - start, T)
        audio = np.zeros(T * hop, dtype=np.float32)
        audio[: n * hop] = wav[: n * hop]
        teacher = np.zeros((T, feats.shape[1]), dtype=np.float32)
        teacher[:n] = feats[start : start + n]
        mask = np.zeros(T, dtype=np.float32)
        mask[:n] = 1.0
        audio22 = soxr.resample(audio, self.cfg.sample_rate, self.cfg.vocoder_sample_rate).astype(np.float32)
        return {"wav": torch.from_numpy(audio), "wav22": torch.from_numpy(audio22), "teacher": torch.from_numpy(teacher),
                "mask": torch.from_numpy(mask)}


def collate(items: list[dict]) -> dict:
    n22 = min(it["wav22"].numel() for it in items)
    return {"wav": torch.stack([it["wav"] for it in items]), "wav22": torch.stack([it["wav22"][:n22] for it in items]),
            "teacher": torch.stack([it["teacher"] for it in items]), "mask": torch.stack([it["mask"] for it in items]),
            "lengths": torch.stack([it["mask"].sum().long() for it in items])}


# ---------------------------------------------------------------------- losses
class CodecLoss:
    """``(model, batch) -> (loss, logs)`` for the trainer."""

    def __init__(self, cfg: MelCodecConfig, weights: CodecLossConfig, seed: int = 0):
        self.cfg = cfg
        self.w = weights
        self.mel = LogMel(cfg.vocoder_sample_rate, cfg.vocoder_n_fft, cfg.vocoder_hop, cfg.vocoder_n_mels, cfg.vocoder_fmax)
        self.rng = np.random.default_rng(seed)

    def __call__(self, model: MelCodecModel, batch: dict) -> tuple[Tensor, dict]:
        wav, mask = batch["wav"], batch["mask"]  # [B, S], [B, T]
        n_q = model.n_q
        if model.training and self.rng.random() < self.w.quantizer_dropout:
            n_q = 1 if self.rng.random() < self.w.rvq1_share else int(self.rng.integers(1, model.n_q + 1))
        latent = model.encoder(wav[:, None])  # [B, D, T]
        quantized, _codes, commit, layers = model.quantizer(latent, n_q=n_q, layers=[0])
        mel_pred = model.decoder.mel(quantized)  # [B, 80, M]
        self.mel.to(wav.device)
        target = self.mel(batch["wav22"])[..., : mel_pred.shape[-1]]  # [B, 80, M]
        mel_mask = F.interpolate(mask[:, None], size=mel_pred.shape[-1], mode="nearest")  # [B, 1, M]
        mel_l1 = ((mel_pred - target).abs() * mel_mask).sum() / (mel_mask.sum() * mel_pred.shape[1]).clamp(min=1)
        sem = model.semantic_head(layers[0].transpose(1, 2))  # [B, T, 384]
        cos = F.cosine_similarity(sem, batch["teacher"].to(sem.dtype), dim=-1)  # [B, T]
        sem_loss = ((1 - cos) * mask).sum() / mask.sum().clamp(min=1)
        loss = self.w.mel * mel_l1 + self.w.semantic * sem_loss + self.w.commit * commit
        return loss, {"mel_l1": mel_l1.detach(), "semantic_cos": 1 - sem_loss.detach(), "commit": commit.detach(), "n_q": n_q}


# ---------------------------------------------------------------------- entry
def teacher_dir(corpus: str | Path) -> Path:
    from engine.train.teacher import TEACHER_NAME

    return Path(corpus) / "teacher" / TEACHER_NAME


def ensure_teacher(corpus: str | Path, utterances: list[Utterance], progress: bool = True) -> TeacherCache:
    """Teacher features of ``utterances``, computed once (resumable) and cached in ``CORPUS/teacher/``."""
    import soundfile as sf

    from engine.train.teacher import build_teacher_cache

    utts = sorted(utterances, key=lambda u: (u.frames, u.id))  # batches of similar length share a window

    def loader(path: Path):
        return lambda: sf.read(path, dtype="float32", always_2d=True)[0].mean(1)

    return build_teacher_cache(((u.id, loader(u.path)) for u in utts), teacher_dir(corpus), progress=progress)


def id_hash(uid: str) -> float:
    """A stable number in [0, 1) for an utterance id."""
    import hashlib

    return int(hashlib.sha1(uid.encode("utf-8")).hexdigest()[:8], 16) / 2**32


def select_utterances(run: CodecTrainConfig, corpus: str | Path) -> tuple[list[Utterance], list[Utterance]]:
    """(train, valid) utterances of the corpus's training split, chosen by ``id_hash``."""
    utts = read_corpus(corpus, "train")
    if not utts:
        raise ValueError(f"{corpus} has no training utterances")
    lo, hi = run.valid_fraction, run.valid_fraction + run.train_fraction
    valid = [u for u in utts if id_hash(u.id) < lo]
    train = [u for u in utts if lo <= id_hash(u.id) < hi]
    if not train:
        raise ValueError(f"no training utterances selected from {corpus}; raise train_fraction")
    return train, valid


def seed_codebooks(model: MelCodecModel, dataset: SegmentDataset, batch_frames: int, utterances: int = 128, seed: int = 0) -> None:
    """k-means initialisation of the codebooks from the (untrained) encoder's output on some crops."""
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(dataset), size=min(utterances, len(dataset)), replace=False)
    with torch.no_grad():
        latents = []
        for i in picks:
            item = dataset[int(i)]
            n = int(item["mask"].sum())
            latents.append(model.encoder(item["wav"][None, None])[0, :, :n].t())  # [n, D]
    init_codebooks(model, torch.cat(latents), batch_frames, seed=seed)


def train_codec(run: CodecTrainConfig, corpus: str | Path, out_dir: str | Path, resume: bool = False, progress: bool = True) -> list[dict]:
    """Train and export to ``out_dir/final`` (config.json + model.safetensors)."""
    train, valid = select_utterances(run, corpus)
    teacher = ensure_teacher(corpus, train + valid, progress=progress)
    tc = run.train
    train_set = SegmentDataset(train, teacher, run.model, run.segment_frames, seed=tc.seed)
    valid_set = SegmentDataset(valid, teacher, run.model, run.segment_frames, random_crop=False)
    train_loader = torch.utils.data.DataLoader(train_set, batch_size=run.batch_size, shuffle=True, drop_last=True, collate_fn=collate,
                                               num_workers=tc.num_workers, persistent_workers=tc.num_workers > 0,
                                               generator=torch.Generator().manual_seed(tc.seed))
    valid_loader = torch.utils.data.DataLoader(valid_set, batch_size=run.batch_size, collate_fn=collate) if len(valid_set) else None
    torch.manual_seed(tc.seed)
    model = MelCodecModel(run.model)
    loss = CodecLoss(run.model, run.loss, seed=tc.seed)
    if not (resume and any(Path(out_dir, "checkpoints").glob("step-*"))):
        seed_codebooks(model, train_set, run.batch_size * run.segment_frames, seed=tc.seed)
    trainer = Trainer(model, train_loader, valid_loader, tc, out_dir, loss,
                      export_fn=lambda m, folder: m.save_pretrained(folder),
                      run_config={"codec": run.model.name, "corpus": str(corpus), **{f"model.{k}": v for k, v in dataclasses.asdict(run.model).items()}})
    if resume and not trainer.resume():
        log.warning("--resume: no checkpoint in %s, starting from scratch", out_dir)
    return trainer.fit(progress=progress)
