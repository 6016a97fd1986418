"""`train.py`, the app users run first, with the embedded GRPO trainer and the real presets."""

import re

from optuna.trial import TrialState

from tests.helpers import TRAIN_APP, error_lines, load_study, results, run_app, sweep_dirs


def _single_run_accuracy(tmp_path, *args):
    proc = run_app(TRAIN_APP, list(args), tmp_path)
    assert proc.returncode == 0, proc.stderr
    match = re.search(r"validation/accuracy=([0-9.eE+-]+)", proc.stdout)
    assert match, proc.stdout
    return float(match.group(1))


def test_single_run_prints_metrics_and_launches_no_sweep(tmp_path):
    accuracy = _single_run_accuracy(tmp_path)
    assert 0.0 <= accuracy <= 1.0
    assert not (tmp_path / "multirun").exists()


def test_grid_from_the_issue_runs_exactly_four_trials(tmp_path):
    proc = run_app(
        TRAIN_APP,
        [
            "--multirun",
            "hpo=grid",
            "policy.optimizer.kwargs.lr=choice(1e-3,1e-2)",
            "grpo.num_generations_per_prompt=range(2,6,2)",
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    (sweep_dir,) = sweep_dirs(tmp_path)
    trials = load_study(sweep_dir).get_trials()
    combos = sorted(
        (t.params["policy.optimizer.kwargs.lr"], t.params["grpo.num_generations_per_prompt"])
        for t in trials
    )
    assert combos == [(1e-3, 2), (1e-3, 4), (1e-2, 2), (1e-2, 4)]
    assert all(t.state == TrialState.COMPLETE for t in trials)
    # the grid's other keys come from the recipe, unchanged
    assert all(0.0 <= t.value <= 1.0 for t in trials)


def test_random_preset_beats_the_recipe_defaults(tmp_path):
    default_accuracy = _single_run_accuracy(tmp_path)
    proc = run_app(TRAIN_APP, ["--multirun", "hpo=random", "hydra.sweeper.seed=0"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    (sweep_dir,) = sweep_dirs(tmp_path)
    res = results(sweep_dir)
    assert res["trials"] == {"complete": 16}
    assert res["best_value"] > default_accuracy
    assert set(res["best_params"]) == {
        "policy.optimizer.kwargs.lr",
        "loss_fn.reference_policy_kl_penalty",
        "grpo.num_generations_per_prompt",
        "policy.generation.temperature",
    }


def test_recipe_key_typo_and_unreported_metric_are_refused(tmp_path):
    typo = run_app(
        TRAIN_APP, ["--multirun", "hpo=random", "policy.optimizer.kwargs.lrr=choice(1,2)"], tmp_path
    )
    assert typo.returncode != 0
    assert error_lines(typo) == [
        "Error: policy.optimizer.kwargs.lrr: is not a key of the trial config. Fix: check the "
        "spelling, or write +policy.optimizer.kwargs.lrr to add it"
    ]
    metric = run_app(
        TRAIN_APP, ["--multirun", "hpo=random", "hydra.sweeper.metric=validation/acc"], tmp_path
    )
    assert metric.returncode != 0
    (line,) = error_lines(metric)
    assert line.startswith("Error: hydra.sweeper.metric: 'validation/acc' is not reported")
    assert "validation/accuracy" in line
    assert not (tmp_path / "multirun").exists()


def test_bayes_preset_runs_a_model_guided_sweep(tmp_path):
    proc = run_app(
        TRAIN_APP,
        [
            "--multirun",
            "hpo=bayes",
            "hydra.sweeper.seed=0",
            "hydra.sweeper.n_trials=7",
            "hydra.sweeper.strategy_options.n_startup_trials=4",
            "grpo.max_num_steps=30",
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    (sweep_dir,) = sweep_dirs(tmp_path)
    study = load_study(sweep_dir)
    assert study.user_attrs["nemo_rl_sweep.strategy"] == "bayes"
    trials = study.get_trials()
    assert len(trials) == 7 and all(t.state == TrialState.COMPLETE for t in trials)
    points = {tuple(sorted(t.params.items())) for t in trials}
    assert len(points) == 7  # the model never proposes a point twice
    assert results(sweep_dir)["best_value"] == max(t.value for t in trials)


def test_pareto_preset_writes_the_front(tmp_path):
    proc = run_app(
        TRAIN_APP,
        [
            "--multirun",
            "hpo=pareto",
            "hydra.sweeper.seed=0",
            "hydra.sweeper.n_trials=8",
            "hydra.sweeper.strategy_options.n_startup_trials=5",
            "grpo.max_num_steps=30",
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    (sweep_dir,) = sweep_dirs(tmp_path)
    res = results(sweep_dir)
    assert res["metric"] == ["validation/accuracy", "train/tokens_generated"]
    trials = load_study(sweep_dir).get_trials()
    front = res["solutions"]
    assert front
    for sol in front:  # no trial dominates a solution
        acc, tokens = sol["values"]["validation/accuracy"], sol["values"]["train/tokens_generated"]
        assert not any(
            t.values[0] >= acc
            and t.values[1] <= tokens
            and (t.values[0], t.values[1]) != (acc, tokens)
            for t in trials
        )
    assert (sweep_dir / "pareto.csv").is_file()
    assert (sweep_dir / "pareto_front.png").stat().st_size > 1000
