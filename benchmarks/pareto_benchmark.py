"""Multi-objective benchmark: our ParetoSampler against Optuna's samplers, side by side.

Runs every sampler on the same problems and seeds in one go and reports the hypervolume of the
trials found (at each problem's reference point, 1.1 in every objective but DTLZ7's last, all
objectives minimised) and the seconds each suggestion took (the time of ``study.ask`` with the
sampler's work in it). Our sampler runs twice: with its default reference point (``ours``) and
given the problem's reference point (``ours+ref``). ZDT3 and DTLZ7 have disconnected fronts. The
table goes to stdout and, between the markers ``<!-- pareto:start -->`` /
``<!-- pareto:end -->``, into docs/benchmarks.md together with the exact command and the library
versions. Numbers are whatever the run gives.

    python benchmarks/pareto_benchmark.py            # full run: 10 seeds, ~2 h on 2 cores
    python benchmarks/pareto_benchmark.py --quick    # smoke run, docs untouched

Optuna's samplers do not depend on this project's code, and GPSampler takes most of a run's time:
``--save FILE`` writes every result as it comes (one JSON object a line) and ``--load FILE ...``
adds the results of earlier runs for the (problem, sampler, seed) jobs this run does not do, so
the slow rows can run at once on a shared machine and be combined:

    python benchmarks/pareto_benchmark.py --samplers GPSampler NSGAIISampler TPESampler \
        RandomSampler --save optuna.jsonl --no-docs
    python benchmarks/pareto_benchmark.py --samplers ours --save ours.jsonl --no-docs
    python benchmarks/pareto_benchmark.py --samplers --load ours.jsonl optuna.jsonl

The docs then name every run's command. ``--first-seed`` splits the seeds the same way (seeds 5-9
of the slow samplers while seeds 0-4 are on record). Ten seeds, not five: on the disconnected
fronts one seed's hypervolume swings by a quarter with the pieces it finds, and the median of five
moved by 10% between seed sets (ZDT3 with the default reference: 1.08 on seeds 0-4, 1.19 on 0-9).
"""

from __future__ import annotations

import argparse
import json
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
from functions import (  # noqa: E402
    DTLZ2_3_MAX_HV,
    DTLZ7_3_MAX_HV,
    DTLZ7_3_REF,
    ZDT1_MAX_HV,
    ZDT2_MAX_HV,
    ZDT3_MAX_HV,
    ZDT3_REF,
    dtlz2,
    dtlz7,
    zdt1,
    zdt2,
    zdt3,
)

from nemo_rl_sweep.pareto import hypervolume  # noqa: E402

# name -> (function, dimension, number of objectives, trials, hypervolume reference point,
# true maximum hypervolume); ZDT3 and DTLZ7 have disconnected fronts (issue 18).
PROBLEMS = {
    "ZDT1": (zdt1, 6, 2, 60, (1.1, 1.1), ZDT1_MAX_HV),
    "ZDT2": (zdt2, 6, 2, 60, (1.1, 1.1), ZDT2_MAX_HV),
    "DTLZ2": (dtlz2, 6, 3, 80, (1.1, 1.1, 1.1), DTLZ2_3_MAX_HV),
    "ZDT3": (zdt3, 6, 2, 60, ZDT3_REF, ZDT3_MAX_HV),
    "DTLZ7": (dtlz7, 6, 3, 80, DTLZ7_3_REF, DTLZ7_3_MAX_HV),
}
# "ours+ref" is our sampler given the hypervolume reference point as its ``reference_point``;
# Optuna's samplers have no such option, so they appear once, with their defaults.
SAMPLERS = ["ours", "ours+ref", "GPSampler", "NSGAIISampler", "TPESampler", "RandomSampler"]


def make_sampler(name: str, seed: int, ref: tuple[float, ...]) -> optuna.samplers.BaseSampler:
    """Each sampler with its defaults, only the seed set (ours as the sweeper would build it;
    ``ours+ref`` also gets the problem's reference point)."""
    if name in ("ours", "ours+ref"):
        from nemo_rl_sweep.samplers.pareto import ParetoSampler

        return ParetoSampler(seed=seed, reference_point=list(ref) if name == "ours+ref" else None)
    return getattr(optuna.samplers, name)(seed=seed)


def run_one(job: tuple[str, str, int, int]) -> dict:
    """One sampler on one problem with one seed; returns hypervolume and timings."""
    problem, sampler_name, seed, n_trials = job
    import torch

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    fn, dim, n_obj, _, ref, _ = PROBLEMS[problem]
    study = optuna.create_study(
        directions=["minimize"] * n_obj, sampler=make_sampler(sampler_name, seed, ref)
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
        "hv": hypervolume(values, list(ref)),
        "s_mean": float(np.mean(times)),
        "s_last": float(np.mean(times[-5:])),
    }


def _q(a: list[float]) -> tuple[float, float, float]:
    q1, med, q3 = np.percentile(a, [25, 50, 75])
    return float(q1), float(med), float(q3)


def table(
    results: list[dict], problems: list[str], samplers: list[str], n_seeds: int | None = None
) -> str:
    """Markdown rows; a row over fewer than ``n_seeds`` seeds (a loaded run stopped early) says
    how many it has."""
    rows = [
        "| problem | sampler | hypervolume median [q1, q3] | seconds/suggestion mean | "
        "seconds/suggestion, last 5 trials |",
        "|---|---|---|---|---|",
    ]
    for p in problems:
        fn, dim, n_obj, n_trials, ref, hv_max = PROBLEMS[p]
        for s in samplers:
            rs = [r for r in results if r["problem"] == p and r["sampler"] == s]
            if not rs:
                continue
            q1, med, q3 = _q([r["hv"] for r in rs])
            name = s if len(rs) == n_seeds else f"{s} ({len(rs)} seeds)"
            rows.append(
                f"| {p} ({dim}-D, {n_obj} obj, {rs[0]['n_trials']} trials, ref "
                f"({', '.join(f'{v:g}' for v in ref)}), max {hv_max:.4f}) "
                f"| {name} | {med:.4f} [{q1:.4f}, {q3:.4f}] "
                f"| {np.mean([r['s_mean'] for r in rs]):.3f} "
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
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument(
        "--first-seed", type=int, default=0, help="seeds first..first+seeds-1 (to split a run)"
    )
    ap.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    ap.add_argument("--problems", nargs="+", default=list(PROBLEMS), choices=list(PROBLEMS))
    ap.add_argument(
        "--samplers", nargs="*", default=SAMPLERS, choices=SAMPLERS, help="none: only --load"
    )
    ap.add_argument("--docs", default=str(ROOT / "docs" / "benchmarks.md"))
    ap.add_argument("--no-docs", action="store_true", help="do not write docs/benchmarks.md")
    ap.add_argument("--save", help="write every result to this file (JSON lines)")
    ap.add_argument(
        "--load",
        nargs="+",
        default=[],
        help="add earlier runs' results (--save) for jobs not run now",
    )
    args = ap.parse_args(argv)

    seeds = list(range(args.first_seed, args.first_seed + (2 if args.quick else args.seeds)))
    jobs = []
    for p in args.problems:
        n_trials = 20 if args.quick else PROBLEMS[p][3]
        # slow samplers first so the pool's tail is short
        for s in sorted(args.samplers, key=lambda n: n not in ("ours", "ours+ref", "GPSampler")):
            jobs += [(p, s, seed, n_trials) for seed in seeds]
    cmd = "python " + " ".join(
        shlex.quote(a) for a in [os.path.relpath(__file__, ROOT)] + sys.argv[1:]
    )
    # results are saved as they come, so a run cut short keeps what it finished
    save = open(args.save, "w") if args.save else None  # noqa: SIM115
    if save:
        save.write(json.dumps({"command": cmd, "versions": versions()}) + "\n")
    t0 = time.time()
    results = []
    ctx = mp.get_context("spawn")
    with ctx.Pool(args.workers) as pool:
        for r, job in zip(pool.imap(run_one, jobs), jobs, strict=True):
            r["n_trials"] = job[3]
            results.append(r)
            if save:
                save.write(json.dumps(r) + "\n")
                save.flush()
            print(
                f"{r['problem']:6s} {r['sampler']:14s} seed {r['seed']}: hv {r['hv']:.4f} "
                f"{r['s_mean']:.3f} s/suggestion",
                flush=True,
            )
    wall = time.time() - t0
    if save:
        save.write(json.dumps({"wall_min": wall / 60}) + "\n")
        save.close()
    samplers, loaded = list(args.samplers), []
    for path in args.load:
        done = {(r["problem"], r["sampler"], r["seed"]) for r in results}
        rows = [json.loads(line) for line in Path(path).read_text().splitlines()]
        meta = {k: v for r in rows if "problem" not in r for k, v in r.items()}
        earlier = [r for r in rows if r.get("problem") in args.problems and r["seed"] in seeds]
        earlier = [r for r in earlier if (r["problem"], r["sampler"], r["seed"]) not in done]
        results += earlier
        names = sorted({r["sampler"] for r in earlier}, key=SAMPLERS.index)
        samplers = [s for s in SAMPLERS if s in samplers or s in names]
        wall_text = (
            f"{meta['wall_min']:.1f} min"
            if "wall_min" in meta
            else "stopped early, its finished jobs"
        )
        loaded.append(
            f"{', '.join(names)}: `{meta.get('command', path)}` ({meta.get('versions', '')}, "
            f"{wall_text})"
        )
    md = table(results, args.problems, samplers, len(seeds))
    body = (
        "## Pareto strategy (multi-objective)\n\n"
        f"Hypervolume of all trials at the reference point in the problem's row (all minimised), "
        f"{len(seeds)} seeds ({', '.join(map(str, seeds))}), each sampler with its defaults and "
        f"the seed. `ours` derives its reference point from the data (the default users get), "
        f"`ours+ref` is handed the row's reference point (`reference_point`); Optuna's samplers "
        f"have no reference-point option, so they run once, with their defaults. ZDT3 and DTLZ7 "
        f"have disconnected fronts (5 and 4 pieces). Seconds per suggestion is the time of "
        f"`study.ask()` (sampler work included). "
        + (
            f"The rows come from runs of the benchmark saved with `--save` (each sampler's "
            f"jobs side by side, 2 worker processes, one torch thread each; the machine was "
            f"shared, so seconds compare only within a run): {'; '.join(loaded)}; combined by "
            f"the command below.\n\n"
            if loaded
            else f"All samplers ran side by side in one run, {args.workers} worker processes, "
            f"one torch thread each, wall time {wall / 60:.1f} min.\n\n"
        )
        + f"Command: `{cmd}`  \nVersions: {versions()}\n\n{md}\n"
    )
    print("\n" + body)
    if not (args.quick or args.no_docs):
        write_section(Path(args.docs), "pareto", body)
        print(f"wrote {args.docs}")


if __name__ == "__main__":
    main()
