"""Training of the demo codec (SpeechTokenizer's recipe at demo scale) on a `demo corpus` folder.

Losses (they live here, not with the model):
- mel reconstruction: L1 between the decoder's vocoder mel and the mel of the input resampled to
  22.05 kHz (the frozen HiFi-GAN turns that mel into a waveform, so no waveform GAN is trained);
- semantic distillation: 1 - cosine similarity between a projection of the RVQ-1 output and the
  Whisper tiny.en encoder's features of the same frames (SpeechTokenizer's "D-axis" loss, with
  Whisper as the teacher): RVQ-1 is pushed to carry content, leaving the voice to RVQ-2..8;
- RVQ commitment;
- phonemes (codec v2, ``loss.phoneme_ctc``): CTC between a linear head on RVQ-1 and the espeak-ng
  phonemes of the transcript (engine.train.phonemes), so that each RVQ-1 code stands for a phoneme.
  CTC needs whole utterances, so these runs batch whole utterances by length (``batching:
  utterances``) instead of 2 s crops;
- fit (codec v3, ``loss.semantic_fit``): RVQ-1 is computed from Whisper's features, and this pulls
  its input towards the mel encoder's latent (mean squared error relative to the latent's power),
  so that RVQ-1 is the phonetic part of the latent and RVQ-2..8 quantise a small residual.
Codec v3 trains in two phases (``trainable``): ``semantic`` (the Whisper adapter and RVQ-1 with
the phoneme and fit losses; nothing is decoded) and then ``acoustic`` (mel encoder, decoder and
RVQ-2..8 with RVQ-1 frozen).
Decoder adaptation (``trainable: decoder`` with ``adapt``): the decoder also learns to decode what
the flow model generates for each utterance (frame-aligned, engine.train.decoder_inputs), beside the
codec's own quantised latent; the codes stay exactly as they are. ``trainable: generator`` with
``adapt`` (istft codecs) trains a copy of the mel decoder and istft head that way, against the
waveform, and exports only it: the decoder adapted to that flow model, kept in the model's folder.
Quantiser dropout (a random number of layers in some batches) teaches the decoder to decode RVQ-1
alone, so that ``codec --layers 1`` gives speech with the content and an average voice.
"""

from __future__ import annotations

import contextlib
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
from engine.melcodec.model import MelCodecModel, set_codebooks
from engine.train.decoder_inputs import AdaptConfig, build_decoder_inputs
from engine.train.teacher import TeacherCache
from engine.train.trainer import TrainConfig, Trainer

log = logging.getLogger(__name__)

# ``trainable`` phases that train only decoding: encoder and codebooks frozen, so the codes stay exactly as they are
DECODER_PHASES = ("decoder", "wave", "generator")
# ``trainable`` phases scored on the istft head's waveform (model.vocoder: istft) instead of the vocoder mel
WAVE_PHASES = ("wave", "generator")


@dataclass
class CodecLossConfig:
    mel: float = 1.0
    semantic: float = 1.0
    commit: float = 1.0
    quantizer_dropout: float = 0.3  # share of batches decoded from a random number (1..8) of layers
    rvq1_share: float = 0.0  # of those batches, the share decoded from RVQ-1 alone (the rest: uniform 1..8)
    phoneme_ctc: float = 0.0  # weight of the RVQ-1 phoneme CTC loss (needs batching: utterances)
    semantic_fit: float = 0.0  # v3: weight of RVQ-1's input fitted to the mel encoder's latent


@dataclass
class CodecTrainConfig:
    model: MelCodecConfig = field(default_factory=MelCodecConfig)
    loss: CodecLossConfig = field(default_factory=CodecLossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    segment_frames: int = 100  # 2 s crops
    batch_size: int = 16
    # crops: batch_size random crops of segment_frames; utterances: whole utterances batched by length,
    # padded size (longest x count) within batch_frames, utterances longer than max_frames left out
    batching: str = "crops"
    batch_frames: int = 1600
    max_frames: int = 600
    # continue from a saved codec folder (config.json + model.safetensors), e.g. codec v1 for v2;
    # its architecture must match ``model`` (a phoneme head missing from it starts fresh)
    init_from: str = ""
    # all: the whole codec; decoder: only the decoder (encoder, codebooks and heads frozen, so the codes
    # of a continued codec stay exactly as they were and models trained on them stay valid).
    # v3 (semantic_source: whisper) only: semantic: the Whisper adapter, RVQ-1 and the phoneme head
    # (nothing is decoded); acoustic: mel encoder, decoder and RVQ-2..8, RVQ-1 frozen.
    # wave (model.vocoder: istft): only the istft head, on the frozen decoder's hidden state, against
    # the recording's waveform (multi-scale mel loss); codes and mel decoder stay exactly as they were.
    # generator (model.vocoder: istft): the mel decoder and the istft head together, with wave's loss
    # (with adapt: the decoder for generated embeddings); codes stay exactly as they were
    trainable: str = "all"
    # RVQ layers (1-based) seeded afresh by k-means when a run starts from init_from (e.g. RVQ-2..8 after
    # the semantic phase moved RVQ-1); every layer is when init_from's RVQ-1 came from another source
    reseed: list[int] = field(default_factory=list)
    # which training-split utterances are used, by a stable hash of the id (so the choice of each
    # utterance never changes when the corpus grows): hash < valid_fraction -> validation,
    # then the next train_fraction -> training
    valid_fraction: float = 0.005
    train_fraction: float = 1.0
    # trainable: decoder (or wave / generator) only: teach the decoder to decode the flow model's output too
    # (engine.train.decoder_inputs; off while adapt.codes is empty). With generator, the run's final/ is the
    # trained decoder alone (codec_decoder.safetensors), for the flow model's folder
    adapt: AdaptConfig = field(default_factory=AdaptConfig)


# ---------------------------------------------------------------------- data
@dataclass
class Utterance:
    id: str
    path: Path
    frames: int
    text: str = ""


def read_corpus(corpus: str | Path, split: str = "train") -> list[Utterance]:
    """Utterances of one split of a ``python -m engine demo corpus`` folder (extraction's reader and
    split rules: a training row never names a held-out voice or sentence)."""
    from engine.train.extract import corpus_manifest_path, read_corpus_rows, select_split

    base = corpus_manifest_path(corpus).parent
    rows, _ = select_split(read_corpus_rows(base), split)
    return [Utterance(str(r["id"]), base / r["path"], int(-(-round(float(r["duration"]) * 16000) // 320)), str(r.get("text", "")))
            for r in rows]


class SegmentDataset(torch.utils.data.Dataset):
    """Random 2 s crops: 16 kHz audio, the same audio at 22.05 kHz, teacher features, a frame mask;
    with ``given`` (decoder adaptation) also the same frames of a perceptual model's output [T, D],
    and only the utterances that have one."""

    def __init__(self, utterances: list[Utterance], teacher: TeacherCache, cfg: MelCodecConfig, segment_frames: int,
                 random_crop: bool = True, seed: int = 0, given: TeacherCache | None = None):
        self.utts = [u for u in utterances if u.id in teacher]
        if len(self.utts) < len(utterances):
            log.warning("%d utterances have no teacher features and are skipped", len(utterances) - len(self.utts))
        if given is not None:
            self.utts = [u for u in self.utts if u.id in given]
        self.given = given
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
        item = {"wav": torch.from_numpy(audio), "wav22": torch.from_numpy(audio22), "teacher": torch.from_numpy(teacher),
                "mask": torch.from_numpy(mask)}
        if self.given is not None:
            out = self.given.features(utt.id)  # [frames, D]
            given = np.zeros((T, out.shape[1]), dtype=np.float32)
            m = max(min(n, out.shape[0] - start), 0)
            given[:m] = out[start : start + m]
            item["given"] = torch.from_numpy(given)
        return item


class UtteranceDataset(torch.utils.data.Dataset):
    """Whole utterances (for the phoneme CTC loss): 16 kHz audio, 22.05 kHz audio, teacher features,
    phoneme ids (when ``phonemes`` is given; utterances without any are then left out). Batched by ``LengthBucketSampler`` over ``lengths``; ``collate`` pads."""

    def __init__(self, utterances: list[Utterance], teacher: TeacherCache, cfg: MelCodecConfig,
                 phonemes: dict[str, list[int]] | None, max_frames: int):
        keep = [u for u in utterances if u.id in teacher and (phonemes is None or phonemes.get(u.id))]
        if len(keep) < len(utterances):
            log.warning("%d utterances have no teacher features or phonemes and are skipped", len(utterances) - len(keep))
        long = [u for u in keep if u.frames > max_frames]
        if long:
            log.info("%d utterances longer than %d frames are left out", len(long), max_frames)
        self.utts = [u for u in keep if u.frames <= max_frames]
        self.teacher = teacher
        self.cfg = cfg
        self.phonemes = phonemes
        self.lengths = [u.frames for u in self.utts]

    def __len__(self) -> int:
        return len(self.utts)

    def __getitem__(self, i: int) -> dict:
        import soundfile as sf
        import soxr

        utt = self.utts[i]
        hop = self.cfg.hop_length
        feats = self.teacher.features(utt.id)
        wav, sr = sf.read(utt.path, dtype="float32", always_2d=True)
        if sr != self.cfg.sample_rate:
            raise ValueError(f"{utt.path} is {sr} Hz; the corpus must be {self.cfg.sample_rate} Hz")
        n = min(-(-wav.shape[0] // hop), feats.shape[0])
        audio = np.zeros(n * hop, dtype=np.float32)
        m = min(wav.shape[0], n * hop)
        audio[:m] = wav[:m].mean(1)
        audio22 = soxr.resample(audio, self.cfg.sample_rate, self.cfg.vocoder_sample_rate).astype(np.float32)
        item = {"wav": torch.from_numpy(audio), "wav22": torch.from_numpy(audio22),
                "teacher": torch.from_numpy(np.ascontiguousarray(feats[:n], dtype=np.float32)), "mask": torch.ones(n)}
        if self.phonemes is not None:
            item["phonemes"] = torch.tensor(self.phonemes[utt.id], dtype=torch.long)
        return item


def _pad(tensors: list[Tensor], length: int) -> Tensor:
    out = tensors[0].new_zeros((len(tensors), length, *tensors[0].shape[1:]))
    for i, t in enumerate(tensors):
        out[i, : t.shape[0]] = t[:length]
    return out


def collate(items: list[dict]) -> dict:
    """Stack (crops) or zero-pad (whole utterances) a batch; ``phonemes`` are concatenated for CTC."""
    frames = max(it["mask"].numel() for it in items)
    hop = items[0]["wav"].numel() // max(items[0]["mask"].numel(), 1)
    n22 = max(it["wav22"].numel() for it in items)  # crops all have the same length: nothing is padded
    batch = {"wav": _pad([it["wav"] for it in items], frames * hop), "wav22": _pad([it["wav22"] for it in items], n22),
             "teacher": _pad([it["teacher"] for it in items], frames), "mask": _pad([it["mask"] for it in items], frames),
             "lengths": torch.stack([it["mask"].sum().long() for it in items])}
    if "given" in items[0]:
        batch["given"] = _pad([it["given"] for it in items], frames)
    if "phonemes" in items[0]:
        batch["phonemes"] = torch.cat([it["phonemes"] for it in items])
        batch["phoneme_lengths"] = torch.tensor([it["phonemes"].numel() for it in items], dtype=torch.long)
    return batch


# ---------------------------------------------------------------------- losses
class CodecLoss:
    """``(model, batch) -> (loss, logs)`` for the trainer."""

    def __init__(self, cfg: MelCodecConfig, weights: CodecLossConfig, seed: int = 0, trainable: str = "all", given_share: float = 0.0):
        from engine.train.wave_loss import MultiScaleMelLoss

        self.cfg = cfg
        self.w = weights
        self.trainable = trainable
        self.given_share = given_share  # decoder adaptation: items decoded from batch["given"] (training)
        self.mel = LogMel(cfg.vocoder_sample_rate, cfg.vocoder_n_fft, cfg.vocoder_hop, cfg.vocoder_n_mels, cfg.vocoder_fmax)
        on_wave = trainable in WAVE_PHASES
        if on_wave and cfg.vocoder != "istft":
            raise ValueError(f"trainable: {trainable} trains the istft head: set model.vocoder: istft")
        self.wave = MultiScaleMelLoss(cfg.sample_rate) if on_wave else None
        self.metric = "wave_l1" if on_wave else "mel_l1"  # what the decoder's loss is logged as
        self.rng = np.random.default_rng(seed)

    def __call__(self, model: MelCodecModel, batch: dict) -> tuple[Tensor, dict]:
        wav, mask = batch["wav"], batch["mask"]  # [B, S], [B, T]
        phase = self.trainable
        n_q = model.n_q
        if model.training and self.rng.random() < self.w.quantizer_dropout:
            n_q = 1 if self.rng.random() < self.w.rvq1_share else int(self.rng.integers(1, model.n_q + 1))
        # frozen parts in eval mode: that stops the codebooks' EMA updates
        frozen_codes = phase in DECODER_PHASES
        frozen_encoder = frozen_codes or phase == "semantic"
        if frozen_encoder:
            model.encoder.eval()
        if frozen_codes:
            model.quantizer.eval()
        if phase == "semantic":
            n_q = 1  # nothing is decoded: RVQ-1 alone
        if phase == "acoustic":
            model.quantizer.vq.layers[0].eval()
        with torch.no_grad() if frozen_encoder else contextlib.nullcontext():
            latent = model.encoder(wav[:, None])  # [B, D, T]
        with torch.no_grad() if frozen_codes else contextlib.nullcontext():
            quantized, _codes, commit, rvq1, semantic_in = model.quantize(latent, batch["teacher"], n_q=n_q)
        loss = quantized.new_zeros(())
        logs: dict = {"n_q": n_q}
        if "given" in batch and frozen_codes:
            return self.adapt_loss(model, quantized, batch, logs)
        if phase != "semantic":
            dec = self.decode_loss(model, quantized, batch)
            loss = loss + self.w.mel * dec
            logs[self.metric] = dec.detach()
        if frozen_codes:
            return loss, logs
        loss = loss + self.w.commit * commit
        logs["commit"] = commit.detach()
        if model.semantic_head is not None:  # v1 / v2: distillation towards the teacher
            sem = model.semantic_head(rvq1.transpose(1, 2))  # [B, T, 384]
            cos = F.cosine_similarity(sem, batch["teacher"].to(sem.dtype), dim=-1)  # [B, T]
            sem_loss = ((1 - cos) * mask).sum() / mask.sum().clamp(min=1)
            loss = loss + self.w.semantic * sem_loss
            logs["semantic_cos"] = 1 - sem_loss.detach()
        if semantic_in is not None and self.w.semantic_fit > 0 and phase != "acoustic":
            target = latent.detach()
            err = ((semantic_in - target).pow(2).mean(1) * mask).sum() / mask.sum().clamp(min=1)  # per frame, mean over D
            fit = err / (target.pow(2).mean(1) * mask).sum().div(mask.sum().clamp(min=1)).clamp(min=1e-8)
            loss = loss + self.w.semantic_fit * fit
            logs["fit"] = fit.detach()
        if self.w.phoneme_ctc > 0 and "phonemes" in batch and phase != "acoustic":
            ctc, per = self.phoneme_loss(model, rvq1, batch)
            loss = loss + self.w.phoneme_ctc * ctc
            logs["phoneme_ctc"] = ctc.detach()
            if per is not None:
                logs["phoneme_error"] = per
        return loss, logs

    def adapt_loss(self, model: MelCodecModel, quantized: Tensor, batch: dict, logs: dict) -> tuple[Tensor, dict]:
        """Decoder adaptation: in training, a random ``given_share`` of the items is decoded from the
        perceptual model's output instead of the codec's quantised latent; in validation both are
        scored on every item (``mel_l1``: the codec's own codes, ``mel_l1_given``: the flow output)."""
        given = batch["given"].to(quantized.dtype).transpose(1, 2)  # [B, T, D] -> [B, D, T]
        if model.training:
            use = torch.from_numpy(self.rng.random(given.shape[0]) < self.given_share).to(given.device)  # [B]
            dec = self.decode_loss(model, torch.where(use[:, None, None], given, quantized), batch)
            logs[self.metric] = dec.detach()
            logs["given_items"] = float(use.float().mean())
            return self.w.mel * dec, logs
        own, from_given = self.decode_loss(model, quantized, batch), self.decode_loss(model, given, batch)
        logs[self.metric], logs[f"{self.metric}_given"] = float(own.detach()), float(from_given.detach())  # plain floats: validation metrics
        return self.w.mel * ((1 - self.given_share) * own + self.given_share * from_given), logs

    def decode_loss(self, model: MelCodecModel, quantized: Tensor, batch: dict) -> Tensor:
        """The decoder's loss on ``quantized`` [B, D, T]: the vocoder mel's L1, or (``trainable: wave`` /
        ``generator``) the istft head's waveform against the recording (multi-scale mel; for ``wave`` the
        frozen mel decoder runs without gradients)."""
        if self.wave is None:
            return self.mel_loss(model, quantized, batch)
        with torch.no_grad() if self.trainable == "wave" else contextlib.nullcontext():
            hidden = model.decoder.mel.hidden(quantized)  # [B, T, C]
        pred = model.decoder.wave(hidden)[:, 0]  # [B, S]
        self.wave.to(pred.device)
        mask = batch["mask"].repeat_interleave(self.cfg.hop_length, dim=1)[:, : pred.shape[-1]]  # [B, S]
        return self.wave(pred, batch["wav"][:, : pred.shape[-1]], mask)

    def mel_loss(self, model: MelCodecModel, quantized: Tensor, batch: dict) -> Tensor:
        """L1 between the decoder's vocoder mel of ``quantized`` [B, D, T] and the input's, on real frames."""
        mel_pred = model.decoder.mel(quantized)  # [B, 80, M]
        self.mel.to(quantized.device)
        target = self.mel(batch["wav22"])[..., : mel_pred.shape[-1]]  # [B, 80, M]
        mel_mask = F.interpolate(batch["mask"][:, None], size=mel_pred.shape[-1], mode="nearest")  # [B, 1, M]
        return ((mel_pred - target).abs() * mel_mask).sum() / (mel_mask.sum() * mel_pred.shape[1]).clamp(min=1)

    def phoneme_loss(self, model: MelCodecModel, rvq1: Tensor, batch: dict) -> tuple[Tensor, float | None]:
        """CTC of the phoneme head on RVQ-1 [B, D, T]; in evaluation also the greedy phoneme error rate."""
        from engine.train.phonemes import ctc_greedy, edit_distance

        if model.phoneme_head is None:
            raise ValueError("loss.phoneme_ctc > 0 needs a codec with a phoneme head (model.phonemes)")
        logits = model.phoneme_head(rvq1.transpose(1, 2)).float()  # [B, T, V]
        log_probs = logits.log_softmax(-1).transpose(0, 1)  # [T, B, V]
        ctc = F.ctc_loss(log_probs, batch["phonemes"], batch["lengths"], batch["phoneme_lengths"], blank=0,
                         reduction="mean", zero_infinity=True)
        per = None
        if not model.training:
            best = logits.argmax(-1).cpu()
            targets = batch["phonemes"].cpu().split(batch["phoneme_lengths"].cpu().tolist())
            errors = sum(edit_distance(ctc_greedy(best[i, : int(n)].tolist()), targets[i].tolist())
                         for i, n in enumerate(batch["lengths"].cpu()))
            per = errors / max(int(batch["phoneme_lengths"].sum()), 1)
        return ctc, per


# ---------------------------------------------------------------------- entry
def teacher_dir(corpus: str | Path) -> Path:
    from engine.melcodec.whisper import NAME

    return Path(corpus) / "teacher" / NAME


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


def seed_codebooks(model: MelCodecModel, dataset: SegmentDataset, batch_frames: int, utterances: int = 128, seed: int = 0,
                   reseed: list[int] | None = None) -> None:
    """Codebooks from the encoder's output on some crops: the RVQ layers in ``reseed`` (1-based; None:
    all) by k-means, the others keep their codes and get their EMA statistics rebuilt."""
    latents, whisper = _encoder_latents(model, dataset, utterances, seed)
    layers = range(1, model.n_q + 1) if reseed is None else reseed
    set_codebooks(model, latents, batch_frames, reseed=[i + 1 in layers for i in range(model.n_q)], whisper=whisper, seed=seed)


def phoneme_targets(run: CodecTrainConfig, corpus: str | Path, utterances: list[Utterance]) -> dict[str, list[int]]:
    """Phoneme ids of every utterance's transcript; fills ``run.model.phonemes`` from them when empty."""
    from engine.train.phonemes import build_inventory, encode_ipa, ensure_phonemes

    ipa = ensure_phonemes(corpus, {u.id: u.text for u in utterances if u.text})
    if not run.model.phonemes:
        run.model.phonemes = build_inventory(ipa.values())
        log.info("phoneme inventory: %d symbols", len(run.model.phonemes))
    return {uid: encode_ipa(text, run.model.phonemes) for uid, text in ipa.items()}


def export_adapted_decoder(run: CodecTrainConfig):
    """The export of ``trainable: generator`` with ``adapt``: only the trained mel decoder and istft head,
    as ``codec_decoder.safetensors`` for the folder of the flow model whose outputs it learnt to decode
    (the codec itself is unchanged, so resynthesis keeps its own decoder)."""
    from engine.melcodec.model import save_decoder
    from engine.perceptual.flow_model import ADAPTED_DECODER_FILE

    def export(model: MelCodecModel, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_decoder(model.decoder, folder / ADAPTED_DECODER_FILE, run.model.name,
                     adapted_to=" ".join([f"profile={run.adapt.profile}", *run.adapt.overrides]), init_from=str(run.init_from))
        return folder

    return export


def load_init(model: MelCodecModel, folder: str | Path) -> bool:
    """Weights of a saved codec into ``model`` (same architecture; a phoneme head it lacks starts
    fresh; a v1 / v2 codec continued as v3 gives its encoder, decoder and heads, and the Whisper
    adapter starts fresh; an istft head the saved codec lacks starts fresh). The codebooks' EMA statistics are not saved: rebuild them with
    ``seed_codebooks``. Returns whether the saved codec's RVQ-1 came from the same source."""
    from safetensors.torch import load_file

    from engine.melcodec.model import WEIGHTS_FILE, _TRAINING_BUFFERS

    path = Path(folder) / WEIGHTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"init_from: {path} does not exist; point it at a codec folder (config.json + {WEIGHTS_FILE})")
    state = {k: v.float() for k, v in load_file(str(path)).items()}
    own = model.state_dict()
    shapes = [k for k, v in state.items() if k in own and own[k].shape != v.shape and not k.startswith("phoneme_head.")]
    if shapes:
        raise ValueError(f"init_from {folder}: architecture differs from the training config at {shapes[:3]}")
    state = {k: v for k, v in state.items() if not (k.startswith("phoneme_head.") and own.get(k, v).shape != v.shape)}
    same_source = any(k.startswith("semantic_adapter.") for k in state) == (model.semantic_adapter is not None)
    if not same_source:  # v1 / v2 -> v3: the distillation head has no place in v3, its adapter starts fresh
        state = {k: v for k, v in state.items() if not k.startswith("semantic_head.")}
    saved_wave_head = any(k.startswith("decoder.wave.") for k in state)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if k.rsplit(".", 1)[-1] not in _TRAINING_BUFFERS and not k.startswith("phoneme_head.")
               and not (k.startswith("semantic_adapter.") and not same_source)
               and not (k.startswith("decoder.wave.") and not saved_wave_head)]
    if missing or unexpected:
        raise ValueError(f"init_from {folder}: missing {missing[:3]}, unexpected {unexpected[:3]}")
    return same_source


def _encoder_latents(model: MelCodecModel, dataset, count: int = 256, seed: int = 0) -> tuple[Tensor, Tensor]:
    """The encoder's output frames [N, D] on ``count`` items of ``dataset``, and their teacher frames [N, 384]."""
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(dataset), size=min(count, len(dataset)), replace=False)
    latents, teacher = [], []
    with torch.no_grad():
        for i in picks:
            item = dataset[int(i)]
            n = int(item["mask"].sum())
            latents.append(model.encoder(item["wav"][None, None])[0, :, :n].t())
            teacher.append(item["teacher"][:n])
    return torch.cat(latents), torch.cat(teacher)


def adapt_utterances(run: CodecTrainConfig, train: list[Utterance], valid: list[Utterance]) -> list[Utterance]:
    """The utterances that get a flow output for decoder adaptation: ``adapt.fraction`` of the
    training ones (by ``id_hash``, so the choice is stable) and every validation one."""
    hi = run.valid_fraction + run.adapt.fraction * run.train_fraction
    return [u for u in train if id_hash(u.id) < hi] + valid


def decoder_inputs(run: CodecTrainConfig, train: list[Utterance], valid: list[Utterance], out_dir: str | Path,
                   progress: bool = True) -> TeacherCache:
    """The flow outputs that decoder adaptation trains on, built once in ``adapt.cache`` (default OUT/decoder_inputs)."""
    if run.trainable not in DECODER_PHASES:
        raise ValueError("adapt (decoder adaptation to a flow model's output) trains only the decoder: set trainable: decoder, wave or generator")
    if not run.init_from:
        raise ValueError("adapt continues a trained codec: set init_from to the folder of the codec that made adapt.codes")
    if run.batching != "crops":
        raise ValueError("adapt trains on 2 s crops: set batching: crops")
    if not 0.0 <= run.adapt.share <= 1.0 or not 0.0 < run.adapt.fraction <= 1.0:
        raise ValueError(f"adapt.share must be in [0, 1] and adapt.fraction in (0, 1], got {run.adapt.share} and {run.adapt.fraction}")
    folder = Path(run.adapt.cache or Path(out_dir) / "decoder_inputs")
    ids = [u.id for u in adapt_utterances(run, train, valid)]
    return build_decoder_inputs(run.adapt, ids, folder, run.model.name, progress=progress)


def train_codec(run: CodecTrainConfig, corpus: str | Path, out_dir: str | Path, resume: bool = False, progress: bool = True) -> list[dict]:
    """Train and export to ``out_dir/final`` (config.json + model.safetensors)."""
    from engine.train.codes_data import LengthBucketSampler

    if run.batching not in ("crops", "utterances"):
        raise ValueError(f"batching must be crops or utterances, got {run.batching!r}")
    if run.loss.phoneme_ctc > 0 and run.batching != "utterances":
        raise ValueError("loss.phoneme_ctc needs whole utterances: set batching: utterances")
    if run.trainable not in ("all", "decoder", "semantic", "acoustic", "wave", "generator"):
        raise ValueError(f"trainable must be all, decoder, semantic, acoustic, wave or generator, got {run.trainable!r}")
    if run.trainable in WAVE_PHASES and run.model.vocoder != "istft":
        raise ValueError(f"trainable: {run.trainable} trains the istft head: set model.vocoder: istft")
    if run.trainable in ("semantic", "acoustic") and run.model.semantic_source != "whisper":
        raise ValueError(f"trainable: {run.trainable} is a phase of codec v3: set model.semantic_source: whisper")
    if run.trainable in (*DECODER_PHASES, "acoustic") and not run.init_from and not resume:
        raise ValueError(f"trainable: {run.trainable} continues a trained codec: set init_from to its folder")
    if run.init_from and not run.model.phonemes:  # continuing a codec with a phoneme head keeps its inventory
        import json

        saved = Path(run.init_from) / "config.json"
        if saved.is_file():
            run.model.phonemes = list(json.loads(saved.read_text()).get("phonemes") or [])
    train, valid = select_utterances(run, corpus)
    teacher = ensure_teacher(corpus, train + valid, progress=progress)
    tc = run.train
    given = None
    if run.adapt.codes:
        given = decoder_inputs(run, train, valid, out_dir, progress=progress)
    if run.batching == "utterances":
        phonemes = phoneme_targets(run, corpus, train + valid) if run.loss.phoneme_ctc > 0 else None
        train_set = UtteranceDataset(train, teacher, run.model, phonemes, run.max_frames)
        valid_set = UtteranceDataset(valid, teacher, run.model, phonemes, run.max_frames)
        sampler = LengthBucketSampler(train_set.lengths, run.batch_frames, seed=tc.seed)
        train_loader = torch.utils.data.DataLoader(train_set, batch_sampler=sampler, collate_fn=collate, num_workers=tc.num_workers,
                                                   persistent_workers=tc.num_workers > 0)
        valid_loader = (torch.utils.data.DataLoader(valid_set, batch_sampler=LengthBucketSampler(valid_set.lengths, run.batch_frames, shuffle=False),
                                                    collate_fn=collate) if len(valid_set) else None)
    else:
        train_set = SegmentDataset(train, teacher, run.model, run.segment_frames, seed=tc.seed, given=given)
        valid_set = SegmentDataset(valid, teacher, run.model, run.segment_frames, random_crop=False, given=given)
        train_loader = torch.utils.data.DataLoader(train_set, batch_size=run.batch_size, shuffle=True, drop_last=True, collate_fn=collate,
                                                   num_workers=tc.num_workers, persistent_workers=tc.num_workers > 0,
                                                   generator=torch.Generator().manual_seed(tc.seed))
        valid_loader = torch.utils.data.DataLoader(valid_set, batch_size=run.batch_size, collate_fn=collate) if len(valid_set) else None
    torch.manual_seed(tc.seed)
    model = MelCodecModel(run.model)
    loss = CodecLoss(run.model, run.loss, seed=tc.seed, trainable=run.trainable, given_share=run.adapt.share if given is not None else 0.0)
    batch_frames = run.batch_frames if run.batching == "utterances" else run.batch_size * run.segment_frames
    if not (resume and any(Path(out_dir, "checkpoints").glob("step-*"))):
        crops = train_set if run.batching == "crops" else SegmentDataset(train, teacher, run.model, run.segment_frames, seed=tc.seed)
        if run.init_from:
            same_source = load_init(model, run.init_from)
            seed_codebooks(model, crops, batch_frames, utterances=256, seed=tc.seed, reseed=run.reseed if same_source else None)
        else:
            seed_codebooks(model, crops, batch_frames, seed=tc.seed)
    trained = {"decoder": ("decoder.",), "semantic": ("semantic_adapter.", "phoneme_head."),
               "acoustic": ("encoder.", "decoder."), "wave": ("decoder.wave.",), "generator": ("decoder.mel.", "decoder.wave.")}.get(run.trainable)
    if trained is not None:
        for name, param in model.named_parameters():
            param.requires_grad_(name.startswith(trained))
    trainer = Trainer(model, train_loader, valid_loader, tc, out_dir, loss,
                      export_fn=export_adapted_decoder(run) if run.trainable == "generator" and given is not None else lambda m, folder: m.save_pretrained(folder),
                      run_config={"codec": run.model.name, "corpus": str(corpus), **{f"model.{k}": v for k, v in dataclasses.asdict(run.model).items()}})
    if resume and not trainer.resume():
        log.warning("--resume: no checkpoint in %s, starting from scratch", out_dir)
    return trainer.fit(progress=progress)
