"""When the loop asks a slot's next trial before the slot frees (``nemo_rl_sweep.ask_ahead``)."""

from __future__ import annotations

from nemo_rl_sweep.ask_ahead import AskPace


def test_no_asking_ahead_before_a_trial_and_an_ask_were_timed():
    pace = AskPace()
    assert not pace.ask_ahead()
    pace.asked(5.0)
    assert not pace.ask_ahead()  # no trial has ended: nothing to compare with


def test_asks_of_seconds_next_to_trials_of_hours_wait_for_the_slot():
    pace = AskPace()
    for seconds in (3600.0, 7200.0, 5400.0):
        pace.trial_ended(seconds)
    for seconds in (0.01, 0.02, 4.0, 6.0):  # Sobol start-up asks, then GP asks
        pace.asked(seconds)
    assert not pace.ask_ahead()  # 2.5 s is 0.05% of the median trial


def test_asks_at_a_tenth_of_short_trials_are_made_ahead():
    pace = AskPace()
    for seconds in (3.0, 0.75, 9.0):  # a pruned trial stops early
        pace.trial_ended(seconds)
    pace.asked(0.3)
    assert pace.ask_ahead()
    for _ in range(4):  # only the recent asks count: they got fast again
        pace.asked(0.001)
    assert not pace.ask_ahead()
