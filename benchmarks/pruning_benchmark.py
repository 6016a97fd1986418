"""Pruning benchmark: training steps spent to reach the same best validation/accuracy, with and
without a pruner, on the embedded GRPO trainer.

For each seed, two sweeps run the same sampler with the same seed and the same number of trials over
the ``grpo`` search space (conf/search_space/grpo.yaml) on the ``grpo_tiny`` recipe: one without a
pruner, one with. Every trial is a real embedded-GRPO training (``nemo_rl_sweep.trainers.embedded.train``,
in-process, no Hydra) that reports each validation to its Optuna trial and stops when the pruner says
so; the steps actually trained are counted (``on_step``).

Reported per sampler and pruner (medians over seeds): the best final ``validation/accuracy`` of a
COMPLETE trial, in how many seeds the pruned sweep found the same best as the unpruned one, the
total training steps and how many fewer that is, and the steps spent until a trial matching the
unpruned sweep's best had finished (a stricter measure: a best found among the first, never-pruned
trials leaves nothing to save there).
The table goes to stdout and, between ``<!-- pruning:start -->`` / ``<!-- pruning:end -->``, into
docs/benchmarks.md with the command and the versions. Numbers are whatever the run gives.

    python benchmarks/pruning_benchmark.py                 # 5 seeds x 30 trials, ~10 min on 2 cores
    python benchmarks/pruning_benchmark.py --quick         # smoke run, docs untouched
"""

from __future__ import annotations

import argparse
import copy
import math
import multiprocessing as mp
import os
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

import optuna  # noqa: E402
import yaml  # noqa: E402
from docs_section import write_section  # noqa: E402

METRIC = "validation/accuracy"
PRUNER_PRESETS = ("median", "successive_halving", "hyperband")  # conf/pruner/<name>.yaml


def load_pruner(name: str) -> dict[str, Any] | None:
    """A pruner preset exactly as users get it (``+pruner=<name>``); ``none`` is no pruner."""
    if name == "none":
        return None
    return yaml.safe_load((ROOT / "conf" / "pruner" / f"{name}.yaml").read_text())["pruner"]


def load_space() -> Any:
    from nemo_rl_sweep.space import parse_params

    return parse_params(yaml.safe_load((ROOT / "conf" / "search_space" / "grpo.yaml").read_text()))


def load_recipe() -> dict[str, Any]:
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(ROOT / "conf" / "recipe" / "grpo_tiny.yaml")
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def make_sampler(name: str, space: Any, seed: int) -> optuna.samplers.BaseSampler:
    if name == "random":
        from nemo_rl_sweep.samplers.random import RandomSampler

        return RandomSampler(space.distributions, seed=seed)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=5)
    raise ValueError(f"unknown sampler {name!r}")


def run_sweep(job: tuple[str, str, int, int]) -> dict[str, Any]:
    """One sweep: ``n_trials`` embedded-GRPO trainings; returns per-trial steps and accuracies."""
    sampler_name, pruner_name, seed, n_trials = job
    import torch

    from nemo_rl_sweep.loop import suggest
    from nemo_rl_sweep.targets import build_from_target
    from nemo_rl_sweep.trainers.embedded import train

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space, recipe = load_space(), load_recipe()
    node = load_pruner(pruner_name)
    pruner = (
        build_from_target(node, optuna.pruners.BasePruner, "pruner")
        if node
        else optuna.pruners.NopPruner()
    )
    # named, not random: HyperbandPruner picks a trial's bracket from the study name, so the
    # hyperband rows are then a function of the seeds like the others
    study = optuna.create_study(
        study_name=f"{sampler_name}-{pruner_name}-{seed}",
        direction="maximize",
        sampler=make_sampler(sampler_name, space, seed),
        pruner=pruner,
    )
    trials = []
    start = time.perf_counter()
    for _ in range(n_trials):
        trial = study.ask()
        cfg = copy.deepcopy(recipe)
        for key, dist in space.distributions.items():
            _set(cfg, key, suggest(trial, key, dist))
        steps = [0]

        def on_step(step: int, *_: Any, steps=steps) -> None:
            steps[0] = max(steps[0], step)  # every training step that ran

        def on_validation(step: int, metrics: dict, trial=trial) -> None:
            trial.report(float(metrics[METRIC]), step)
            if trial.should_prune():
                raise optuna.TrialPruned()

        try:
            result = train(cfg, on_validation=on_validation, on_step=on_step)
        except optuna.TrialPruned:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            trials.append({"steps": steps[0], "accuracy": None})
        else:
            study.tell(trial, float(result[METRIC]))
            trials.append({"steps": steps[0], "accuracy": float(result[METRIC])})
    return {
        "sampler": sampler_name,
        "pruner": pruner_name,
        "seed": seed,
        "trials": trials,
        "seconds": time.perf_counter() - start,
    }


def _set(cfg: dict, dotted: str, value: Any) -> None:
    node = cfg
    *parents, leaf = dotted.split(".")
    for part in parents:
        node = node[part]
    node[leaf] = value


def best(run: dict) -> float:
    return max((t["accuracy"] for t in run["trials"] if t["accuracy"] is not None), default=-1.0)


def steps_to(run: dict, target: float) -> int | None:
    """Steps spent until the first COMPLETE trial with accuracy >= target had finished."""
    spent = 0
    for t in run["trials"]:
        spent += t["steps"]
        if t["accuracy"] is not None and t["accuracy"] >= target - 1e-12:
            return spent
    return None


def summarise(runs: list[dict]) -> tuple[str, dict]:
    """Markdown tables: per sampler and pruner, medians over seeds, then the per-seed detail."""
    by = {(r["sampler"], r["pruner"], r["seed"]): r for r in runs}
    samplers = sorted({r["sampler"] for r in runs}, key=["random", "tpe"].index)
    pruners = [p for p in ("none", *PRUNER_PRESETS) if any(r["pruner"] == p for r in runs)]
    seeds = sorted({r["seed"] for r in runs})
    lines = [
        "| sampler | pruner | best accuracy (median) | same best as without pruning "
        "| total steps (median) | fewer steps (median) "
        "| steps until the no-pruning best was matched (median) | pruned trials (median) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    headline = {}
    for s in samplers:
        for p in pruners:
            rows = []
            for seed in seeds:
                ref, run = by[(s, "none", seed)], by[(s, p, seed)]
                total_ref = sum(t["steps"] for t in ref["trials"])
                total = sum(t["steps"] for t in run["trials"])
                rows.append(
                    {
                        "best": best(run),
                        "same": best(run) >= best(ref) - 1e-12,
                        "total": total,
                        "saving": 1 - total / total_ref,
                        "to_target": steps_to(run, best(ref)),
                        "pruned": sum(t["accuracy"] is None for t in run["trials"]),
                    }
                )
            reached = [r["to_target"] for r in rows if r["to_target"] is not None]
            saving = statistics.median(r["saving"] for r in rows)
            headline[(s, p)] = (saving, sum(r["same"] for r in rows), len(rows))
            lines.append(
                f"| {s} | {p} | {statistics.median(r['best'] for r in rows):.4f} "
                f"| {sum(r['same'] for r in rows)}/{len(rows)} seeds "
                f"| {statistics.median(r['total'] for r in rows):.0f} "
                f"| {saving:.0%} "
                f"| {statistics.median(reached) if reached else math.nan:.0f} "
                f"({len(reached)}/{len(rows)} matched) "
                f"| {statistics.median(r['pruned'] for r in rows):.0f} |"
            )
    detail = [
        "",
        "Per seed: best accuracy, total steps, and steps until the no-pruning best was matched "
        "(`/`: never):",
        "",
        "| sampler | pruner | " + " | ".join(f"seed {s}" for s in seeds) + " |",
        "|---|---|" + "---|" * len(seeds),
    ]
    for s in samplers:
        for p in pruners:
            cells = []
            for seed in seeds:
                ref, run = by[(s, "none", seed)], by[(s, p, seed)]
                n = steps_to(run, best(ref))
                total = sum(t["steps"] for t in run["trials"])
                cells.append(f"{best(run):.3f}, {total}, {'/' if n is None else n}")
            detail.append(f"| {s} | {p} | " + " | ".join(cells) + " |")
    return "\n".join(lines + detail), headline


def versions() -> str:
    import numpy
    import torch

    return (
        f"Python {platform.python_version()}, optuna {optuna.__version__}, torch {torch.__version__}, "
        f"numpy {numpy.__version__}; {platform.machine()}, {os.cpu_count()} CPU(s)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--n-trials", type=int, default=30)
    ap.add_argument("--samplers", default="random,tpe")
    ap.add_argument("--pruners", default="median,successive_halving,hyperband")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="2 seeds x 8 trials, docs untouched")
    ap.add_argument("--no-docs", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.seeds, args.n_trials, args.no_docs = 2, 8, True
    samplers = args.samplers.split(",")
    pruners = ["none"] + [p for p in args.pruners.split(",") if p != "none"]
    jobs = [
        (s, p, seed, args.n_trials) for s in samplers for p in pruners for seed in range(args.seeds)
    ]
    start = time.perf_counter()
    if args.workers > 1:
        with mp.get_context("spawn").Pool(args.workers) as pool:
            runs = pool.map(run_sweep, jobs, chunksize=1)
    else:
        runs = [run_sweep(job) for job in jobs]
    table, headline = summarise(runs)
    command = "python " + " ".join(
        shlex.quote(a) for a in ["benchmarks/pruning_benchmark.py", *sys.argv[1:]]
    )
    settings = {p: load_pruner(p) for p in pruners if p != "none"}
    grpo = load_recipe()["grpo"]
    met = [
        f"{s} + {p} ({saving:.0%} fewer steps, same best in {same}/{n} seeds)"
        for (s, p), (saving, same, n) in headline.items()
        if p != "none" and saving >= 0.4 and same == n
    ]
    body = "\n".join(
        [
            f"Command: `{command}` ({time.perf_counter() - start:.0f} s, {time.strftime('%Y-%m-%d')})",
            f"Versions: {versions()}",
            "",
            f"{args.seeds} seeds; per seed and sampler, one sweep of {args.n_trials} trials without a "
            "pruner and one with each pruner, same sampler and seed. Every trial is a real "
            "embedded-GRPO training (in-process), space conf/search_space/grpo.yaml, recipe "
            f"conf/recipe/grpo_tiny.yaml ({grpo['max_num_steps']} steps, a validation every "
            f"{grpo['val_period']}); objective: the final `{METRIC}` of a COMPLETE trial (maximize). "
            "Steps are training steps actually run, summed over the sweep's trials. 'Same best': the "
            "pruned sweep's best accuracy is at least the unpruned sweep's. 'Steps until matched': "
            "steps spent, trial by trial, until a trial matching the unpruned sweep's best finished. "
            "Samplers: random = nemo_rl_sweep RandomSampler (the same configurations with and without "
            "pruning), tpe = optuna TPESampler(n_startup_trials=5) (pruned trials change what it "
            "proposes).",
            "",
            "Pruners (the presets in conf/pruner/, `+pruner=<name>`): "
            + "; ".join(
                f"{k} = `{yaml.safe_dump(v, default_flow_style=True, width=1000).strip()}`"
                for k, v in settings.items()
            ),
            "",
            "Target, at least 40% fewer steps for the same best accuracy in every seed: "
            + ("met by " + "; ".join(met) if met else "not met")
            + ".",
            "",
            table,
        ]
    )
    print(body)
    if not args.no_docs:
        write_section(
            ROOT / "docs" / "benchmarks.md",
            "pruning",
            f"## Pruning (embedded GRPO trainer)\n\n{body}",
        )
        print("\nwritten to docs/benchmarks.md")


if __name__ == "__main__":
    main()
