"""Confirmation: the top configurations of a search, re-run with new seeds, judged by their mean.

RL training is noisy from seed to seed, so the single best trial of a search is often a lucky one.
After the search, the ``top_k`` best distinct configurations (for several objectives: the members of
the Pareto front) run again ``seeds`` times, each time with a new value of the trainer's seed key. The
runs are ordinary trials of the same study, marked with the ``confirmation`` user attribute, so they
are in the ledger, resume, and show in the dashboard like any other trial. The answer is then the
configuration with the best mean over all its complete runs (its search trial included), with the
standard deviation and the number of runs, and it says whether the search's best trial held up.

Everything here reads trials and returns plain values: the loop decides when to enqueue the runs, the
result files and the summary decide how to show the answer. What it needs again later (the settings,
the seed key and its values) is stored on the study, so a report of the ledger alone shows the same
answer.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from nemo_rl_sweep import ledger
from nemo_rl_sweep.claims import Claim, close_surplus
from nemo_rl_sweep.errors import SweepConfigError

# a confirmation trial's user attribute:
# {"seed_key": ..., "seed": ..., "of": <search trial number>, "params": <the configuration>}
ATTR_CONFIRMATION = ledger.ATTR_CONFIRMATION
# the study's record of the confirmation settings: {"top_k", "seeds", "seed_key", "seed_values"}
STUDY_ATTR_CONFIRM = "nemo_rl_sweep.confirm"

# The trainer's seed, as NeMo RL recipes spell it (one section per algorithm; the embedded trainer
# reads grpo.seed like NeMo RL's GRPO). The first one the trial config has is used.
SEED_KEYS = (
    "grpo.seed",
    "sft.seed",
    "dpo.seed",
    "rm.seed",
    "distillation.seed",
    "seed",
)
CONFIRM_KEYS = ("top_k", "seeds", "seed_key")
KEY = "hydra.sweeper.confirm"


@dataclass(frozen=True)
class ConfirmSettings:
    """``hydra.sweeper.confirm``: re-run the ``top_k`` best configurations ``seeds`` times each."""

    top_k: int
    seeds: int
    seed_key: str | None = None  # None: the first of SEED_KEYS the trial config has


def check_confirm(
    confirm: Mapping[str, Any] | None, n_trials: int | None
) -> ConfirmSettings | None:
    """The confirmation settings, or None when confirmation is off (no node, or ``top_k: null``).

    ``n_trials`` bounds how many trials the search can complete (None: a whole grid, unbounded here).
    """
    if confirm is None:
        return None
    if not isinstance(confirm, Mapping):
        raise SweepConfigError(
            KEY, f"must be a mapping, got {confirm!r}", "e.g. hydra.sweeper.confirm.top_k=3"
        )
    unknown = sorted(set(confirm) - set(CONFIRM_KEYS))
    if unknown:
        raise SweepConfigError(
            f"{KEY}.{unknown[0]}", "is not a confirmation setting", "use top_k, seeds or seed_key"
        )
    top_k = confirm.get("top_k")
    if top_k is None:
        return None
    if not _positive_int(top_k):
        raise SweepConfigError(
            f"{KEY}.top_k",
            f"must be a positive integer, got {top_k!r}",
            "e.g. confirm.top_k=3, or leave it null for no confirmation",
        )
    if n_trials is not None and top_k > n_trials:
        raise SweepConfigError(
            f"{KEY}.top_k",
            f"is {top_k}, more than the {n_trials} trials the search completes at most",
            f"set confirm.top_k to {n_trials} or fewer, or raise hydra.sweeper.n_trials",
        )
    seeds = confirm.get("seeds", 3)
    if not _positive_int(seeds):
        raise SweepConfigError(
            f"{KEY}.seeds",
            f"must be a positive integer, got {seeds!r}",
            "e.g. confirm.seeds=3 (new seeds per confirmed configuration)",
        )
    seed_key = confirm.get("seed_key")
    if seed_key is not None and (not isinstance(seed_key, str) or not seed_key.strip()):
        raise SweepConfigError(
            f"{KEY}.seed_key",
            f"must be a config key or null, got {seed_key!r}",
            "e.g. confirm.seed_key=grpo.seed, or null to find the trainer's seed key",
        )
    return ConfirmSettings(int(top_k), int(seeds), seed_key)


def find_seed_key(
    lookup: Callable[[str], Any],
    settings: ConfirmSettings,
    swept: Sequence[str] = (),
) -> tuple[str, int]:
    """The trial config's seed key and its value there (the seed every search trial ran with).

    ``lookup(key)`` returns the trial config's value at ``key`` or raises ``KeyError``. A seed key
    that is swept cannot be given new values by confirmation, so it is refused too.
    """
    keys = (settings.seed_key,) if settings.seed_key else SEED_KEYS
    for key in keys:
        try:
            value = lookup(key)
        except KeyError:
            continue
        if key in swept:
            raise SweepConfigError(
                key,
                "is swept, but confirmation re-runs configurations with new values of this seed key",
                "do not sweep the seed key, or turn confirmation off (confirm.top_k=null)",
            )
        if not _int_like(value):
            raise SweepConfigError(
                key,
                f"must be an integer seed for confirmation, got {value!r}",
                "set it to an integer in the recipe",
            )
        return key, int(value)
    if settings.seed_key:
        raise SweepConfigError(
            f"{KEY}.seed_key",
            f"{settings.seed_key} is not a key of the trial config",
            "name the key the trainer reads its seed from, e.g. grpo.seed",
        )
    raise SweepConfigError(
        KEY,
        "no seed key found in the trial config (looked for " + ", ".join(SEED_KEYS) + ")",
        "set hydra.sweeper.confirm.seed_key to the key the trainer reads its seed from",
    )


def seed_values(base_seed: int, seeds: int) -> list[int]:
    """New seeds, different from the search's: the same ones for every configuration, so the
    configurations are compared on equal draws (and a resume plans the same runs)."""
    return [base_seed + i for i in range(1, seeds + 1)]


def record_settings(
    study: optuna.Study, settings: ConfirmSettings, seed_key: str, base_seed: int
) -> dict[str, Any]:
    """Store what the answer needs on the study, so a report of the ledger alone can compute it."""
    record = {
        "top_k": settings.top_k,
        "seeds": settings.seeds,
        "seed_key": seed_key,
        "seed_values": seed_values(base_seed, settings.seeds),
    }
    study.set_user_attr(STUDY_ATTR_CONFIRM, record)
    return record


# ------------------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class ConfirmRun:
    """One confirmation run: a configuration of search trial ``of`` with the seed key set to ``seed``."""

    params: dict[str, Any]
    seed_key: str
    seed: int
    of: int

    def attr(self) -> dict[str, Any]:
        return {"seed_key": self.seed_key, "seed": self.seed, "of": self.of, "params": self.params}


def is_confirmation(trial: FrozenTrial | optuna.Trial) -> bool:
    return bool(trial.user_attrs.get(ATTR_CONFIRMATION))


def config_key(params: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """Equal configurations, equal keys (values by repr, so any value type is hashable)."""
    return tuple(sorted((k, repr(v)) for k, v in params.items()))


def candidates(
    trials: Sequence[FrozenTrial], directions: Sequence[StudyDirection], top_k: int
) -> list[FrozenTrial]:
    """The search trials whose configurations are confirmed, one per distinct configuration.

    One objective: the ``top_k`` best distinct configurations, best first (a configuration is
    represented by its best search trial). Several: the members of the search's Pareto front in
    order of the first objective, at most ``top_k`` of them, spread evenly along the front.
    """
    search = [t for t in trials if t.state == TrialState.COMPLETE and not is_confirmation(t)]
    if len(directions) == 1:
        ranked = sorted(search, key=lambda t: (_signed(t.values, directions)[0], t.number))
        return _distinct(ranked)[:top_k]
    front = _distinct(sorted(_front(search, directions), key=lambda t: (t.values[0], t.number)))
    if len(front) <= top_k:
        return front
    if top_k == 1:
        return [front[0]]
    picks = sorted({round(i * (len(front) - 1) / (top_k - 1)) for i in range(top_k)})
    return [front[i] for i in picks]


def plan(
    trials: Sequence[FrozenTrial],
    directions: Sequence[StudyDirection],
    record: Mapping[str, Any],
) -> list[ConfirmRun]:
    """Every confirmation run of the study, as recorded by :func:`record_settings`."""
    return [
        ConfirmRun(dict(c.params), record["seed_key"], int(seed), c.number)
        for c in candidates(trials, directions, int(record["top_k"]))
        for seed in record["seed_values"]
    ]


def run_key(params: Mapping[str, Any], seed: Any) -> tuple[Any, ...]:
    return (config_key(params), int(seed))


def trial_run_key(trial: FrozenTrial | optuna.Trial) -> tuple[Any, ...] | None:
    attr = trial.user_attrs.get(ATTR_CONFIRMATION)
    if not attr:
        return None
    # a waiting trial has no params yet, only the ones it was enqueued with
    return run_key(attr.get("params", trial.params), attr["seed"])


def holds_run(trial: FrozenTrial) -> bool:
    """A confirmation trial that ran, runs, or waits to run; a stale failure (its sweeper died,
    the sweep was interrupted) holds nothing, so its run is planned again."""
    if trial.state == TrialState.FAIL and trial.user_attrs.get(ledger.ATTR_STALE):
        return False
    return trial_run_key(trial) is not None


def pending(trials: Sequence[FrozenTrial], runs: Sequence[ConfirmRun]) -> list[ConfirmRun]:
    """The planned runs no trial holds yet: what a (resumed) sweep still has to enqueue."""
    held = {trial_run_key(t) for t in trials if holds_run(t)}
    return [r for r in runs if run_key(r.params, r.seed) not in held]


def held_before(trials: Sequence[FrozenTrial], trial: FrozenTrial | optuna.Trial) -> bool:
    """Two sweepers on one study may enqueue the same run: the lower trial number keeps it."""
    key = trial_run_key(trial)
    return key is not None and any(
        t.number < trial.number
        and holds_run(t)
        and t.state != TrialState.WAITING
        and trial_run_key(t) == key
        for t in trials
    )


def enqueue(study: optuna.Study, runs: Sequence[ConfirmRun]) -> None:
    """Enqueue the runs as trials of the study with fixed parameters, marked as confirmation runs."""
    for run in runs:
        study.enqueue_trial(dict(run.params), user_attrs={ATTR_CONFIRMATION: run.attr()})


class ConfirmationClaims:
    """The claim hook of the confirmation phase: each planned run once across the study's sweepers.

    Runs are enqueued a batch at a time (as WAITING trials with their parameters and seed), so a
    sweeper that dies leaves at most one batch waiting, and its stale runs are planned again.
    """

    def __init__(self, runs: Sequence[ConfirmRun]) -> None:
        self.runs = list(runs)

    def prepare(self, study: optuna.Study) -> None:
        return None

    def room(self, study: optuna.Study, n_jobs: int) -> int:
        trials = study.get_trials(deepcopy=False)
        waiting = sum(t.state == TrialState.WAITING and is_confirmation(t) for t in trials)
        todo = pending(trials, self.runs)[: max(0, n_jobs - waiting)]
        enqueue(study, todo)
        return min(n_jobs, waiting + len(todo))

    def accept(self, study: optuna.Study, trial: optuna.Trial) -> Claim:
        if not is_confirmation(trial):
            close_surplus(study, trial, "no confirmation run was left for it")
            return Claim.STOP
        if held_before(study.get_trials(deepcopy=False), trial):
            close_surplus(study, trial, "another sweeper runs the same confirmation")
            return Claim.RETRY
        return Claim.ACCEPT


def seed_override(trial: FrozenTrial | optuna.Trial) -> list[str]:
    """The Hydra override a confirmation trial's job adds to its parameters' overrides."""
    attr = trial.user_attrs.get(ATTR_CONFIRMATION)
    if not attr:
        return []
    return [f"{attr['seed_key']}={int(attr['seed'])}"]


# -------------------------------------------------------------------------------------- answer


@dataclass(frozen=True)
class ConfigResult:
    """A configuration over all its complete runs: values per objective, mean and std per objective."""

    params: dict[str, Any]
    search_trial: int
    trials: tuple[int, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def n_runs(self) -> int:
        return len(self.trials)


@dataclass(frozen=True)
class ConfirmedAnswer:
    """The answer after confirmation.

    ``configs``: the confirmed configurations, best mean first (one objective) or by the first
    objective's mean (several). ``best``: one objective, the best mean; several, the configurations
    whose means are not dominated. ``search_best``: the search's best trial numbers (one objective:
    one; several: the front's members). ``dropped``: those whose configuration is not in ``best``.
    """

    configs: tuple[ConfigResult, ...]
    best: tuple[ConfigResult, ...]
    search_best: tuple[int, ...]
    dropped: tuple[int, ...]
    runs_done: int
    runs_planned: int
    seed_key: str
    seed_values: tuple[int, ...]

    @property
    def held_up(self) -> bool:
        return not self.dropped

    def as_dict(self, metric_names: Sequence[str]) -> dict[str, Any]:
        """Plain values for ``optimization_results.yaml``."""

        def config(c: ConfigResult) -> dict[str, Any]:
            row: dict[str, Any] = {"params": _plain(c.params), "search_trial": c.search_trial}
            if len(metric_names) == 1:
                row.update(mean=_num(c.mean[0]), std=_num(c.std[0]))
            else:
                row["mean"] = {n: _num(m) for n, m in zip(metric_names, c.mean)}
                row["std"] = {n: _num(s) for n, s in zip(metric_names, c.std)}
            row.update(n_runs=c.n_runs, trials=list(c.trials))
            return row

        return {
            "seed_key": self.seed_key,
            "seeds": list(self.seed_values),
            "runs": f"{self.runs_done} of {self.runs_planned} done",
            "held_up": self.held_up,
            "search_best_trial": (
                self.search_best[0] if len(self.search_best) == 1 else list(self.search_best)
            ),
            "not_held_up": list(self.dropped),
            "configurations": [config(c) for c in self.configs],
        }


def confirmed_answer(
    trials: Sequence[FrozenTrial],
    directions: Sequence[StudyDirection],
    record: Mapping[str, Any] | None,
) -> ConfirmedAnswer | None:
    """The answer over the confirmed configurations, or None (no confirmation, or no candidate yet)."""
    if not record:
        return None
    runs = plan(trials, directions, record)
    chosen = candidates(trials, directions, int(record["top_k"]))
    if not chosen:
        return None
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    configs = []
    for c in chosen:
        key = config_key(c.params)
        same = [t for t in complete if config_key(t.params) == key]
        values = [tuple(t.values) for t in same]
        mean = tuple(statistics.fmean(v[i] for v in values) for i in range(len(directions)))
        std = tuple(
            statistics.stdev(v[i] for v in values) if len(values) > 1 else 0.0
            for i in range(len(directions))
        )
        configs.append(
            ConfigResult(dict(c.params), c.number, tuple(t.number for t in same), mean, std)
        )
    if len(directions) == 1:
        configs.sort(key=lambda c: (_signed(c.mean, directions)[0], -c.n_runs, c.search_trial))
        best: list[ConfigResult] = configs[:1]
        search_best = [chosen[0].number]
    else:
        configs.sort(key=lambda c: (c.mean[0], c.search_trial))
        best = [
            c for c in configs if not any(_dominates(o.mean, c.mean, directions) for o in configs)
        ]
        search_best = [c.number for c in chosen]
    kept = {config_key(c.params) for c in best}
    by_number = {t.number: t for t in trials}
    dropped = [n for n in search_best if config_key(by_number[n].params) not in kept]
    done_keys = {trial_run_key(t) for t in complete if trial_run_key(t) is not None}
    return ConfirmedAnswer(
        configs=tuple(configs),
        best=tuple(best),
        search_best=tuple(search_best),
        dropped=tuple(dropped),
        runs_done=sum(run_key(r.params, r.seed) in done_keys for r in runs),
        runs_planned=len(runs),
        seed_key=str(record["seed_key"]),
        seed_values=tuple(int(s) for s in record["seed_values"]),
    )


def study_answer(study: optuna.Study) -> ConfirmedAnswer | None:
    """:func:`confirmed_answer` of a study whose sweep recorded confirmation settings."""
    record = study.user_attrs.get(STUDY_ATTR_CONFIRM)
    if not record:
        return None
    return confirmed_answer(study.get_trials(deepcopy=False), study.directions, record)


def summary_lines(answer: ConfirmedAnswer, metric_names: Sequence[str]) -> list[str]:
    """The answer as the summary prints it: the winner with mean, std and runs, the table of the
    confirmed configurations, and whether the search's best trial held up."""

    def stat(c: ConfigResult, i: int) -> str:
        return f"{_fmt(c.mean[i])} ± {_fmt(c.std[i])} over {c.n_runs} run{'s' * (c.n_runs != 1)}"

    seeds = ", ".join(str(s) for s in answer.seed_values)
    lines = [
        f"Confirmation: {answer.runs_done} of {answer.runs_planned} runs done "
        f"({answer.seed_key} = {seeds}); mean ± std over each configuration's complete runs"
    ]
    if len(metric_names) == 1:
        best = answer.best[0]
        lines.append(
            f"Confirmed best (search trial {best.search_trial}): {metric_names[0]} = {stat(best, 0)}"
        )
        lines += [f"  {k} = {v}" for k, v in best.params.items()]
    else:
        lines.append(
            f"Confirmed front: {len(answer.best)} of {len(answer.configs)} confirmed members "
            "are not dominated on their means"
        )
    for c in answer.configs:
        values = "; ".join(f"{n} {stat(c, i)}" for i, n in enumerate(metric_names))
        params = ", ".join(f"{k}={_fmt(v)}" for k, v in c.params.items())
        mark = "*" if c in answer.best else " "
        lines.append(f"  {mark} trial {c.search_trial}: {values} [{params}]")
    if answer.held_up:
        lines.append(
            "The search's best trial held up over the new seeds."
            if len(answer.search_best) == 1
            else "Every confirmed front member held up over the new seeds."
        )
    elif len(answer.search_best) == 1:
        lines.append(
            f"The search's best trial {answer.search_best[0]} did not hold up: another "
            "configuration has the better mean over its runs (its single run was lucky)."
        )
    else:
        lines.append(
            "Front members that did not hold up (dominated on their means): trial "
            + ", ".join(str(n) for n in answer.dropped)
        )
    return lines


# ------------------------------------------------------------------------------------- helpers


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _int_like(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, float) and value.is_integer()


def _signed(values: Sequence[float], directions: Sequence[StudyDirection]) -> tuple[float, ...]:
    """Values to minimise: maximised objectives negated."""
    return tuple(-v if d == StudyDirection.MAXIMIZE else v for v, d in zip(values, directions))


def _dominates(
    a: Sequence[float], b: Sequence[float], directions: Sequence[StudyDirection]
) -> bool:
    sa, sb = _signed(a, directions), _signed(b, directions)
    return all(x <= y for x, y in zip(sa, sb)) and any(x < y for x, y in zip(sa, sb))


def _front(
    trials: Sequence[FrozenTrial], directions: Sequence[StudyDirection]
) -> list[FrozenTrial]:
    return [
        t for t in trials if not any(_dominates(o.values, t.values, directions) for o in trials)
    ]


def _distinct(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    seen: set[Any] = set()
    out = []
    for t in trials:
        key = config_key(t.params)
        if key not in seen:
            seen.add(key)
            out.append(t)
    return out


def _fmt(value: Any) -> str:
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:.4g}"
    return str(value)


def _num(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _plain(params: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k): (float(v) if isinstance(v, float) else v) for k, v in params.items()}
