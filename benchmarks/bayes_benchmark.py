"""Single-objective benchmark: our BayesSampler against Optuna's GPSampler, TPE and random search.

Every sampler runs on the same problems with the same seeds in one go:

* ``sklearn-GP`` is the project's first design, scikit-learn's GaussianProcessRegressor with
  expected improvement (``benchmarks/sklearn_gp.py``), kept as a baseline for what our GP adds;
* simple regret (best value found - known minimum) after ``--trials`` trials on Branin (2-D),
  Hartmann6 (6-D), Levy-10 (10-D) and a mixed space (float, int, log float, categorical), one
  suggestion at a time, and on Branin and Hartmann6 in synchronous batches of 4 (ask 4, tell 4);
* seconds per suggestion (one ``study.ask`` with the sampler's work in it) once the study holds
  50, 200 and 500 finished trials (added by ask/tell), median of 3 consecutive suggestions;
* with ``--trainer`` (default when the embedded trainer exists): best ``validation/accuracy`` of
  bayes vs random search on the embedded GRPO trainer at a fixed budget, several seeds.

The tables go to stdout and, between ``<!-- bayes:start -->`` and ``<!-- bayes:end -->``, into
docs/benchmarks.md together with the exact command and the library versions. Numbers are whatever
the run gives.

    python benchmarks/bayes_benchmark.py              # full run (12-22 min on 2 shared cores)
    python benchmarks/bayes_benchmark.py --quick      # smoke run (2 seeds, 15 trials), docs untouched
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import platform
import shlex
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
import optuna  # noqa: E402
from docs_section import write_section  # noqa: E402
from functions import PROBLEMS, Problem  # noqa: E402

# sklearn-GP: the project's first design (scikit-learn GaussianProcessRegressor + EI), a baseline
SAMPLERS = ["bayes", "GPSampler", "sklearn-GP", "TPESampler", "RandomSampler"]
# (problem, batch size) settings of the regret table
SETTINGS = [
    ("branin", 1),
    ("hartmann6", 1),
    ("levy10", 1),
    ("mixed", 1),
    ("branin", 4),
    ("hartmann6", 4),
]
TIMING_SIZES = (50, 200, 500)


def make_sampler(name: str, seed: int, problem: Problem) -> optuna.samplers.BaseSampler:
    """Each sampler with its defaults and the seed (ours given the space, as the sweeper does)."""
    if name == "bayes":
        from nemo_rl_sweep.samplers.bayes import BayesSampler

        return BayesSampler(problem.space, seed=seed)
    if name == "GPSampler":
        return optuna.samplers.GPSampler(seed=seed, warn_independent_sampling=False)
    if name == "sklearn-GP":
        from sklearn_gp import SklearnGPSampler

        return SklearnGPSampler(problem.space, seed=seed)
    return getattr(optuna.samplers, name)(seed=seed)


def _quiet() -> None:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore")


def run_regret(job: tuple[str, str, int, int, int]) -> tuple[tuple[str, int, str], float, float]:
    """One sampler, one problem, one seed: returns (key, simple regret, seconds)."""
    problem_name, sampler_name, seed, n_trials, batch = job
    _quiet()
    problem = PROBLEMS[problem_name]
    study = optuna.create_study(sampler=make_sampler(sampler_name, seed, problem))
    t0 = time.perf_counter()
    done = 0
    while done < n_trials:
        trials = [study.ask(problem.space) for _ in range(min(batch, n_trials - done))]
        for t in trials:
            study.tell(t, problem(t.params))
        done += len(trials)
    return (
        (problem_name, batch, sampler_name),
        study.best_value - problem.optimum,
        (time.perf_counter() - t0),
    )


def run_timing(job: tuple[str, int, int]) -> tuple[tuple[str, int], float]:
    """Seconds of one suggestion once ``size`` finished trials are in the study (median of 3)."""
    sampler_name, size, seed = job
    _quiet()
    problem = PROBLEMS["hartmann6"]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    for _ in range(size):
        t = study.ask(problem.space)
        study.tell(t, problem(t.params))
    study.sampler = make_sampler(sampler_name, seed, problem)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        t = study.ask(problem.space)
        times.append(time.perf_counter() - t0)
        study.tell(t, problem(t.params))
    return (sampler_name, size), float(np.median(times))


TRAINER_SPACE = {
    "policy.optimizer.kwargs.lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True),
    "loss_fn.reference_policy_kl_penalty": optuna.distributions.FloatDistribution(
        1e-4, 3e-1, log=True
    ),
    "grpo.num_generations_per_prompt": optuna.distributions.CategoricalDistribution((4, 8, 16)),
}


def _recipe() -> dict:
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(ROOT / "conf" / "recipe" / "grpo_tiny.yaml")
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def run_trainer(job: tuple[str, int, int]) -> tuple[tuple[str, int], float]:
    """One sweep on the embedded GRPO trainer, ``train()`` in-process on an Optuna study:
    returns the best final ``validation/accuracy`` over ``budget`` trials."""
    import copy

    from nemo_rl_sweep.trainers.embedded import train

    sampler_name, seed, budget = job
    _quiet()
    base = _recipe()
    if sampler_name == "bayes":
        from nemo_rl_sweep.samplers.bayes import BayesSampler

        sampler: optuna.samplers.BaseSampler = BayesSampler(TRAINER_SPACE, seed=seed)
    else:
        sampler = getattr(optuna.samplers, sampler_name)(seed=seed)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    for _ in range(budget):
        trial = study.ask(TRAINER_SPACE)
        cfg = copy.deepcopy(base)
        for key, value in trial.params.items():
            node = cfg
            *parents, leaf = key.split(".")
            for p in parents:
                node = node[p]
            node[leaf] = value
        metrics = train(cfg)
        acc = metrics.get("validation/accuracy")
        if acc is None or not np.isfinite(acc):
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        else:
            study.tell(trial, float(acc))
    return (sampler_name, seed), float(study.best_value)


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def _fmt(x: float) -> str:
    return f"{x:.3g}" if abs(x) >= 1e-3 or x == 0 else f"{x:.2e}"


def _quartiles(vals: list[float]) -> str:
    q1, med, q3 = np.percentile(vals, [25, 50, 75])
    return f"{_fmt(med)} [{_fmt(q1)}, {_fmt(q3)}]"


def _versions() -> str:
    import scipy
    import torch

    return (
        f"python {platform.python_version()}, optuna {optuna.__version__}, numpy {np.__version__}, "
        f"scipy {scipy.__version__}, torch {torch.__version__}"
    )


def _trainer_available() -> bool:
    try:
        import nemo_rl_sweep.trainers.embedded as tr

        return hasattr(tr, "train") and (ROOT / "conf" / "recipe" / "grpo_tiny.yaml").exists()
    except Exception:
        return False


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run; docs are not written")
    ap.add_argument("--seeds", type=int, default=None, help="seeds per setting (default 10)")
    ap.add_argument("--trials", type=int, default=None, help="trials per run (default 40)")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    ap.add_argument("--samplers", nargs="+", default=SAMPLERS, choices=SAMPLERS)
    ap.add_argument("--settings", nargs="+", default=None, help="e.g. hartmann6:1 branin:4")
    ap.add_argument("--no-timing", action="store_true", help="skip seconds-per-suggestion")
    ap.add_argument("--trainer", choices=["auto", "yes", "no"], default="auto")
    ap.add_argument("--trainer-seeds", type=int, default=None, help="default 5")
    ap.add_argument("--trainer-budget", type=int, default=None, help="trials per sweep (12)")
    ap.add_argument("--no-write", action="store_true", help="do not touch docs/benchmarks.md")
    args = ap.parse_args(argv)

    seeds = args.seeds or (2 if args.quick else 10)
    n_trials = args.trials or (15 if args.quick else 40)
    settings = (
        [(s.split(":")[0], int(s.split(":")[1])) for s in args.settings]
        if args.settings
        else SETTINGS
    )
    sizes = (20, 50) if args.quick else TIMING_SIZES
    do_trainer = args.trainer == "yes" or (args.trainer == "auto" and _trainer_available())
    t_start = time.perf_counter()

    jobs = [
        (p, s, seed, n_trials, b)
        for p, b in settings
        for s in args.samplers
        for seed in range(seeds)
    ]
    # longest first keeps both workers busy until the end
    jobs.sort(
        key=lambda j: (j[1] not in ("bayes", "GPSampler", "sklearn-GP"), -len(PROBLEMS[j[0]].space))
    )
    ctx = mp.get_context("spawn")
    with ctx.Pool(args.jobs, initializer=_init_worker) as pool:
        regret_out = pool.map(run_regret, jobs, chunksize=1)
        timing_out = (
            []
            if args.no_timing
            else pool.map(
                run_timing,
                [(s, n, 0) for s in args.samplers for n in sizes],
                chunksize=1,
            )
        )
        trainer_out = []
        if do_trainer:
            t_seeds = args.trainer_seeds or (2 if args.quick else 5)
            budget = args.trainer_budget or (6 if args.quick else 12)
            trainer_out = pool.map(
                run_trainer,
                [(s, seed, budget) for s in ("bayes", "RandomSampler") for seed in range(t_seeds)],
                chunksize=1,
            )

    regrets: dict[tuple[str, int, str], list[float]] = {}
    run_secs: dict[tuple[str, int, str], list[float]] = {}
    for key, r, secs in regret_out:
        regrets.setdefault(key, []).append(r)
        run_secs.setdefault(key, []).append(secs)

    lines = [
        f"Simple regret (best value found - known minimum) after {n_trials} trials, {seeds} seeds "
        "(seeds 0..{}), median [25%, 75%]; lower is better. Batch 4 = synchronous batches "
        "(ask 4, tell 4).".format(seeds - 1),
        "",
        "| problem | " + " | ".join(args.samplers) + " |",
        "|---|" + "---|" * len(args.samplers),
    ]
    for p, b in settings:
        label = f"{p} (d={len(PROBLEMS[p].space)})" + (f", batch {b}" if b > 1 else "")
        cells = [_quartiles(regrets[(p, b, s)]) for s in args.samplers]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    if timing_out:
        timings = dict(timing_out)
        lines += [
            "",
            "Seconds per suggestion on Hartmann6 once the study holds N finished trials "
            "(median of 3 consecutive `study.ask` calls, fresh sampler):",
            "",
            "| trials | " + " | ".join(args.samplers) + " |",
            "|---|" + "---|" * len(args.samplers),
        ]
        for n in sizes:
            lines.append(
                f"| {n} | " + " | ".join(f"{timings[(s, n)]:.3f}" for s in args.samplers) + " |"
            )
    if trainer_out:
        acc: dict[str, list[float]] = {}
        for (s, _seed), v in sorted(trainer_out):
            acc.setdefault(s, []).append(v)
        lines += [
            "",
            f"Embedded GRPO trainer (`conf/recipe/grpo_tiny.yaml`, `train()` in-process): best "
            f"`validation/accuracy` after {budget} trials over lr (log), KL penalty (log) and "
            f"num_generations_per_prompt, {t_seeds} seeds; higher is better.",
            "",
            "| sampler | median [25%, 75%] | per seed |",
            "|---|---|---|",
        ]
        for s, vals in acc.items():
            lines.append(f"| {s} | {_quartiles(vals)} | {', '.join(f'{v:.3f}' for v in vals)} |")
    elapsed = time.perf_counter() - t_start
    command = "python " + " ".join(
        shlex.quote(a) for a in ["benchmarks/bayes_benchmark.py", *sys.argv[1:]]
    )
    lines += [
        "",
        f"Command: `{command}` ({elapsed / 60:.1f} min, {args.jobs} worker processes, "
        f"{_versions()}).",
    ]
    table = "\n".join(lines)
    print(table)
    if not args.quick and not args.no_write:
        write_section(
            ROOT / "docs" / "benchmarks.md", "bayes", f"## GP-Bayesian strategy (bayes)\n\n{table}"
        )
    return table


if __name__ == "__main__":
    main()
