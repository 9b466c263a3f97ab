"""Learning demonstration: ONE LoRA learns two styles whose acoustic targets are opposite (tiny, CPU).

    python -m training.learning_demo --out runs/learning-demo [--steps 120] [--samples 16]

Two styles are trained together with the ``acoustic`` reward through the real pipeline
(``training/recipes/tiny.yaml``, TRL's GRPOTrainer, the AudioCache and its guards): ``voiced``
(voiced_fraction in [0.85, 1]) and ``whisper`` (voiced_fraction in [0, 0.4], like the catalog's
whispering). Then base and adapter are compared on HELD-OUT texts with fixed seeds and several samples per
prompt: the mean reward per style, and the measured voiced fraction, which must move up for ``voiced`` and
down for ``whisper`` from the same adapter.

Why voicing and not loudness or pitch: the tiny random XCodec2 twin has no loudness to steer (measured:
every code decodes to -46.0..-45.3 dBFS, random code sequences to -45.56 +- 0.06 dBFS) and pYIN finds
no real pitch in its noise (medians sit on the 50 Hz search floor). Its voicing, though, varies a lot
(random code sequences: 0.72 +- 0.28; a repeated code: ~1.0), and which codes the policy writes decides
it, so it is a property the policy can move in either direction. Speaking rate (the end token) moves too,
but its targets put a cliff (the truncation guard) right behind the slow side. Numbers from tiny models
prove the learning mechanics, never speech or style quality.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

RECIPE = Path(__file__).resolve().parent / "recipes" / "tiny.yaml"
# The two styles: name -> (descriptions, target range of FIELD). The first description is the phrase.
FIELD = "voiced_fraction"
STYLES: dict[str, tuple[tuple[str, ...], tuple[float, float]]] = {
    "voiced": (("a clear voiced speaker", "a resonant voice", "a singing tone"), (0.85, 1.0)),
    "whisper": (("a breathy whisper", "someone whispering", "a hushed voice"), (0.0, 0.4)),
}


def styles_yaml(styles=None, field=None) -> str:
    """The demo's catalog. A short prompt template: the description is most of the prompt, so the
    2-layer random policy "sees" it."""
    styles = styles or STYLES
    field = field or FIELD
    lines = [
        "# Two styles with opposite acoustic targets, for the learning demonstration (training/learning_demo.py).",
        "prompt:",
        '  user: "{style}<|TEXT_UNDERSTANDING_START|>{text}<|TEXT_UNDERSTANDING_END|>"',
        '  style: "{description}: "',
        '  assistant: "<|SPEECH_GENERATION_START|>"',
        "styles:",
    ]
    for name, (descriptions, (lo, hi)) in styles.items():
        lines += [
            f"  - name: {name}",
            f"    phrase: {descriptions[0]}",
            f"    descriptions: [{', '.join(descriptions)}]",
            "    targets:",
            f"      {field}: [{lo}, {hi}]",
        ]
    return "\n".join(lines) + "\n"


# Short texts: rollouts of 0.1-1.9 s. Held-out texts are never trained on.
TRAIN_TEXTS = (
    "hello",
    "good night",
    "thank you",
    "come here",
    "well done",
    "all right",
    "okay",
    "goodbye",
    "welcome",
    "sunshine",
    "not now",
    "see you",
    "red car",
    "big dog",
    "blue sky",
    "cold tea",
)
HELDOUT_TEXTS = ("warm bread", "green tree", "good luck", "old book")

# Training settings on top of the tiny recipe (each chosen for a short CPU run; see the module doc).
DEMO_OVERRIDES: dict[str, Any] = {
    "rewards": ["acoustic"],  # the property under test; the other judges add time, not signal, on noise
    "reward_weights": [1.0],  # one reward
    "learning_rate": 3e-3,  # 1e-2 collapses the tiny policy into never ending (all rollouts truncated)
    "lr_scheduler_type": "constant",  # no decay: the run is short
    "warmup_steps": 0,  # no warm-up: the run is short
    "beta": 0.1,  # KL to the base: keeps the policy ending its rollouts; without it an all-truncated batch
    # (every reward 0, no advantage) can become a state GRPO never leaves
    "loss_type": "grpo",  # each rollout counts once whatever its length: voiced rollouts are longer
    "num_generations": 8,  # 8 rollouts per prompt: a usable spread of voicing in every group
    "per_device_train_batch_size": 16,  # 2 prompts x 8 rollouts per step
    "gradient_accumulation_steps": 1,  # one micro-batch per step
    "shuffle_dataset": False,  # rows alternate voiced/whisper per text: every step contrasts the two styles
    "max_completion_length": 128,  # ~2.6 s: room for long voiced rollouts (96 truncated too many), still cheap
    "temperature": 1.0,  # sample as evaluated
    "duration_guard": False,  # the demo texts are 1-2 words: any rollout length is plausible
    "logging_steps": 5,  # per-style curves in style_metrics.jsonl
    "save_strategy": "no",  # a demo: no checkpoints
    "samples_every": 0,  # no audio samples
}
EVAL_SEED = 1234  # fixed sampling seed: base and adapter see the same prompts and seeds


def write_demo_data(folder: Path) -> tuple[Path, Path]:
    """The two-style catalog and a train/test prompt dataset (parquet, loadable by load_dataset)."""
    from datasets import Dataset

    from stylegrpo.styles import load_catalog

    folder.mkdir(parents=True, exist_ok=True)
    styles_path = folder / "styles.yaml"
    styles_path.write_text(styles_yaml())
    catalog = load_catalog(styles_path)
    data = folder / "prompts" / "data"
    data.mkdir(parents=True, exist_ok=True)
    for split, texts in (("train", TRAIN_TEXTS), ("test", HELDOUT_TEXTS)):
        rows = []
        for k, text in enumerate(texts):
            for j, style in enumerate(catalog):
                description = style.descriptions[(k + j) % len(style.descriptions)]
                prompt = catalog.template.render(text, description)
                rows.append({"prompt": prompt, "text": text, "style": style.name, "description": description})
        Dataset.from_list(rows).to_parquet(str(data / f"{split}-00000-of-00001.parquet"))
    return styles_path, folder / "prompts"


def train(out: Path, styles_path: Path, dataset: Path, steps: int, **overrides: Any) -> Path:
    """Run `stylegrpo train` on the tiny recipe with the demo settings; returns the adapter folder."""
    from .cli import parse_config
    from .grpo import main

    settings = {
        **DEMO_OVERRIDES,
        "styles": str(styles_path),
        "dataset_path": str(dataset),
        "max_steps": steps,
        "output_dir": str(out / "run"),
        **overrides,
    }
    script_args, training_args, model_args, recipe = parse_config(RECIPE, settings)
    return main(script_args, training_args, model_args, recipe=recipe, overwrite=True)


def evaluate(
    adapter: Path | None,
    styles_path: Path,
    texts: tuple[str, ...],
    *,
    samples: int,
    max_new_tokens: int,
    temperature: float,
    seed: int = EVAL_SEED,
    check_duration: bool = False,
) -> dict[str, dict[str, float]]:
    """Per style, over texts x samples rollouts: mean acoustic reward, mean measured FIELD, guard share."""
    from stylegrpo.llasa import generate, load_policy
    from stylegrpo.presets import get_preset
    from stylegrpo.styles import load_catalog

    from .rewards import AcousticReward, AudioCache, GuardSettings, Judges, RewardContext

    preset = get_preset("tiny")
    catalog = load_catalog(styles_path)
    model, tokenizer = load_policy(preset.policy, "cpu", adapter=adapter)
    prompts, rows = [], []
    for style in catalog:
        for text in texts:
            for _ in range(samples):
                prompts.append(catalog.prompt(text, style.name))
                rows.append((style.name, text))
    gens = generate(
        model,
        tokenizer,
        prompts,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        seed=seed,
        batch_size=64,
    )
    guards = GuardSettings(check_duration=check_duration)  # the guards of training (duration off in the demo)
    cache = AudioCache(preset.codec, tokenizer, max_completion_length=max_new_tokens, guards=guards)
    judges = Judges(clap=preset.clap, asr=preset.asr, whisper=preset.whisper)
    reward = AcousticReward(RewardContext(cache, judges, catalog))
    styles = [s for s, _ in rows]
    rewards = reward(completion_ids=[g.token_ids for g in gens], text=[t for _, t in rows], style=styles)
    batch = cache.last
    measures = batch.memo.get("acoustic", [])
    measured = np.full(len(rows), np.nan)
    for m, i in zip(measures, batch.valid, strict=True):
        measured[i] = getattr(m, FIELD)
    out: dict[str, dict[str, float]] = {}
    for style in catalog.names:
        idx = [i for i, s in enumerate(styles) if s == style]
        out[style] = {
            "reward": float(np.mean([rewards[i] for i in idx])),
            FIELD: float(np.nanmean(measured[idx])) if np.isfinite(measured[idx]).any() else math.nan,
            "guarded": float(np.mean([batch.flags[i] is not None for i in idx])),
            "codes": float(np.mean([len(batch.codes[i]) for i in idx])),
        }
    return out


def run(out: Path, *, steps: int = 120, samples: int = 16, **overrides: Any) -> dict[str, Any]:
    """Train, then compare base and adapter on held-out prompts. Returns the figures (also saved as JSON)."""
    out = Path(out)
    styles_path, dataset = write_demo_data(out / "data")
    adapter = train(out, styles_path, dataset, steps, **overrides)
    settings = {**DEMO_OVERRIDES, **overrides}
    kw = dict(
        samples=samples,
        max_new_tokens=settings["max_completion_length"],
        temperature=settings["temperature"],
        check_duration=settings["duration_guard"],
    )
    base = evaluate(None, styles_path, HELDOUT_TEXTS, **kw)
    tuned = evaluate(adapter, styles_path, HELDOUT_TEXTS, **kw)
    figures = {
        "steps": steps,
        "samples_per_prompt": samples,
        "heldout_texts": list(HELDOUT_TEXTS),
        "field": FIELD,
        "targets": {name: list(rng) for name, (_, rng) in STYLES.items()},
        "base": base,
        "adapter": tuned,
    }
    (out / "learning_figures.json").write_text(json.dumps(figures, indent=2))
    return figures


def format_figures(figures: dict[str, Any]) -> str:
    field = figures.get("field", FIELD)
    lines = [
        f"held-out prompts: {len(figures['heldout_texts'])} texts x {figures['samples_per_prompt']} samples per style, "
        f"after {figures['steps']} steps (tiny random models: mechanics, not quality)",
        f"{'style':<8} {'reward base':>12} {'reward adapter':>15} {field + ' base':>22} {field + ' adapter':>25}  target",
    ]
    for style in figures["base"]:
        b, a = figures["base"][style], figures["adapter"][style]
        lo, hi = figures["targets"][style]
        lines.append(
            f"{style:<8} {b['reward']:>12.3f} {a['reward']:>15.3f} {b[field]:>22.3f} {a[field]:>25.3f}  [{lo:g}, {hi:g}]"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/learning-demo"), help="work folder (replaced)")
    parser.add_argument("--steps", type=int, default=120, help="GRPO steps (default: %(default)s)")
    parser.add_argument(
        "--samples", type=int, default=16, help="samples per held-out prompt (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    figures = run(args.out, steps=args.steps, samples=args.samples)
    print(format_figures(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
