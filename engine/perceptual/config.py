"""Configuration of the perceptual stage (import-light: dataclasses only)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class FlowConfig:
    """Continuous perceptual model: flow-matching Conformer (paper 3.3)."""

    path: str | None = None  # our folder (config.yaml + model.safetensors), an official folder, or a hub id
    # a second model, trained for the other chain, loaded when a request asks for that chain
    # (chain comparisons: `eval vc --chain implicit,explicit`); None: only `path`'s chain is served
    other_chain_path: str | None = None
    random_init: bool = False  # tiny profile: build a random model of `size` in code
    size: str = "base"  # tiny | base | large (used with random_init)
    seed: int = 0
    chain: str = "implicit"  # implicit | explicit
    steps: int = 16  # number of ODE steps (function evaluations per step depend on the solver)
    solver: str = "midpoint"  # euler | midpoint
    schedule: str = "uniform"  # uniform | sway (more steps near t = 0)
    guidance_scale: float = 0.0  # classifier-free guidance on the voice prompt; 0 disables
    temperature: float = 1.0  # std of the prior noise
    # snap the generated complete embedding onto the codec's codebooks before decoding: RVQ-1 stays the
    # given units exactly, RVQ-2..8 are the nearest residual codes of the rest (Codec.requantize), so the
    # decoder only ever sees embeddings of the kind it was trained on
    requantize: bool = False
    # decode this model's output with the codec decoder adapted to it (codec_decoder.safetensors in the
    # model's folder, trained on its outputs by `train-codec` with trainable: generator) where it has one;
    # false: the codec's own decoder, trained on sums of codebook vectors
    adapted_decoder: bool = True
    # network precision at inference: auto = bfloat16 on CUDA (float32 where the GPU lacks bf16), float32 on CPU.
    # The ODE state, the feature statistics and the rotary angles stay float32 whatever this says.
    dtype: str = "auto"  # auto | float32 | bfloat16 | float16
    # torch.compile of the network for lengths padded to buckets: auto = on CUDA only (CUDA graphs); on a
    # CPU it gains ~10 % per call after ~1.5 minutes of compiling per bucket (measured on 2 cores)
    compile: str = "auto"  # auto | on | off
    compile_bucket_frames: int = 250  # 5 s at 50 Hz
    # voice enrollment (engine/perceptual/enroll.py): before speaking in a voice, a copy of the model is
    # fine-tuned for this many Adam steps on that voice's prompt (once per voice, kept for the last
    # `enroll_cache` voices); 0 = the model as trained, for every voice
    enroll_steps: int = 0
    enroll_lr: float = 5.0e-5
    enroll_batch: int = 8
    enroll_params: str = "all"  # all | vectors (norm gains and biases only) | attention (the self-attention blocks)
    enroll_cache: int = 4  # enrolled voices kept in memory (at least 1: the voice speaking now), 24.6 MB each for the demo model


@dataclass
class SoundStormConfig:
    """Discrete perceptual baseline: MaskGIT Conformer over RVQ-2..8 (paper 5.4)."""

    path: str | None = "fnlp/AnyGPT-speech-modules"  # hub id or local folder
    filename: str = "soundstorm/speechtokenizer_soundstorm_mls.pt"
    random_init: bool = False
    size: str = "base"
    seed: int = 0
    steps: int | None = None  # MaskGIT iterations for RVQ-2; None: 3 for the public checkpoints (AnyGPT's vc_steps), 8 for ours
    greedy: bool = True
    temperature: float = 1.0  # sampling temperature when greedy is false
    mode: str | None = None  # decoding variant: soundstorm | anygpt | speechgpt_gen (None: the model's own)
    keep_prompt: bool = False  # public variants: True keeps the prompt's finer levels (ours); False = the public decode
    checkpoint_codec: str | None = None  # codec a public checkpoint was trained on (None: told by its path)


@dataclass
class PerceptualConfig:
    kind: str = "flow"  # flow | soundstorm
    prompt_seconds: float = 3.0  # voice prompt crop
    flow: FlowConfig = field(default_factory=FlowConfig)
    soundstorm: SoundStormConfig = field(default_factory=SoundStormConfig)
