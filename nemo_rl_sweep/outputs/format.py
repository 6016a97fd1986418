"""How a sweep's names, numbers and times are written, in one place, so that the progress lines, the
summary, the result files and the plots all say the same thing the same way.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Iterable, Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from nemo_rl_sweep import ledger

PREFIX = "[sweep]"

# C0/C1 control characters and ANSI escape sequences; a job's error text may hold any of them
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-_]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


# ------------------------------------------------------------------------------------- names


def metric_names(study: optuna.Study) -> list[str]:
    """The study's metric names (the ledger sets them), or ``objective_<i>`` when none were set."""
    names = study.metric_names
    n = len(study.directions)
    if names and len(names) == n:
        return [str(x) for x in names]
    return [f"objective_{i}" for i in range(n)]


def direction_names(study: optuna.Study) -> list[str]:
    """``maximize`` / ``minimize``, one per objective."""
    return [d.name.lower() for d in study.directions]


def objectives_text(study: optuna.Study) -> str:
    """``validation/accuracy (maximize), train/tokens_generated (minimize)``."""
    return ", ".join(
        f"{n} ({d})" for n, d in zip(metric_names(study), direction_names(study), strict=True)
    )


def param_names(trials: Iterable[FrozenTrial]) -> list[str]:
    """Every parameter of ``trials`` once, in the order the trials first used them: the column order
    of every table a sweep writes or prints."""
    names: list[str] = []
    for t in trials:
        names += [k for k in t.params if k not in names]
    return names


def short_names(keys: Sequence[str]) -> dict[str, str]:
    """The shortest dotted suffix that still tells each key apart (``policy.optimizer.kwargs.lr`` -> ``lr``)."""
    parts = {k: k.split(".") for k in keys}
    out: dict[str, str] = {}
    for key in keys:
        for n in range(1, len(parts[key]) + 1):
            cand = ".".join(parts[key][-n:])
            clash = [o for o in keys if o != key and ".".join(parts[o][-n:]) == cand]
            if not clash:
                out[key] = cand
                break
        else:
            out[key] = key
    return out


# ------------------------------------------------------------------------------ text, numbers


def clean_text(text: Any, limit: int | None = 300) -> str:
    """One printable line: escape sequences dropped, newlines and tabs turned into spaces."""
    text = _ANSI.sub("", str(text))
    text = _CONTROL.sub(" ", text)
    text = re.sub(r" {2,}", " ", text).strip()
    if limit is not None and len(text) > limit:
        text = text[: limit - 3].rstrip() + "..."
    return text


def format_number(value: Any, digits: int = 4) -> str:
    """Short numbers for a line of text: ``digits`` significant digits, ints and strings as they are."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return str(value)
    if isinstance(value, numbers.Integral) or not math.isfinite(value):
        return str(value)
    return f"{value:.{digits}g}"


def format_params(params: dict[str, Any], limit: int = 160) -> str:
    names = short_names(list(params))
    return clean_text(", ".join(f"{names[k]}={format_number(v)}" for k, v in params.items()), limit)


def table(
    headers: Sequence[str] | None,
    rows: Sequence[Sequence[str]],
    *,
    indent: str = "  ",
    limit: int | None = 120,
    align_numbers: bool = True,
    rule: bool = False,
    trim: bool = True,
) -> list[str]:
    """Columns padded to their widest cell. ``align_numbers`` right-aligns the columns that hold only
    numbers; ``rule`` underlines the headers with dashes; ``trim`` drops the padding at line ends."""
    cells = ([list(headers)] if headers else []) + [[clean_text(c, limit) for c in r] for r in rows]
    if not cells:
        return []
    widths = [max(len(r[i]) for r in cells if i < len(r)) for i in range(len(cells[0]))]
    numeric = [
        align_numbers
        and all(_looks_numeric(r[i]) for r in cells[1 if headers else 0 :] if i < len(r))
        for i in range(len(widths))
    ]
    lines = [
        indent
        + "  ".join((c.rjust(w) if num else c.ljust(w)) for c, w, num in zip(r, widths, numeric))
        for r in cells
    ]
    if rule and headers:
        lines.insert(1, indent + "  ".join("-" * w for w in widths))
    return [line.rstrip() for line in lines] if trim else lines


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return text in ("-",)


# ------------------------------------------------------------------------------------- times


def trial_duration(t: FrozenTrial) -> float | None:
    """The job's own duration when the sweeper measured it, else the ledger's start-to-end time."""
    if ledger.ATTR_DURATION in t.user_attrs:
        try:
            return float(t.user_attrs[ledger.ATTR_DURATION])
        except (TypeError, ValueError):
            pass
    if t.datetime_start and t.datetime_complete:
        return (t.datetime_complete - t.datetime_start).total_seconds()
    return None


def format_duration(seconds: float | None) -> str:
    """``42s``, ``3m05s``, ``2h07m``, ``1d03h``: readable at a glance, stable in width."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    s = max(0, int(round(seconds)))
    if seconds < 10:
        return f"{max(0.0, seconds):.1f}s"
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d{(s % 86400) // 3600:02d}h"
