"""When an asynchronous sweep asks a slot's next trial before the slot frees.

An ask costs time on the sweeper's machine (a GP fit, slower on a busy machine; ledger writes), and a
slot whose trial just ended idles through it. Next to NeMo RL trials of hours, an ask of seconds is
nothing, and the best trial to ask is the one asked last, conditioned on every result so far. Next
to short trials (pruned trials stop at their first validations; a benchmark's scaled-down trials)
the asks eat a visible share of every slot. Then the loop asks one trial ahead while every slot
runs: it starts the moment a slot frees, conditioned on all running trials as pending points, but
without the result of the trial whose slot it takes.

The rule: ask ahead while the recent asks take at least ``SHARE`` of a trial's median time, so the
idle time it can save is worth that one result of lag; below it, the ask waits for the slot.
"""

from __future__ import annotations

import statistics
from collections import deque

SHARE = 0.01  # asks at 1% of a trial's time: the most a slot can idle for them without asking ahead
RECENT_ASKS = 4  # a GP's first asks are much slower than the Sobol start-up asks before them
RECENT_TRIALS = 16


class AskPace:
    """The recent ask and trial times of one sweep; says whether to ask ahead."""

    def __init__(self, share: float = SHARE) -> None:
        self.share = share
        self.asks: deque[float] = deque(maxlen=RECENT_ASKS)
        self.trials: deque[float] = deque(maxlen=RECENT_TRIALS)

    def asked(self, seconds: float) -> None:
        """One ask took ``seconds`` (ledger writes included)."""
        self.asks.append(seconds)

    def trial_ended(self, seconds: float) -> None:
        """A trial held its slot ``seconds``, from its start to the moment the loop saw it end."""
        self.trials.append(seconds)

    def ask_ahead(self) -> bool:
        """True when the asks are slow next to the trials (no trial ended yet: False)."""
        if not self.asks or not self.trials:
            return False
        return statistics.fmean(self.asks) >= self.share * statistics.median(self.trials)
