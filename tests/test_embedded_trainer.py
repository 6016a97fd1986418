"""The embedded GRPO trainer: determinism, hyperparameter response, hooks, NeMo RL layout, script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from nemo_rl_sweep.trainers.embedded import train
from nemo_rl_sweep.trainers.embedded.grpo import group_advantages, kl_to_reference
from nemo_rl_sweep.trainers.embedded.nemo_rl_layout import CheckpointWriter, next_experiment_dir
from nemo_rl_sweep.trainers.embedded.optim import AdamW
from nemo_rl_sweep.trainers.embedded.settings import GRPOSettings, to_plain

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "conf" / "recipe" / "grpo_tiny.yaml"
ISSUE_KEYS = [
    "policy.optimizer.kwargs.lr",
    "policy.optimizer.kwargs.weight_decay",
    "policy.max_grad_norm",
    "loss_fn.reference_policy_kl_penalty",
    "loss_fn.ratio_clip_min",
    "loss_fn.ratio_clip_max",
    "grpo.num_prompts_per_step",
    "grpo.num_generations_per_prompt",
    "grpo.max_num_steps",
    "grpo.val_period",
    "grpo.seed",
    "policy.generation.temperature",
]


def recipe(**overrides: object):
    cfg = OmegaConf.load(RECIPE)
    cfg.merge_with_dotlist([f"{k}={v}" for k, v in overrides.items()])
    return cfg


def deterministic(metrics: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if not k.startswith("timing/")}


def test_recipe_has_every_key_the_issue_lists_and_the_nemo_rl_sections():
    cfg = OmegaConf.load(RECIPE)
    for key in ISSUE_KEYS:
        assert OmegaConf.select(cfg, key) is not None, key
    assert cfg.policy.optimizer.name == "torch.optim.AdamW"
    assert {"grpo", "loss_fn", "policy", "checkpointing", "logger", "cluster", "data"} <= set(cfg)
    assert RECIPE.read_text().startswith("# @package _global_")
    GRPOSettings.from_cfg(to_plain(cfg))  # every key reads and checks


def test_same_seed_same_numbers_and_dict_config_equals_plain_dict():
    cfg = recipe(**{"grpo.max_num_steps": 20})
    first = deterministic(train(cfg))
    second = deterministic(train(OmegaConf.to_container(cfg, resolve=True)))
    assert first == second
    other = deterministic(train(recipe(**{"grpo.max_num_steps": 20, "grpo.seed": 7})))
    assert other != first
    assert first["train/tokens_generated"] == 8 * 8 * 2
    assert first["train/total_tokens_generated"] == 20 * 8 * 8 * 2


def test_learning_rate_has_an_interior_optimum():
    accuracy = {
        lr: train(recipe(**{"policy.optimizer.kwargs.lr": lr}))["validation/accuracy"]
        for lr in (1e-4, 1e-2, 1e-1)
    }
    start = 1 / 64  # an untrained policy's chance of a right 2-digit answer
    assert accuracy[1e-2] >= 0.5, accuracy
    assert accuracy[1e-4] < 4 * start, accuracy  # too small: stays near the start
    assert accuracy[1e-1] < 4 * start, accuracy  # too large: collapses
    assert accuracy[1e-2] > accuracy[1e-4] + 0.4 and accuracy[1e-2] > accuracy[1e-1] + 0.4


def test_a_large_kl_penalty_holds_the_policy_at_the_reference():
    free = train(recipe(**{"policy.optimizer.kwargs.lr": 1e-2}))
    held = train(
        recipe(**{"policy.optimizer.kwargs.lr": 1e-2, "loss_fn.reference_policy_kl_penalty": 1.0})
    )
    assert held["validation/accuracy"] < free["validation/accuracy"] - 0.3
    assert held["train/kl_penalty"] < free["train/kl_penalty"]


def test_on_validation_is_called_at_every_validation_step():
    calls: list[tuple[int, dict[str, float]]] = []
    cfg = recipe(**{"grpo.max_num_steps": 25, "grpo.val_period": 10, "grpo.val_at_end": True})
    result = train(cfg, on_validation=lambda step, m: calls.append((step, m)))
    assert [step for step, _ in calls] == [10, 20, 25]
    assert calls[-1][1]["validation/accuracy"] == result["validation/accuracy"]
    assert result["validation/best_accuracy"] == max(m["validation/accuracy"] for _, m in calls)


def test_an_exception_from_on_validation_stops_training():
    class Stop(Exception):
        pass

    steps: list[int] = []

    def stop_at_20(step: int, metrics: dict[str, float]) -> None:
        if step == 20:
            raise Stop

    with pytest.raises(Stop):
        train(recipe(), on_validation=stop_at_20, on_step=lambda step, m, run: steps.append(step))
    assert steps == list(range(1, 20))  # step 20's own on_step never ran, nor any later step


def test_group_advantages_leave_one_out_and_normalisation():
    rewards = torch.tensor([[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    base = {"normalize_rewards": False, "use_leave_one_out_baseline": True}
    loo = group_advantages(rewards, _settings(**base))
    assert torch.allclose(loo[0], torch.tensor([1.0, -1 / 3, -1 / 3, -1 / 3]))
    assert torch.all(loo[1] == 0)
    plain = {"use_leave_one_out_baseline": False}
    mean = group_advantages(rewards, _settings(normalize_rewards=False, **plain))
    assert torch.allclose(mean[0], torch.tensor([0.75, -0.25, -0.25, -0.25]))
    normed = group_advantages(rewards, _settings(normalize_rewards=True, **plain))
    assert torch.allclose(normed[0], mean[0] / (rewards[0].std() + 1e-6))
    assert torch.all(normed[1] == 0)  # a group with one reward gives no signal, not NaN


def test_k3_kl_is_zero_at_the_reference_and_positive_elsewhere():
    s = _settings()
    cur = torch.tensor([-1.0, -2.0])
    assert torch.all(kl_to_reference(cur, cur, s) == 0)
    assert torch.all(kl_to_reference(cur, cur - 0.5, s) > 0)


def test_adamw_matches_torch_optim_adamw():
    torch.manual_seed(0)
    ours_model = torch.nn.Linear(3, 2)
    theirs_model = torch.nn.Linear(3, 2)
    theirs_model.load_state_dict(ours_model.state_dict())
    kwargs = {"lr": 0.05, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1}
    ours, theirs = (
        AdamW(ours_model.parameters(), **kwargs),
        torch.optim.AdamW(theirs_model.parameters(), **kwargs),
    )
    x = torch.randn(5, 3)
    for _ in range(5):
        for model, opt in ((ours_model, ours), (theirs_model, theirs)):
            opt.zero_grad()
            model(x).pow(2).sum().backward()
            opt.step()
    for a, b in zip(ours_model.parameters(), theirs_model.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_resuming_from_a_saved_state_gives_the_uninterrupted_numbers():
    states = {}
    train(
        recipe(**{"grpo.max_num_steps": 10}),
        on_step=lambda step, m, run: states.update({step: run.state_dict()}),
    )
    cfg = recipe(**{"grpo.max_num_steps": 20})
    assert deterministic(train(cfg, resume_from=states[10])) == deterministic(train(cfg))


def test_missing_or_bad_keys_name_the_key():
    cfg = OmegaConf.to_container(recipe(), resolve=True)
    del cfg["loss_fn"]["ratio_clip_min"]
    with pytest.raises(KeyError, match="loss_fn.ratio_clip_min"):
        train(cfg)
    with pytest.raises(ValueError, match="policy.generation.temperature"):
        train(recipe(**{"policy.generation.temperature": 0}))


def test_next_experiment_dir_and_keep_top_k(tmp_path):
    assert next_experiment_dir(tmp_path).name == "exp_001"
    (tmp_path / "exp_007").mkdir()
    assert next_experiment_dir(tmp_path).name == "exp_008"
    ckpt = {"checkpoint_dir": str(tmp_path / "ck"), "save_period": 1, "keep_top_k": 2}
    writer = CheckpointWriter({**ckpt, "metric_name": "val:accuracy"}, max_num_steps=4)
    for step, acc in [(1, 0.5), (2, 0.9), (3, 0.7), (4, 0.1)]:
        writer.on_step(step, {"validation/accuracy": acc, "train/loss": 1.0}, {})
    kept = sorted(p.name for p in (tmp_path / "ck").iterdir())
    assert kept == ["step_2", "step_3", "step_4"]  # the best two, and the latest
    info = json.loads((tmp_path / "ck" / "step_4" / "training_info.json").read_text())
    assert info == {"step": 4, "val:accuracy": 0.1, "train:loss": 1.0}


def _script(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    cmd = [sys.executable, "-m", "nemo_rl_sweep.trainers.embedded.run_grpo", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)


def test_script_writes_nemo_rl_layout_resumes_and_matches_in_process_numbers(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    # a child recipe that inherits the tiny one through NeMo RL's `defaults:`
    child = tmp_path / "child.yaml"
    child.write_text(f"defaults: {RECIPE}\ngrpo:\n  max_num_steps: 20\n  val_period: 5\n")
    logs, ckpts = tmp_path / "logs", tmp_path / "ckpt"
    args = [
        "--config",
        str(child),
        "policy.optimizer.kwargs.lr=1e-2",
        f"logger.log_dir={logs}",
        f"checkpointing.checkpoint_dir={ckpts}",
        "checkpointing.save_period=10",
        "+data.note=added",  # `+` adds a key the recipe lacks
    ]
    first = _script(*args, "grpo.max_num_steps=10", cwd=tmp_path)  # stops at step 10
    assert first.returncode == 0, first.stderr
    assert "Step 10/10" in first.stdout
    second = _script(*args, cwd=tmp_path)  # a relaunch resumes from step_10, as NeMo RL does
    assert second.returncode == 0, second.stderr
    assert "Resuming from checkpoint" in second.stdout and "Step 11/20" in second.stdout
    assert "Step 10/20" not in second.stdout

    expected = train(
        recipe(
            **{"grpo.max_num_steps": 20, "grpo.val_period": 5, "policy.optimizer.kwargs.lr": 1e-2}
        )
    )
    accuracy, rewards = [], []
    for exp in ("exp_001", "exp_002"):  # one experiment folder per launch
        events = EventAccumulator(str(logs / exp / "tensorboard"))
        events.Reload()
        tags = set(events.Tags()["scalars"])
        assert {"validation/accuracy", "train/loss", "train/reward"} <= tags
        assert "timing/train/total_step_time" in tags
        accuracy += events.Scalars("validation/accuracy")
        rewards += events.Scalars("train/reward")
        last_loss = events.Scalars("train/loss")[-1].value
        last_tokens = events.Scalars("train/total_tokens_generated")[-1].value
    assert [e.step for e in accuracy] == [5, 10, 15, 20]
    assert [e.step for e in rewards] == list(range(1, 21))
    assert accuracy[-1].value == pytest.approx(expected["validation/accuracy"], abs=1e-6)
    assert last_loss == pytest.approx(expected["train/loss"], abs=1e-6)
    assert last_tokens == expected["train/total_tokens_generated"] == 20 * 8 * 8 * 2

    assert sorted(p.name for p in ckpts.iterdir()) == ["step_10", "step_20"]
    info = json.loads((ckpts / "step_20" / "training_info.json").read_text())
    assert info["step"] == 20 and info["consumed_samples"] == 20 * 8 * 8
    assert info["val:accuracy"] == pytest.approx(expected["validation/accuracy"])


def test_script_refuses_an_unknown_key_before_training(tmp_path):
    done = _script("--config", str(RECIPE), "policy.optimizer.kwargs.lrr=1e-2", cwd=tmp_path)
    assert done.returncode != 0
    assert "policy.optimizer.kwargs.lrr" in done.stderr
    assert "Step" not in done.stdout


def _settings(**overrides: object) -> GRPOSettings:
    cfg = OmegaConf.to_container(recipe(), resolve=True)
    for key, value in overrides.items():
        cfg["grpo"][key] = value
    return GRPOSettings.from_cfg(cfg)
