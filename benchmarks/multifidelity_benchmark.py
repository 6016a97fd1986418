"""Multi-fidelity benchmark: trainer steps (the GPU-time proxy) until a sweep first holds a
configuration whose final value is within a stated tolerance of the problem's best achievable final
value, for ``strategy: multifidelity`` and its peers, side by side in one run.

Problems (maximise; 100 training steps, a validation every 10, as ``conf/recipe/grpo_tiny.yaml``):

* ``grpo``: the embedded GRPO trainer's real ``validation/accuracy`` curves over a 10 x 5 x 3 x 4 grid
  of lr, KL penalty, generations per prompt and temperature (``benchmarks/grpo_curves.py`` trains every
  point once and caches the curves: the best achievable value is then known exactly, and a curve costs
  the sweep nothing to re-read). Each parameter is an index into its values (an ordered integer).
* ``saturating``: y(x, t) = A(x) (1 - exp(-r(x) t)), x in [0, 1]^3. The rate r grows with x0 (a
  learning rate) and the ceiling A is highest at small x0, so fast starters end below a slow one.
* ``peaking``: the same rise minus a late decline D(x) (t / 100)^2 that grows with x0 (a learning
  rate that diverges): curves rise, cross and fall; x in [0, 1]^4.
  Both synthetic families report the curve plus Gaussian noise (sd 0.01) at each validation; a
  configuration is judged by its noise-free final value, whose maximum is found numerically.

A sweep runs one trial at a time (ask, report each validation, stop when the pruner says so, tell)
until it has spent ``--budget`` steps. Steps are the steps a trial trained (a stopped trial counts up
to its last validation). "Holds a configuration" = a COMPLETE trial (trained to the end: a stopped
run is not a model anyone would ship) whose true final value is within the tolerance.

Peers: Optuna TPE + HyperbandPruner (the BOHB recipe), Optuna RandomSampler + SuccessiveHalvingPruner
(ASHA), Optuna GPSampler + MedianPruner, this project's bayes + MedianPruner and bayes without
pruning; the pruners are the presets of conf/pruner/ as users get them (``+pruner=<name>``).

    python benchmarks/multifidelity_benchmark.py --seeds 10 --first-seed 10  # full run, writes docs/benchmarks.md
    # (seeds 0-7 were used to choose the model and stop-rule settings; 10+ are fresh)
    python benchmarks/multifidelity_benchmark.py --quick         # 2 seeds, small budget, docs untouched
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import platform
import shlex
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
import optuna  # noqa: E402
import yaml  # noqa: E402
from docs_section import write_section  # noqa: E402
from optuna.distributions import FloatDistribution, IntDistribution  # noqa: E402

STEPS = list(range(10, 101, 10))
MAX_STEP = 100
NOISE_SD = 0.01
STRATEGIES = ["multifidelity", "bohb", "asha", "gp_median", "bayes_median", "bayes"]
LABELS = {
    "multifidelity": "multifidelity (ours)",
    "bohb": "TPE + Hyperband (BOHB)",
    "asha": "Random + SuccessiveHalving (ASHA)",
    "gp_median": "GPSampler + Median",
    "bayes_median": "bayes + Median",
    "bayes": "bayes, no pruning",
}


@dataclass
class Problem:
    name: str
    space: dict[str, Any]
    curve: Callable[[dict[str, Any]], list[float]]  # reported values at STEPS (noise included)
    true_final: Callable[[dict[str, Any]], float]
    best: float
    tolerance: float
    share_within: float  # share of the space (grid, or 20000 uniform points) within tolerance


# -- synthetic families -------------------------------------------------------------------------
def _rise(x: np.ndarray, t: np.ndarray) -> np.ndarray:
    rate = 0.004 * 40.0 ** x[0]  # 0.004 .. 0.16 per step
    ceiling = 1.0 - 0.5 * (x[0] - 0.15) ** 2 - 0.4 * (x[1] - 0.6) ** 2 - 0.3 * (x[2] - 0.35) ** 2
    return ceiling * (1.0 - np.exp(-rate * t))


def saturating(x: np.ndarray, t: np.ndarray) -> np.ndarray:
    return _rise(x, t)


def peaking(x: np.ndarray, t: np.ndarray) -> np.ndarray:
    decline = (0.6 * x[0] ** 2 + 0.2 * (x[3] - 0.7) ** 2) * (t / MAX_STEP) ** 2
    return _rise(x, t) - decline


def _true_best(fn: Callable, dim: int) -> tuple[float, np.ndarray]:
    import scipy.optimize

    rng = np.random.RandomState(0)
    U = rng.uniform(size=(20000, dim))
    finals = np.array([fn(u, np.array([MAX_STEP]))[0] for u in U])
    best = -np.inf
    for u in U[np.argsort(-finals)[:20]]:
        res = scipy.optimize.minimize(
            lambda z: -fn(z, np.array([MAX_STEP]))[0], u, bounds=[(0, 1)] * dim, method="L-BFGS-B"
        )
        best = max(best, -res.fun)
    return float(best), finals


def synthetic(name: str, fn: Callable, dim: int, tolerance: float) -> Problem:
    space = {f"x{i}": FloatDistribution(0.0, 1.0) for i in range(dim)}
    best, finals = _true_best(fn, dim)

    def vec(p: dict) -> np.ndarray:
        return np.array([p[f"x{i}"] for i in range(dim)])

    def curve(p: dict) -> list[float]:
        x = vec(p)
        rng = np.random.RandomState(abs(hash(tuple(np.round(x, 12)))) % 2**31)
        return list(
            fn(x, np.array(STEPS, dtype=float)) + NOISE_SD * rng.standard_normal(len(STEPS))
        )

    return Problem(
        name,
        space,
        curve,
        lambda p: float(fn(vec(p), np.array([MAX_STEP]))[0]),
        best,
        tolerance,
        float(np.mean(finals >= best - tolerance)),
    )


def grpo(tolerance: float) -> Problem:
    from grpo_curves import load

    data = load()
    sizes = [len(v) for v in data["grid"].values()]
    names = list(data["grid"])
    space = {n: IntDistribution(0, s - 1) for n, s in zip(names, sizes, strict=True)}
    curves = {k: dict((int(s), v) for s, v in c) for k, c in data["curves"].items()}

    def key(p: dict) -> str:
        return ",".join(str(int(p[n])) for n in names)

    def curve(p: dict) -> list[float]:
        c = curves[key(p)]
        return [c[s] for s in STEPS]

    finals = np.array([c[MAX_STEP] for c in curves.values()])
    best = float(finals.max())
    return Problem(
        "grpo",
        space,
        curve,
        lambda p: curves[key(p)][MAX_STEP],
        best,
        tolerance,
        float(np.mean(finals >= best - tolerance)),
    )


def problems(names: list[str]) -> dict[str, Problem]:
    makers = {
        "grpo": lambda: grpo(0.02),
        "saturating": lambda: synthetic("saturating", saturating, 3, 0.01),
        "peaking": lambda: synthetic("peaking", peaking, 4, 0.01),
    }
    return {n: makers[n]() for n in names}


# -- strategies ---------------------------------------------------------------------------------
def _preset(name: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / "conf" / "pruner" / f"{name}.yaml").read_text())["pruner"]


def make(strategy: str, problem: Problem, seed: int) -> tuple[Any, Any]:
    """(sampler, pruner) of a strategy, each with its defaults and the seed."""
    from nemo_rl_sweep.samplers.bayes import BayesSampler
    from nemo_rl_sweep.samplers.multifidelity import CurvePruner, MultiFidelitySampler
    from nemo_rl_sweep.targets import build_from_target

    def pruner(name: str) -> Any:
        return build_from_target(_preset(name), optuna.pruners.BasePruner, "pruner")

    if strategy == "multifidelity":
        sampler = MultiFidelitySampler(problem.space, seed=seed)
        return sampler, build_from_target(sampler.pruner_node(), CurvePruner, "pruner")
    if strategy == "bohb":
        return optuna.samplers.TPESampler(seed=seed), pruner("hyperband")
    if strategy == "asha":
        return optuna.samplers.RandomSampler(seed=seed), pruner("successive_halving")
    if strategy == "gp_median":
        gp = optuna.samplers.GPSampler(seed=seed, warn_independent_sampling=False)
        return gp, pruner("median")
    if strategy == "bayes_median":
        return BayesSampler(problem.space, seed=seed), pruner("median")
    if strategy == "bayes":
        return BayesSampler(problem.space, seed=seed), optuna.pruners.NopPruner()
    raise ValueError(strategy)


def run_sweep(job: tuple[str, str, int, int]) -> dict[str, Any]:
    """One sweep until ``budget`` steps are spent; per trial: steps, state, true final value."""
    problem_name, strategy, seed, budget = job
    import torch

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore")
    problem = problems([problem_name])[problem_name]
    sampler, pruner = make(strategy, problem, seed)
    start = time.perf_counter()
    trials = sweep(problem, sampler, pruner, budget, f"{problem_name}-{strategy}-{seed}")
    return {
        "problem": problem_name,
        "strategy": strategy,
        "seed": seed,
        "trials": trials,
        "seconds": time.perf_counter() - start,
    }


def sweep(problem: Problem, sampler: Any, pruner: Any, budget: int, name: str) -> list:
    """Ask, report each validation, stop when the pruner says so, tell, until ``budget`` steps.

    ``name`` is the study's name: Optuna's HyperbandPruner assigns each trial its bracket from a
    checksum of the study name and the trial number, so an unnamed study (a random name) would
    make the BOHB row differ from run to run with the same seeds.

    Returns per trial (steps spent so far, true final value or None if stopped).
    """
    study = optuna.create_study(
        study_name=name, direction="maximize", sampler=sampler, pruner=pruner
    )
    spent, trials = 0, []
    while spent < budget:
        trial = study.ask(problem.space)
        params = {n: trial.params[n] for n in problem.space}
        values = problem.curve(params)
        last = MAX_STEP
        for step, value in zip(STEPS, values, strict=True):
            trial.report(float(value), step)
            if step < MAX_STEP and trial.should_prune():
                last = step
                break
        spent += last
        if last == MAX_STEP:
            study.tell(trial, float(values[-1]))
            trials.append((spent, problem.true_final(params)))
        else:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            trials.append((spent, None))
    return trials


# -- summary ------------------------------------------------------------------------------------
def steps_to_target(run: dict, target: float) -> int | None:
    for spent, final in run["trials"]:
        if final is not None and final >= target - 1e-12:
            return spent
    return None


def best_final(run: dict) -> float:
    return max((f for _, f in run["trials"] if f is not None), default=-math.inf)


def _q(vals: list[float], fmt: str) -> str:
    q1, med, q3 = np.percentile(vals, [25, 50, 75])
    return f"{med:{fmt}} [{q1:{fmt}}, {q3:{fmt}}]"


def summarise(runs: list[dict], probs: dict[str, Problem], budget: int) -> tuple[str, list[str]]:
    lines = [
        "| problem | strategy | steps to target, median [IQR] | reached | best final value, "
        "median [IQR] | trials (median) | stopped early (median) | seconds per sweep (median) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    verdicts = []
    for pname, prob in probs.items():
        target = prob.best - prob.tolerance
        medians = {}
        for strategy in STRATEGIES:
            rs = [r for r in runs if r["problem"] == pname and r["strategy"] == strategy]
            if not rs:
                continue
            # a sweep that never reached the target counts as its whole budget (censored, a lower bound)
            steps = [steps_to_target(r, target) or budget for r in rs]
            reached = sum(steps_to_target(r, target) is not None for r in rs)
            finals = [best_final(r) for r in rs]
            medians[strategy] = (float(np.median(steps)), float(np.median(finals)), reached)
            lines.append(
                f"| {pname} | {LABELS[strategy]} | {_q(steps, '.0f')} | {reached}/{len(rs)} "
                f"| {_q(finals, '.4f')} | {np.median([len(r['trials']) for r in rs]):.0f} "
                f"| {np.median([sum(f is None for _, f in r['trials']) for r in rs]):.0f} "
                f"| {np.median([r['seconds'] for r in rs]):.1f} |"
            )
        if "multifidelity" in medians and len(medians) > 1:
            ours = medians["multifidelity"]
            peer = min((v[0], k) for k, v in medians.items() if k != "multifidelity")
            best_peer_final = max(v[1] for k, v in medians.items() if k != "multifidelity")
            ratio = ours[0] / peer[0]
            met = ratio <= 0.5 and ours[1] >= best_peer_final - 1e-12
            verdicts.append(
                f"{pname}: {ours[0]:.0f} steps vs {peer[0]:.0f} for the best peer "
                f"({LABELS[peer[1]]}), ratio {ratio:.2f}; median best final {ours[1]:.4f} vs "
                f"{best_peer_final:.4f} (best peer median): target {'met' if met else 'NOT met'}"
            )
    return "\n".join(lines), verdicts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument(
        "--first-seed", type=int, default=0, help="seeds first..first+seeds-1 (fresh ones: 10+)"
    )
    ap.add_argument("--budget", type=int, default=2000, help="steps per sweep (20 full runs)")
    ap.add_argument("--problems", default="grpo,saturating,peaking")
    ap.add_argument("--strategies", default=",".join(STRATEGIES))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="2 seeds, budget 1500, docs untouched")
    ap.add_argument("--no-docs", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.seeds, args.budget, args.no_docs = 2, 1500, True
    names = args.problems.split(",")
    strategies = args.strategies.split(",")
    probs = problems(names)
    jobs = [
        (p, s, seed, args.budget)
        for p in names
        for s in strategies
        for seed in range(args.first_seed, args.first_seed + args.seeds)
    ]
    jobs.sort(key=lambda j: j[1] not in ("multifidelity", "gp_median"))  # slow ones first
    start = time.perf_counter()
    if args.workers > 1:
        with mp.get_context("spawn").Pool(args.workers) as pool:
            runs = pool.map(run_sweep, jobs, chunksize=1)
    else:
        runs = [run_sweep(j) for j in jobs]
    table, verdicts = summarise(runs, probs, args.budget)
    command = "python " + " ".join(
        shlex.quote(a) for a in ["benchmarks/multifidelity_benchmark.py", *sys.argv[1:]]
    )
    import torch

    problem_lines = [
        f"- {p.name}: best achievable final value {p.best:.4f}, tolerance {p.tolerance}, "
        f"{p.share_within:.1%} of the space within it"
        for p in probs.values()
    ]
    body = "\n".join(
        [
            f"Command: `{command}` ({(time.perf_counter() - start) / 60:.1f} min, "
            f"{args.workers} worker processes, {time.strftime('%Y-%m-%d')})",
            f"Versions: python {platform.python_version()}, optuna {optuna.__version__}, "
            f"numpy {np.__version__}, torch {torch.__version__}",
            "",
            __doc__.split("\n\n", 1)[1].split("\n    python")[0].strip(),
            "",
            f"{args.seeds} seeds ({args.first_seed}..{args.first_seed + args.seeds - 1}), "
            f"{args.budget} steps per sweep. 'Steps to "
            "target' counts a sweep that never reached the target as its whole budget (so its "
            "median is a lower bound when 'reached' is below all seeds).",
            "",
            *problem_lines,
            "",
            table,
            "",
            "Target (at most half the steps of the best peer, median best final value no worse):",
            "",
            *[f"- {v}" for v in verdicts],
        ]
    )
    print(body)
    if not args.no_docs:
        write_section(
            ROOT / "docs" / "benchmarks.md",
            "multifidelity",
            f"## Multi-fidelity: steps to a good configuration\n\n{body}",
        )
        print("\nwritten to docs/benchmarks.md")


if __name__ == "__main__":
    main()
