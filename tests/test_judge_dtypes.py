"""Judge dtypes: Parakeet and Whisper NLL default to fp32 (like CLAP); recipes choose per judge."""

from pathlib import Path

import torch

from stylegrpo.scorers.asr import ASR_DTYPE, AsrScorer
from stylegrpo.scorers.clap import ClapScorer
from stylegrpo.scorers.whisper_nll import WHISPER_DTYPE, WhisperNllScorer
from stylegrpo.training.cli import parse_config
from stylegrpo.training.rewards import Judges

RECIPES = Path(__file__).resolve().parent.parent / "training" / "recipes"
CPU = {"use_cpu": True, "bf16": False}


def test_defaults_are_fp32_and_explicit_dtypes_win():
    assert ASR_DTYPE == WHISPER_DTYPE == "float32"
    for cls in (AsrScorer, WhisperNllScorer, ClapScorer):
        assert cls("tiny:x").dtype == torch.float32  # auto -> the judge's own default (no model loaded)
        assert cls("tiny:x", dtype="bfloat16").dtype == torch.bfloat16


def test_recipe_keys_reach_the_judges():
    script_args, _, _, _ = parse_config(RECIPES / "llasa-1b-24gb-vllm.yaml", CPU)
    assert (script_args.asr_dtype, script_args.whisper_dtype) == ("float32", "bfloat16")
    judges = Judges(
        clap="tiny:clap",
        asr="tiny:parakeet",
        whisper="tiny:whisper",
        asr_dtype=script_args.asr_dtype,
        whisper_dtype=script_args.whisper_dtype,
    )
    assert judges.asr.dtype == torch.float32 and judges.whisper.dtype == torch.bfloat16
    assert judges.clap.dtype == torch.float32
    auto = Judges(clap="tiny:clap", asr="tiny:parakeet", whisper="tiny:whisper", asr_dtype="auto")
    assert auto.asr.dtype == torch.float32 and auto.whisper.dtype == torch.float32
