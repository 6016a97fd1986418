"""What a user sees: progress lines, the summary, the plots, the report command and the dashboard.

Studies come from real Hydra sweeps of ``tests/apps/toy.py`` (run as subprocesses in temporary
folders) and, where a sweep of the toy app cannot produce the case (learning curves, several
objectives, a trial still running), from real Optuna studies in real SQLite files.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import matplotlib.image
import numpy as np
import optuna
import pytest
import yaml
from optuna.trial import TrialState

from nemo_rl_sweep import ledger
from nemo_rl_sweep.outputs.format import clean_text, format_duration, short_names
from nemo_rl_sweep.outputs.plots import PLOTS_DIR, write_plots
from nemo_rl_sweep.outputs.progress import ConsoleProgress
from nemo_rl_sweep.outputs.report import run_report
from nemo_rl_sweep.outputs.summary import format_summary

ROOT = Path(__file__).resolve().parents[1]
TOY = ROOT / "tests" / "apps" / "toy.py"
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # everything but \t and \n

optuna.logging.set_verbosity(optuna.logging.WARNING)
pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


# ------------------------------------------------------------------------------------ sweeps


class Sweep:
    """One finished Hydra sweep of the toy app: its console output and its folders."""

    def __init__(self, cwd: Path, args: list[str]) -> None:
        proc = subprocess.run(
            [sys.executable, str(TOY), "--multirun", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        results = list(cwd.glob("multirun/*/*/optimization_results.yaml"))
        assert len(results) == 1, results
        self.dir = results[0].parent
        self.results = yaml.safe_load(results[0].read_text())
        self.storage = self.results["storage"]
        self.study_name = self.results["study_name"]

    def study(self) -> optuna.Study:
        return optuna.load_study(study_name=self.study_name, storage=self.storage)


@pytest.fixture(scope="module")
def random_sweep(tmp_path_factory: pytest.TempPathFactory) -> Sweep:
    return Sweep(tmp_path_factory.mktemp("random"), ["hydra.sweeper.seed=3"])


@pytest.fixture(scope="module")
def grid_sweep(tmp_path_factory: pytest.TempPathFactory) -> Sweep:
    # x=0.5 fails on purpose: two of four trials fail, with a reason
    return Sweep(
        tmp_path_factory.mktemp("grid"),
        [
            "hydra.sweeper.strategy=grid",
            "hydra.sweeper.n_trials=null",
            "hydra.sweeper.max_failure_rate=0.9",
            "mode=raise_if_big",
            "fail_above=0.4",
            "x=choice(0.1,0.5)",
            "y=range(1,3)",
        ],
    )


# ------------------------------------------------------------------------------------ checks


def assert_real_png(path: Path) -> None:
    """A picture that shows something: a real PNG, of some size, with varied pixels."""
    assert path.is_file() and path.stat().st_size > 2000, path
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] >= 200 and image.shape[1] >= 200, image.shape
    pixels = image[..., :3].reshape(-1, 3)
    assert pixels.std() > 0.05
    assert len(np.unique((pixels * 255).astype(np.uint8), axis=0)) > 20


def assert_plotly_html(path: Path, *needles: str) -> None:
    text = path.read_text()
    assert "Plotly.newPlot" in text and "plotly.min.js" in text, path
    for needle in needles:
        assert needle in text, (path, needle)
    # the shared bundle sits next to it, so the page opens offline
    assert (path.parent / "plotly.min.js").stat().st_size > 1_000_000


def assert_no_control_characters(text: str) -> None:
    bad = CONTROL.findall(text)
    assert not bad, sorted(set(bad))


# ------------------------------------------------------------------------------------ progress


def test_progress_of_a_real_sweep_is_plain_lines_with_counts_best_and_eta(
    random_sweep: Sweep,
) -> None:
    out = random_sweep.stdout
    assert_no_control_characters(out)
    finished = [line for line in out.splitlines() if re.match(r"\[sweep\] trial \d+ done:", line)]
    assert len(finished) == 4
    study = random_sweep.study()
    for i, line in enumerate(finished):
        assert f"done {i + 1}/4, running 0, failed 0, pruned 0" in line
        assert "| ETA " in line
        # the best so far, with its parameters, as of that trial
        so_far = [t for t in study.trials if t.number <= i]
        best = max(so_far, key=lambda t: t.value)
        assert f"best score={best.value:.4g} (trial {best.number}: x=" in line
    assert finished[-1].endswith("ETA 0s")
    assert "sweep ended after" in out


def test_progress_colours_only_a_terminal_and_cleans_job_text() -> None:
    study = optuna.create_study(direction="maximize")
    study.set_metric_names(["score"])
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    trial.set_user_attr(ledger.ATTR_FAIL_REASON, "\x1b[31mCUDA\x1b[0m error\r\nline two\tend")
    frozen = study.tell(trial, state=TrialState.FAIL)

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    plain, tty = io.StringIO(), Terminal()
    for stream in (plain, tty):
        progress = ConsoleProgress(stream)
        progress.sweep_started(study, 3)
        progress.trial_started(0, ["x=0.5"])
        progress.trial_finished(study, frozen)
    assert_no_control_characters(plain.getvalue())
    line = plain.getvalue().splitlines()[-1]
    assert line.startswith("[sweep] trial 0 FAILED: CUDA error line two end in ")
    assert "| done 1/3, running 0, failed 1, pruned 0 | best: none yet | ETA " in line
    assert "\x1b[31mFAILED\x1b[0m" in tty.getvalue()
    # the job's own escape codes never pass through, even to a terminal
    assert "\x1b[31mCUDA" not in tty.getvalue()


def test_eta_follows_the_pace_of_this_sweeper() -> None:
    now = [100.0]
    study = optuna.create_study()
    progress = ConsoleProgress(io.StringIO(), clock=lambda: now[0])
    progress.sweep_started(study, 10)
    assert progress.eta_text(10) == "?"
    for _ in range(2):
        trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
        progress.trial_started(trial.number, [])
        now[0] += 60.0
        progress.trial_finished(study, study.tell(trial, 1.0))
    # two trials in two minutes, eight to go
    assert progress.eta_text(8) == "8m00s"
    assert "done 2/10" in progress.stream.getvalue().splitlines()[-1]
    assert "ETA 8m00s" in progress.stream.getvalue().splitlines()[-1]


def test_small_helpers() -> None:
    assert format_duration(3.21) == "3.2s"
    assert format_duration(125) == "2m05s"
    assert format_duration(2 * 3600 + 7 * 60) == "2h07m"
    assert short_names(["policy.optimizer.kwargs.lr", "loss_fn.lr", "grpo.num_prompts"]) == {
        "policy.optimizer.kwargs.lr": "kwargs.lr",
        "loss_fn.lr": "loss_fn.lr",
        "grpo.num_prompts": "num_prompts",
    }
    assert clean_text("a\x1b[1mb\x00\nc") == "ab c"


# ------------------------------------------------------------------------- end of a sweep


def test_a_sweep_ends_with_the_summary_and_writes_its_plots(random_sweep: Sweep) -> None:
    study = random_sweep.study()
    best = study.best_trial
    out = random_sweep.stdout
    assert f"Best trial {best.number}: score = {best.value:.4g}" in out
    assert f"  overrides: {' '.join(best.user_attrs['overrides'])}" in out
    assert "Top 4 of 4 complete trials by score:" in out
    assert f"  answer         {random_sweep.dir / 'optimization_results.yaml'}" in out
    assert f"optuna-dashboard {random_sweep.storage}" in out
    plots = random_sweep.dir / PLOTS_DIR
    for name in ("history", "importances", "importances_fanova", "slice"):
        assert_real_png(plots / f"{name}.png")
    for name in (
        "history",
        "importances",
        "importances_fanova",
        "slice",
        "parallel_coordinate",
        "timeline",
    ):
        assert_plotly_html(plots / f"{name}.html")
    assert_plotly_html(plots / "history.html", '"name":"Best Value"', '"score"')
    assert_plotly_html(plots / "index.html")
    assert plots / "history.png" in [p for p in plots.iterdir()]
    assert f"{plots}/{{history,importances,importances_fanova,slice}}.png" in out


# ------------------------------------------------------------------------ the report command


def test_report_command_on_a_sweep_folder(random_sweep: Sweep) -> None:
    shutil.rmtree(random_sweep.dir / PLOTS_DIR)
    proc = subprocess.run(
        [sys.executable, "-m", "nemo_rl_sweep", "report", str(random_sweep.dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert_no_control_characters(proc.stdout)
    study = random_sweep.study()
    best = study.best_trial
    lines = proc.stdout.splitlines()
    assert lines[0] == (
        f"[sweep] study '{random_sweep.study_name}' (random), objective score (maximize): "
        "4 trials, 4 complete, 0 pruned, 0 failed"
    )
    assert f"Best trial {best.number}: score = {best.value:.4g}" in lines
    ranked = sorted(study.trials, key=lambda t: -t.value)
    rows = [line.split() for line in lines if re.match(r"^\s+\d+\s+\d+\s+-?\d", line)]
    assert [int(r[1]) for r in rows] == [t.number for t in ranked]
    # the pictures are back
    assert_real_png(random_sweep.dir / PLOTS_DIR / "history.png")
    assert_plotly_html(random_sweep.dir / PLOTS_DIR / "slice.html")


def test_report_on_a_grid_with_failures_names_each_reason(
    grid_sweep: Sweep, tmp_path: Path
) -> None:
    out = io.StringIO()
    assert run_report(str(grid_sweep.dir), out=tmp_path, stream=out) == 0
    text = out.getvalue()
    assert "(grid), objective score (maximize): 4 trials, 2 complete, 0 pruned, 2 failed" in text
    assert "Failures (2 of 4 trials):" in text
    study = grid_sweep.study()
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert sorted(t.params["x"] for t in failed) == [0.5, 0.5]
    for t in failed:
        assert f"  trial {t.number}: RuntimeError: boom at x=0.5" in text
        assert f"    job folder: {t.user_attrs['job_dir']}" in text
    best = study.best_trial
    assert best.params == {"x": 0.1, "y": 2}
    assert "Best trial" in text and "  x = 0.1" in text and "  y = 2" in text
    assert "Time: " in text and "per trial mean" in text
    assert_real_png(tmp_path / PLOTS_DIR / "history.png")


@pytest.mark.parametrize("strategy", ["bayes", "optuna"])
def test_report_works_on_other_strategies(
    strategy: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    sweep = Sweep(tmp_path, [f"hydra.sweeper.strategy={strategy}", "hydra.sweeper.n_trials=4"])
    out = io.StringIO()
    assert run_report(str(sweep.dir), stream=out) == 0
    text = out.getvalue()
    assert f"({strategy}), objective score (maximize): 4 trials, 4 complete" in text
    assert f"Best trial {sweep.study().best_trial.number}: score" in text
    assert_real_png(sweep.dir / PLOTS_DIR / "history.png")
    assert_plotly_html(sweep.dir / PLOTS_DIR / "parallel_coordinate.html")


def test_report_on_a_pareto_sweep_prints_the_front_and_keeps_its_picture(tmp_path: Path) -> None:
    sweep = Sweep(
        tmp_path,
        [
            "hydra.sweeper.strategy=pareto",
            "hydra.sweeper.metric=[score,cost]",
            "hydra.sweeper.direction=[maximize,minimize]",
            "hydra.sweeper.n_trials=5",
        ],
    )
    assert "Pareto front:" in sweep.stdout and "Hypervolume " in sweep.stdout
    (sweep.dir / "pareto_front.png").unlink()
    out = io.StringIO()
    assert run_report(str(sweep.dir), stream=out) == 0
    text = out.getvalue()
    assert "(pareto), objective score (maximize), cost (minimize): 5 trials, 5 complete" in text
    front = {t.number for t in sweep.study().best_trials}
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Pareto front:"))
    assert f"Pareto front: {len(front)} of 5 completed trials" == lines[start]
    rows = lines[start + 3 : start + 3 + len(front)]
    assert {int(r.split()[0]) for r in rows} == front
    assert_real_png(sweep.dir / "pareto_front.png")  # written again by the Pareto results module
    assert_plotly_html(sweep.dir / PLOTS_DIR / "pareto_front.html", "score", "cost")
    assert f"Pareto front   {sweep.dir / 'pareto_front.png'}" in text


def test_report_by_storage_url_picks_the_study_and_refuses_an_ambiguous_ledger(
    random_sweep: Sweep, tmp_path: Path
) -> None:
    db = tmp_path / "copy.db"
    shutil.copy(random_sweep.storage[len("sqlite:///") :], db)
    url = f"sqlite:///{db}"
    out = io.StringIO()
    assert run_report(url, out=tmp_path / "one", stream=out, plots=False) == 0
    assert f"study '{random_sweep.study_name}'" in out.getvalue()
    assert f"report {url} --study {random_sweep.study_name}" in out.getvalue()

    other = optuna.create_study(storage=url, study_name="other")
    other.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    out = io.StringIO()
    assert run_report(url, stream=out, plots=False) == 2
    assert "several studies; pick one with --study" in out.getvalue()
    assert "other (2 trials)" in out.getvalue()
    out = io.StringIO()
    assert run_report(url, "other", out=tmp_path / "two", stream=out) == 0
    assert "study 'other', objective objective_0 (minimize): 2 trials" in out.getvalue()
    out = io.StringIO()
    assert run_report(str(tmp_path / "nowhere"), stream=out) == 2
    assert out.getvalue().startswith("Error: ")


def test_report_on_a_running_study(random_sweep: Sweep, tmp_path: Path) -> None:
    db = tmp_path / "live.db"
    shutil.copy(random_sweep.storage[len("sqlite:///") :], db)
    study = optuna.load_study(study_name=random_sweep.study_name, storage=f"sqlite:///{db}")
    trial = study.ask({"x": optuna.distributions.FloatDistribution(-1, 1)})
    trial.set_user_attr(ledger.ATTR_OVERRIDES, ["x=0.25", "y=1"])
    out = io.StringIO()
    assert run_report(f"sqlite:///{db}", out=tmp_path, stream=out) == 0
    text = out.getvalue()
    assert "5 trials, 4 complete, 0 pruned, 0 failed, 1 running" in text
    assert f"Running (1): trial {trial.number} x=0.25 y=1" in text
    assert_real_png(tmp_path / PLOTS_DIR / "history.png")


# ------------------------------------------------------------------- the ledger and dashboard


def test_ledger_shows_overrides_and_job_folder_through_optunas_api(random_sweep: Sweep) -> None:
    storage = optuna.storages.RDBStorage(random_sweep.storage)
    study = optuna.load_study(study_name=random_sweep.study_name, storage=storage)
    assert study.user_attrs[ledger.STUDY_ATTR_STRATEGY] == "random"
    assert len(study.trials) == 4
    for t in study.trials:
        overrides = t.user_attrs[ledger.ATTR_OVERRIDES]
        assert overrides == [f"x={t.params['x']!r}", f"y={t.params['y']}"]
        job_dir = Path(t.user_attrs[ledger.ATTR_JOB_DIR])
        # the trial's own folder: study and trial number, never Hydra's per-process job counter
        assert job_dir == random_sweep.dir / random_sweep.study_name / f"trial_{t.number}"
        # the folder is that trial's Hydra job: its recorded overrides start with the same ones
        recorded = yaml.safe_load((job_dir / ".hydra" / "overrides.yaml").read_text())
        assert recorded[: len(overrides)] == overrides
        assert t.user_attrs[ledger.ATTR_METRICS]["score"] == t.value


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get_json(url: str, proc: subprocess.Popen) -> dict:
    """GET from the dashboard, retrying while it starts (it fails the test if it exits instead)."""
    while True:
        try:
            with urllib.request.urlopen(url) as resp:
                return json.loads(resp.read())
        except (urllib.error.URLError, ConnectionError):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else "dashboard exited"
            try:
                proc.wait(0.5)
            except subprocess.TimeoutExpired:
                pass


def test_optuna_dashboard_shows_overrides_and_job_folder(random_sweep: Sweep) -> None:
    exe = shutil.which("optuna-dashboard")
    assert exe, "optuna-dashboard (the [dashboard] extra) is installed in this environment"
    port = _free_port()
    proc = subprocess.Popen(
        [exe, random_sweep.storage, "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}/api/studies"
        summaries = _get_json(base, proc)["study_summaries"]
        (summary,) = [s for s in summaries if s["study_name"] == random_sweep.study_name]
        detail = _get_json(f"{base}/{summary['study_id']}?after=0", proc)
    finally:
        proc.terminate()
        proc.wait()
    study = random_sweep.study()
    assert len(detail["trials"]) == 4
    for shown in detail["trials"]:
        attrs = {a["key"]: a["value"] for a in shown["user_attrs"]}
        trial = study.trials[shown["number"]]
        assert json.loads(attrs["overrides"]) == trial.user_attrs["overrides"]
        assert attrs["job_dir"] == trial.user_attrs["job_dir"]


# ------------------------------------------------------------ cases a toy sweep cannot make


def test_learning_curves_of_pruned_and_finished_trials_are_drawn(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'curves.db'}"
    study = optuna.create_study(
        storage=url, direction="maximize", pruner=optuna.pruners.MedianPruner(1, 0)
    )
    study.set_metric_names(["validation/accuracy"])

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("lr", 1e-5, 1e-2, log=True)
        kl = trial.suggest_float("kl", 0.0, 0.1)
        acc = 0.0
        for step in range(8):
            acc += lr * 50 * (1 - kl) / (1 + step)
            trial.report(acc, step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return acc

    study.optimize(objective, n_trials=8)
    states = {t.state for t in study.trials}
    assert TrialState.PRUNED in states and TrialState.COMPLETE in states
    written = write_plots(study, tmp_path)
    names = {p.name for p in written}
    assert {"intermediate_values.png", "intermediate_values.html", "history.png"} <= names
    assert_real_png(tmp_path / PLOTS_DIR / "intermediate_values.png")
    text = format_summary(study, tmp_path, url)
    n_pruned = sum(t.state == TrialState.PRUNED for t in study.trials)
    assert f"8 trials, {8 - n_pruned} complete, {n_pruned} pruned, 0 failed" in text
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert (
        f"Pruned ({n_pruned}): "
        + ", ".join(f"trial {t.number} at step {max(t.intermediate_values)}" for t in pruned)
        in text
    )


def test_several_objectives_give_a_front_and_its_plot(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'front.db'}"
    study = optuna.create_study(storage=url, directions=["maximize", "minimize"])
    study.set_metric_names(["validation/accuracy", "timing/train/total_step_time"])
    for x in np.linspace(0.0, 1.0, 7):
        trial = study.ask(
            {"policy.optimizer.kwargs.lr": optuna.distributions.FloatDistribution(0, 1)}
        )
        study.tell(trial, [x, x**2 + 0.1 * (x > 0.5)])
    front = {t.number for t in study.best_trials}
    text = format_summary(study, tmp_path, url)
    assert "Pareto front" in text
    for number in front:
        assert re.search(rf"^\s*{number}\s", text, re.M)
    written = {p.name for p in write_plots(study, tmp_path)}
    assert "pareto_front.html" in written and "history.png" not in written
    # plotly's JSON writes "/" as "\\/"
    assert_plotly_html(tmp_path / PLOTS_DIR / "pareto_front.html", "total_step_time")


def test_importances_need_two_parameters_and_plot_errors_never_raise(tmp_path: Path) -> None:
    study = optuna.create_study()
    study.optimize(lambda t: t.suggest_float("x", 0, 1) ** 2, n_trials=5)
    written = {p.name for p in write_plots(study, tmp_path)}
    assert "history.png" in written and not any(n.startswith("importances") for n in written)

    blocked = tmp_path / "a_file"
    blocked.write_text("not a folder")
    lines: list[str] = []
    assert write_plots(study, blocked, log=lines.append) == []
    assert len(lines) == 1 and lines[0].startswith("plots not written:")


def test_report_reads_a_journal_file_ledger(tmp_path: Path) -> None:
    """The cluster-friendly ledger (an Optuna journal file) reports like SQLite does."""
    url = f"journal:{tmp_path / 'ledger.log'}"
    study = optuna.create_study(storage=ledger.open_storage(url), study_name="on-a-cluster")
    study.optimize(lambda t: (t.suggest_float("x", -1, 1) - 0.2) ** 2, n_trials=3)
    out = io.StringIO()
    assert run_report(url, out=tmp_path, stream=out) == 0
    text = out.getvalue()
    assert "study 'on-a-cluster', objective objective_0 (minimize): 3 trials, 3 complete" in text
    assert f"Best trial {study.best_trial.number}: objective_0 = {study.best_value:.4g}" in text
    assert_real_png(tmp_path / PLOTS_DIR / "history.png")
