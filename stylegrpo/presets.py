"""Named model sets (presets), device and dtype choice: the one place the default model stack is written.

``tiny`` is the offline twin of every model (random weights, CPU, seconds); ``llasa-1b`` (the default),
``llasa-3b`` and ``llasa-8b`` are the real hub stacks of DESIGN.md. Commands take ``--preset`` and may
override single models (``--policy``, ``--codec``, ...) through :func:`add_model_arguments`.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import StyleGRPOError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

# The real judges, shared by every Llasa size (all transformers-native, see DESIGN.md).
_CODEC = "HKUSTAudio/xcodec2-hf"  # transformers' native XCodec2: the codec Llasa was trained with
_CLAP = "laion/larger_clap_general"  # LAION CLAP trained on general audio incl. speech descriptions
_ASR = "nvidia/parakeet-ctc-1.1b"  # strong English CTC ASR in transformers format
_WHISPER = "openai/whisper-large-v3-turbo"  # fast Whisper for the teacher-forced NLL reward
_WAVLM = "microsoft/wavlm-base-plus-sv"  # WavLM x-vector speaker verification: the speaker judge

# Llasa's inference budget is max_length 2048 tokens, prompt included; 1536 new tokens (about 30 s of
# speech at 50 tokens/s) leaves room for a long prompt inside it and is ample for a sentence.
_REAL_MAX_NEW_TOKENS = 1536


@dataclass(frozen=True)
class Preset:
    """A named set of model specs (hub ids, folders or ``tiny:KIND``) and the defaults that go with them."""

    name: str
    policy: str
    codec: str
    clap: str
    asr: str
    whisper: str
    max_new_tokens: int  # generation cap for `say`/eval (tokens; 50 tokens = 1 s of speech)
    batch_size: int  # prompts generated together
    random_weights: bool = False  # True for tiny twins: output is noise, numbers prove plumbing only
    description: str = ""
    wavlm: str = _WAVLM  # the speaker judge (speaker reward, eval's similarity to the reference speaker)

    def with_overrides(self, **specs: str | None) -> Preset:
        """A copy with some model specs replaced (``None`` values are ignored)."""
        changes = {k: v for k, v in specs.items() if v is not None}
        unknown = set(changes) - set(MODEL_FIELDS)
        if unknown:
            raise StyleGRPOError(
                f"unknown model field(s) {', '.join(sorted(unknown))}; known: {MODEL_FIELDS}"
            )
        return dataclasses.replace(self, **changes) if changes else self


MODEL_FIELDS: tuple[str, ...] = ("policy", "codec", "clap", "asr", "whisper", "wavlm")


def _llasa(size: str, *, batch_size: int, description: str) -> Preset:
    """A real preset: Llasa of this size with the default codec and judges."""
    return Preset(
        name=f"llasa-{size.lower()}",
        policy=f"HKUSTAudio/Llasa-{size}",
        codec=_CODEC,
        clap=_CLAP,
        asr=_ASR,
        whisper=_WHISPER,
        max_new_tokens=_REAL_MAX_NEW_TOKENS,
        batch_size=batch_size,
        description=description,
    )


PRESETS: dict[str, Preset] = {
    "tiny": Preset(
        name="tiny",
        policy="tiny:llasa",
        codec="tiny:xcodec2",
        clap="tiny:clap",
        asr="tiny:parakeet",
        whisper="tiny:whisper",
        wavlm="tiny:wavlm-sv",
        max_new_tokens=150,  # 3 s of (noise) audio: keeps CPU runs and tests to seconds
        batch_size=8,  # tiny models: batching is cheap on CPU
        random_weights=True,
        description="offline twins of every model with random weights (CPU, seconds; sound is noise)",
    ),
    "llasa-1b": _llasa(
        "1B",
        batch_size=8,  # 1B in bf16 with 8 x 2048 KV cache fits a 24 GB GPU
        description="Llasa-1B with the default judges (fits a 24 GB GPU for LoRA GRPO)",
    ),
    "llasa-3b": _llasa(
        "3B",
        batch_size=4,  # 3B: a smaller generation batch keeps the KV cache within a 40 GB GPU
        description="Llasa-3B with the default judges",
    ),
    "llasa-8b": _llasa(
        "8B",
        batch_size=2,  # 8B: 16 GB of bf16 weights; keep the KV cache small
        description="Llasa-8B with the default judges (80 GB-class GPU)",
    ),
}
DEFAULT_PRESET = "llasa-1b"  # the real model users want; `--preset tiny` for offline runs


def get_preset(name: str | Preset) -> Preset:
    """The preset called ``name``; an unknown name raises StyleGRPOError listing the known ones."""
    if isinstance(name, Preset):
        return name
    try:
        return PRESETS[name]
    except KeyError:
        raise StyleGRPOError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}") from None


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``auto`` -> the first CUDA GPU if there is one, else CPU; ``cpu``, ``cuda``, ``cuda:N`` checked."""
    import torch

    if isinstance(device, torch.device):
        return device
    spec = (device or "auto").strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(spec)
    except (RuntimeError, ValueError):
        raise StyleGRPOError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise StyleGRPOError(
                f"device {device!r} asked for, but no CUDA GPU is available; use --device cpu"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise StyleGRPOError(
                f"device {device!r}: only {torch.cuda.device_count()} CUDA GPU(s) (cuda:0..) are available"
            )
    elif dev.type != "cpu":
        raise StyleGRPOError(f"unsupported device {device!r}; use auto, cpu, cuda or cuda:N")
    return dev


def default_dtype(device: str | torch.device) -> torch.dtype:
    """bf16 on GPUs that support it (half the memory, Llasa's training dtype); fp32 elsewhere.

    GPUs without bf16 get fp32 rather than fp16: fp16 Llama activations can overflow, and correctness
    beats speed there.
    """
    import torch

    dev = resolve_device(device) if not isinstance(device, torch.device) else device
    if dev.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


# Tiny twins are far too small to gain from intra-op threads; on a busy CPU extra threads only spin and
# contend (measured: tiny generation 0.2 s with 1 thread vs 6-9 s with 2 on a loaded 2-core machine).
TINY_CPU_THREADS = 1


def tune_cpu_threads(preset: Preset, device: str | torch.device) -> None:
    """For the tiny preset on CPU, use TINY_CPU_THREADS torch threads (call it from CLI runs, not libraries)."""
    import torch

    if preset.random_weights and resolve_device(device).type == "cpu":
        torch.set_num_threads(TINY_CPU_THREADS)


def add_model_arguments(
    parser: argparse.ArgumentParser,
    overrides: Sequence[str] = ("policy", "codec"),
    default_preset: str = DEFAULT_PRESET,
) -> None:
    """Add ``--preset`` and ``--device`` (and ``--policy``/``--codec``/... to override single models)."""
    parser.add_argument(
        "--preset",
        default=default_preset,
        choices=list(PRESETS),
        help=f"named model set (default: {default_preset}); 'tiny' runs offline with random weights",
    )
    parser.add_argument(
        "--device",
        default="auto",
        help="auto (a CUDA GPU when there is one, else CPU), cpu, cuda or cuda:N (default: auto)",
    )
    for field in overrides:
        if field not in MODEL_FIELDS:
            raise ValueError(f"unknown model field {field!r}; known: {MODEL_FIELDS}")
        parser.add_argument(
            f"--{field}",
            default=None,
            metavar="SPEC",
            help=f"override the preset's {field} model: hub id, local folder or tiny:KIND",
        )


def preset_from_args(args: argparse.Namespace) -> Preset:
    """The preset named by ``--preset`` with any ``--policy``/``--codec``/... overrides applied."""
    preset = get_preset(args.preset)
    return preset.with_overrides(**{f: getattr(args, f, None) for f in MODEL_FIELDS})
