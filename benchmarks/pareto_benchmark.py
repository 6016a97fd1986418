"""Multi-objective benchmark: our ParetoSampler against Optuna's samplers, side by side.

Runs every sampler on the same problems and seeds in one go and reports the hypervolume of the
trials found (reference point 1.1 in every objective, all objectives minimised) and the seconds each
suggestion took (the time of ``study.ask`` with the sampler's work in it). The table goes to stdout
and, between the markers ``<!-- pareto:start -->`` / ``<!-- pareto:end -->``, into docs/benchmarks.md
together with the exact command and the library versions. Numbers are whatever the run gives.

    python benchmarks/pareto_benchmark.py            # full run: 5 seeds, ~15-30 min on 2 cores
    python benchmarks/pareto_benchmark.py --quick    # smoke run, docs untouched
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import shlex
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
import optuna  # noqa: E402
from docs_section import write_section  # noqa: E402
from functions import DTLZ2_3_MAX_HV, ZDT1_MAX_HV, ZDT2_MAX_HV, dtlz2, zdt1, zdt2  # noqa: E402

from nemo_rl_sweep.pareto import hypervolume  # noqa: E402

# name -> (function, dimension, number of objectives, trials, true maximum hypervolume)
PROBLEMS = {
    "ZDT1": (zdt1, 6, 2, 60, ZDT1_MAX_HV),
    "ZDT2": (zdt2, 6, 2, 60, ZDT2_MAX_HV),
    "DTLZ2": (dtlz2, 6, 3, 80, DTLZ2_3_MAX_HV),
}
SAMPLERS = ["ours", "GPSampler", "NSGAIISampler", "TPESampler", "RandomSampler"]


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    """Each sampler with its defaults, only the seed set (ours as the sweeper would build it)."""
    if name == "ours":
        from nemo_rl_sweep.samplers.pareto import ParetoSampler

        return ParetoSampler(seed=seed)
    return getattr(optuna.samplers, name)(seed=seed)


def run_one(job: tuple[str, str, int, int]) -> dict:
    """One sampler on one problem with one seed; returns hypervolume and timings."""
    problem, sampler_name, seed, n_trials = job
    import torch

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    fn, dim, n_obj, _, _ = PROBLEMS[problem]
    study = optuna.create_study(
        directions=["minimize"] * n_obj, sampler=make_sampler(sampler_name, seed)
    )
    times = []
    for _ in range(n_trials):
        t0 = time.perf_counter()
        trial = study.ask()
        x = [trial.suggest_float(f"x{i}", 0.0, 1.0) for i in range(dim)]
        times.append(time.perf_counter() - t0)
        study.tell(trial, fn(x))
    values = np.array([t.values for t in study.trials])
    return {
        "problem": problem,
        "sampler": sampler_name,
        "seed": seed,
        "hv": hypervolume(values, [1.1] * n_obj),
        "s_mean": float(np.mean(times)),
        "s_last": float(np.mean(times[-5:])),
    }


def _q(a: list[float]) -> tuple[float, float, float]:
    q1, med, q3 = np.percentile(a, [25, 50, 75])
    return float(q1), float(med), float(q3)


def table(results: list[dict], problems: list[str], samplers: list[str]) -> str:
    rows = [
        "| problem | sampler | hypervolume median [q1, q3] | seconds/suggestion mean | "
        "seconds/suggestion, last 5 trials |",
        "|---|---|---|---|---|",
    ]
    for p in problems:
        fn, dim, n_obj, n_trials, hv_max = PROBLEMS[p]
        for s in samplers:
            rs = [r for r in results if r["problem"] == p and r["sampler"] == s]
            if not rs:
                continue
            q1, med, q3 = _q([r["hv"] for r in rs])
            rows.append(
                f"| {p} ({dim}-D, {n_obj} obj, {rs[0]['n_trials']} trials, max {hv_max:.4f}) "
                f"| {s} | {med:.4f} [{q1:.4f}, {q3:.4f}] | {np.mean([r['s_mean'] for r in rs]):.3f} "
                f"| {np.median([r['s_last'] for r in rs]):.3f} |"
            )
    return "\n".join(rows)


def versions() -> str:
    import torch

    return (
        f"python {platform.python_version()}, optuna {optuna.__version__}, "
        f"numpy {np.__version__}, torch {torch.__version__}"
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 seeds, 20 trials")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    ap.add_argument("--problems", nargs="+", default=list(PROBLEMS), choices=list(PROBLEMS))
    ap.add_argument("--samplers", nargs="+", default=SAMPLERS, choices=SAMPLERS)
    ap.add_argument("--docs", default=str(ROOT / "docs" / "benchmarks.md"))
    ap.add_argument("--no-docs", action="store_true", help="do not write docs/benchmarks.md")
    args = ap.parse_args(argv)

    seeds = list(range(2 if args.quick else args.seeds))
    jobs = []
    for p in args.problems:
        n_trials = 20 if args.quick else PROBLEMS[p][3]
        # slow samplers first so the pool's tail is short
        for s in sorted(args.samplers, key=lambda n: n not in ("ours", "GPSampler")):
            jobs += [(p, s, seed, n_trials) for seed in seeds]
    t0 = time.time()
    results = []
    ctx = mp.get_context("spawn")
    with ctx.Pool(args.workers) as pool:
        for r, job in zip(pool.imap(run_one, jobs), jobs, strict=True):
            r["n_trials"] = job[3]
            results.append(r)
            print(
                f"{r['problem']:6s} {r['sampler']:14s} seed {r['seed']}: hv {r['hv']:.4f} "
                f"{r['s_mean']:.3f} s/suggestion",
                flush=True,
            )
    wall = time.time() - t0
    md = table(results, args.problems, args.samplers)
    cmd = "python " + " ".join(
        shlex.quote(a) for a in [os.path.relpath(__file__, ROOT)] + sys.argv[1:]
    )
    body = (
        "## Pareto strategy (multi-objective)\n\n"
        f"Hypervolume of all trials at reference point 1.1 in every objective (all minimised), "
        f"{len(seeds)} seeds ({', '.join(map(str, seeds))}), each sampler with its defaults and "
        f"the seed; seconds per suggestion is the time of `study.ask()` (sampler work included). "
        f"All samplers ran side by side in one run, {args.workers} worker processes, one torch "
        f"thread each, wall time {wall / 60:.1f} min.\n\n"
        f"Command: `{cmd}`  \nVersions: {versions()}\n\n{md}\n"
    )
    print("\n" + body)
    if not (args.quick or args.no_docs):
        write_section(Path(args.docs), "pareto", body)
        print(f"wrote {args.docs}")


if __name__ == "__main__":
    main()
