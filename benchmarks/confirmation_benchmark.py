"""Confirmation benchmark: how often the sweep's answer is the true best configuration, with and
without confirming the top configurations over new seeds.

The trainer has a known noisy optimum, shaped like RL fine-tuning: the learning rate sets both the
mean accuracy and its seed-to-seed spread (a high learning rate is sometimes brilliant, often not), and
the KL penalty shifts the mean a little. Its runs are deterministic in (configuration, seed), as a
real trainer's are, and a lucky seed of a high-variance configuration often beats the true best
configuration in one trial. The true best is (lr 3e-4, kl 0.01): mean 0.72, std 0.03.

Each of the N sweeps (sweep s) runs a random search of ``--n-trials`` trials over the 12
configurations (nemo_rl_sweep's RandomSampler, seed s; the trainer's seed key at its recipe value
1000*s for every search trial), then, as ``hydra.sweeper.confirm: {top_k, seeds}`` does, re-runs the
top-k distinct configurations with the seeds 1000*s+1, ... as confirmation trials of the same study
(``nemo_rl_sweep.confirmation``: plan, enqueue, answer). Without confirmation the answer is the best
single trial; with it, the configuration with the best mean over its runs.

The table goes to stdout and, between ``<!-- confirmation:start -->`` / ``<!-- confirmation:end -->``,
into docs/benchmarks.md with the command and the versions. Numbers are whatever the run gives.

    python benchmarks/confirmation_benchmark.py              # 20 sweeps, a few seconds
    python benchmarks/confirmation_benchmark.py --quick      # 4 sweeps, docs untouched
"""

from __future__ import annotations

import argparse
import hashlib
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
import optuna  # noqa: E402
from docs_section import write_section  # noqa: E402

from nemo_rl_sweep import confirmation  # noqa: E402
from nemo_rl_sweep.samplers.random import RandomSampler  # noqa: E402
from nemo_rl_sweep.space import parse_params  # noqa: E402

LR_KEY = "policy.optimizer.kwargs.lr"
KL_KEY = "loss_fn.reference_policy_kl_penalty"
SEED_KEY = "grpo.seed"
SPACE = {LR_KEY: "choice(1e-4, 3e-4, 1e-3, 3e-3)", KL_KEY: "choice(0.0, 0.01, 0.05)"}
# per learning rate: (mean accuracy, seed-to-seed std); per KL penalty: a shift of the mean
LR_EFFECT = {1e-4: (0.60, 0.02), 3e-4: (0.72, 0.03), 1e-3: (0.62, 0.08), 3e-3: (0.50, 0.15)}
KL_EFFECT = {0.0: -0.02, 0.01: 0.0, 0.05: -0.03}
TRUE_BEST = {LR_KEY: 3e-4, KL_KEY: 0.01}
METRIC = "validation/accuracy"


def true_mean(params: dict[str, Any]) -> float:
    return LR_EFFECT[params[LR_KEY]][0] + KL_EFFECT[params[KL_KEY]]


def train(params: dict[str, Any], seed: int) -> float:
    """The noisy trainer: the same configuration and seed give the same accuracy."""
    mean = true_mean(params)
    std = LR_EFFECT[params[LR_KEY]][1]
    digest = hashlib.sha256(f"{params[LR_KEY]!r}|{params[KL_KEY]!r}|{seed}".encode()).digest()
    noise = np.random.default_rng(int.from_bytes(digest[:8], "little")).standard_normal()
    return float(np.clip(mean + std * noise, 0.0, 1.0))


def run_trial(study: optuna.Study, distributions: dict[str, Any], default_seed: int) -> None:
    """One trial as the sweep loop runs it: ask, suggest every key, run with the seed override."""
    trial = study.ask()
    params = {k: trial._suggest(k, d) for k, d in distributions.items()}
    override = confirmation.seed_override(trial)
    seed = int(override[0].split("=", 1)[1]) if override else default_seed
    study.tell(trial, train(params, seed))


def run_sweep(sweep: int, n_trials: int, top_k: int, seeds: int) -> dict[str, Any]:
    distributions = parse_params(SPACE).distributions
    study = optuna.create_study(
        direction="maximize", sampler=RandomSampler(distributions, seed=sweep)
    )
    base_seed = 1000 * sweep
    for _ in range(n_trials):
        run_trial(study, distributions, base_seed)
    search_best = dict(study.best_trial.params)
    settings = confirmation.check_confirm({"top_k": top_k, "seeds": seeds}, n_trials)
    assert settings is not None
    record = confirmation.record_settings(study, settings, SEED_KEY, base_seed)
    runs = confirmation.plan(study.get_trials(), study.directions, record)
    confirmation.enqueue(study, confirmation.pending(study.get_trials(), runs))
    for _ in runs:
        run_trial(study, distributions, base_seed)
    answer = confirmation.study_answer(study)
    assert answer is not None and answer.runs_done == len(runs)
    confirmed = answer.best[0].params
    sampled = any(t.params == TRUE_BEST for t in study.trials[:n_trials])
    return {
        "plain_right": search_best == TRUE_BEST,
        "confirmed_right": confirmed == TRUE_BEST,
        "sampled": sampled,
        "plain_regret": true_mean(TRUE_BEST) - true_mean(search_best),
        "confirmed_regret": true_mean(TRUE_BEST) - true_mean(confirmed),
        "held_up": answer.held_up,
        "extra_trials": len(runs),
    }


def versions() -> str:
    return (
        f"Python {platform.python_version()}, optuna {optuna.__version__}, "
        f"numpy {np.__version__}; {platform.machine()}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sweeps", type=int, default=20)
    ap.add_argument("--n-trials", type=int, default=24)
    ap.add_argument("--top-k", type=int, default=3)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="4 sweeps, docs untouched")
    ap.add_argument("--no-docs", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.sweeps, args.no_docs = 4, True
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    start = time.perf_counter()
    rows = [run_sweep(s, args.n_trials, args.top_k, args.seeds) for s in range(args.sweeps)]
    n = len(rows)
    plain = sum(r["plain_right"] for r in rows)
    confirmed = sum(r["confirmed_right"] for r in rows)
    sampled = sum(r["sampled"] for r in rows)
    held = sum(r["held_up"] for r in rows)
    extra = rows[0]["extra_trials"]
    command = "python " + " ".join(
        shlex.quote(a) for a in ["benchmarks/confirmation_benchmark.py", *sys.argv[1:]]
    )
    table = "\n".join(
        [
            "| answer | true best configuration | true-mean regret of the answer (mean) | trials per sweep |",
            "|---|---|---|---|",
            f"| best single trial (no confirmation) | {plain}/{n} sweeps ({plain / n:.0%}) | "
            f"{statistics.fmean(r['plain_regret'] for r in rows):.4f} | {args.n_trials} |",
            f"| best mean, `confirm: {{top_k: {args.top_k}, seeds: {args.seeds}}}` | "
            f"{confirmed}/{n} sweeps ({confirmed / n:.0%}) | "
            f"{statistics.fmean(r['confirmed_regret'] for r in rows):.4f} | "
            f"{args.n_trials} + {extra} |",
        ]
    )
    per_sweep = " ".join(
        ("C" if r["confirmed_right"] else "-") + ("P" if r["plain_right"] else "-") for r in rows
    )
    body = "\n".join(
        [
            f"Command: `{command}` ({time.perf_counter() - start:.0f} s, {time.strftime('%Y-%m-%d')})",
            f"Versions: {versions()}",
            "",
            "A trainer with a known noisy optimum (benchmarks/confirmation_benchmark.py): 12 "
            "configurations (4 learning rates x 3 KL penalties); the learning rate sets the mean "
            "accuracy and its seed-to-seed std ("
            + ", ".join(f"{lr:g}: {m:.2f} +- {sd:.2f}" for lr, (m, sd) in LR_EFFECT.items())
            + "), the KL penalty shifts the mean ("
            + ", ".join(f"{kl:g}: {d:+.2f}" for kl, d in KL_EFFECT.items())
            + "); runs are deterministic in (configuration, seed). The true best is lr 3e-4, "
            f"KL 0.01 (0.72 +- 0.03). Each of {n} sweeps: {args.n_trials} random-search trials "
            "(nemo_rl_sweep RandomSampler, seed = sweep number, every search trial at the recipe's "
            f"seed), then confirmation of the top {args.top_k} distinct configurations with "
            f"{args.seeds} new seeds each, as trials of the same study (nemo_rl_sweep.confirmation). "
            "Regret: the true best mean minus the true mean of the answer.",
            "",
            f"The true best configuration was among the search's trials in {sampled}/{n} sweeps; "
            f"the search's best trial held up under confirmation in {held}/{n}.",
            "",
            table,
            "",
            f"Per sweep (C: confirmed answer right, P: best single trial right): `{per_sweep}`",
        ]
    )
    print(body)
    if not args.no_docs:
        write_section(
            ROOT / "docs" / "benchmarks.md",
            "confirmation",
            f"## Confirmation over seeds (a trainer with a noisy optimum)\n\n{body}",
        )
        print("\nwritten to docs/benchmarks.md")


if __name__ == "__main__":
    main()
