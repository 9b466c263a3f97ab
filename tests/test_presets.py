"""Presets, device and dtype choice, and the shared --preset/--device arguments."""

import argparse

import pytest
import torch

from stylegrpo.errors import StyleGRPOError
from stylegrpo.presets import (
    DEFAULT_PRESET,
    PRESETS,
    add_model_arguments,
    default_dtype,
    get_preset,
    preset_from_args,
    resolve_device,
)
from stylegrpo.tiny import TINY_BUILDERS


def test_known_presets():
    assert set(PRESETS) >= {"tiny", "llasa-1b", "llasa-3b", "llasa-8b"}
    assert DEFAULT_PRESET == "llasa-1b"
    tiny = get_preset("tiny")
    assert tiny.random_weights
    for spec in (tiny.policy, tiny.codec, tiny.clap, tiny.asr, tiny.whisper):
        assert spec.startswith("tiny:") and spec[5:] in TINY_BUILDERS
    real = get_preset("llasa-1b")
    assert real.policy == "HKUSTAudio/Llasa-1B" and real.codec == "HKUSTAudio/xcodec2-hf"
    assert get_preset("llasa-8b").policy.endswith("Llasa-8B")
    assert not real.random_weights
    assert get_preset(real) is real


def test_unknown_preset_lists_names():
    with pytest.raises(StyleGRPOError, match="unknown preset 'llasa-2b'.*tiny, llasa-1b, llasa-3b, llasa-8b"):
        get_preset("llasa-2b")


def test_devices_and_dtypes():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda")
    assert default_dtype("cpu") == torch.float32
    with pytest.raises(StyleGRPOError, match="unknown device"):
        resolve_device("banana")
    if not torch.cuda.is_available():
        with pytest.raises(StyleGRPOError, match="no CUDA GPU"):
            resolve_device("cuda:0")


def test_model_arguments_and_overrides():
    parser = argparse.ArgumentParser()
    add_model_arguments(parser, overrides=("policy", "codec"))
    args = parser.parse_args(["--preset", "tiny", "--policy", "/tmp/my-llasa"])
    preset = preset_from_args(args)
    assert preset.name == "tiny" and preset.policy == "/tmp/my-llasa" and preset.codec == "tiny:xcodec2"
    assert preset_from_args(parser.parse_args([])).name == DEFAULT_PRESET
    with pytest.raises(SystemExit):
        parser.parse_args(["--preset", "nope"])
    with pytest.raises(StyleGRPOError, match="unknown model field"):
        get_preset("tiny").with_overrides(vocoder="x")
