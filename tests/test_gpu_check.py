"""bench/gpu_check.sh --dry-run: the prepared GPU check runs end to end on CPU with shrunken models, so the
script cannot rot before a GPU machine runs it."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_gpu_check_dry_run_writes_every_figure(tmp_path):
    out = tmp_path / "figures.json"
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [str(ROOT / "bench" / "gpu_check.sh"), "--dry-run", "--out", str(out)],
        cwd=tmp_path,  # the script finds the repository itself
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures["mode"].startswith("dry-run")
    judges = figures["judges"]
    for kind, key in (("clap", "similarity"), ("asr", "cer"), ("whisper", "nll"), ("whisper", "reward")):
        d = judges[kind][key]
        assert d["max_abs_diff"] >= 0 and d["spread_std_fp32"] >= 0, (kind, d)
    assert 0 <= judges["asr"]["frame_argmax_agreement"] <= 1
    run = figures["grpo_transformers"]
    assert run["steps"] == figures["steps"] and run["step_s"] > 0 and run["generation_s"] > 0
    assert set(run["rewards_s"]) >= {"style", "cer", "whisper_nll", "acoustic"}
    assert 0 < run["reward_share"] < 1 and run["backward_optimizer_s"] > 0
    assert "seconds per step" in proc.stdout and "fp32 vs bf16" in proc.stdout
