"""The console of a real run (experiments/core/console.py): short, one progress line and one line per
event, no boxed tables from Ray; ``--verbose`` brings Ray's tables back."""

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from experiments.core.console import ConsoleReporter

REPO = Path(__file__).resolve().parents[1]
BOX = re.compile("[╭╰│├]")  # Ray's table borders
PROGRESS = re.compile(r"^\[\d+:\d\d\] trials (\d+)/(\d+) done \((\d+) stopped early, (\d+) errored\), (\d+) running \| "
                      r"[\d.]+ epochs \| best val_mae (\S+)")
# Searched anywhere in a line: Ray's log monitor prints a trial actor's line ("(CGCNNTrainable pid=...) ...")
# with two writes, text then newline, from its own thread, and an event line written between them ends up
# on the actor's line (CI, 2026-12-04: the second trial's "started" line, as the first actor printed its
# device line).
EVENT = re.compile(r"\[\d+:\d\d\] trial (\S+) (started|finished|stopped by the scheduler|errored|diverged|collapsed|"
                   r"exploited by PBT)\b")


def trial(trial_id, status, trained, val_mae, **config):
    return SimpleNamespace(trial_id=trial_id, status=status, config=config,
                           last_result={"training_iteration": trained, "val_mae": val_mae} if trained else {})


def test_progress_line_on_constructed_trials():
    reporter = ConsoleReporter("val_mae", "min", max_epochs=20)
    reporter.total, reporter.start = 4, time.monotonic() - 100.0
    trials = [trial("a", "TERMINATED", 4, 0.3), trial("b", "TERMINATED", 20, 0.1), trial("c", "RUNNING", 6, 0.2)]
    # 30 epochs in 100 s; a trial trains 12 epochs on average (a and b): c needs 6 more, the
    # fourth (not started) 12, so 18 epochs at 0.3 per second are 60 s.
    assert reporter.progress_line(trials) == (
        "[1:40] trials 2/4 done (1 stopped early, 0 errored), 1 running | 30 epochs | best val_mae 0.1 (b) "
        "| ~1:00 left")
    trials[2] = trial("c", "ERROR", 6, 0.2)
    trials.append(trial("d", "TERMINATED", 20, 0.05))
    assert reporter.progress_line(trials).endswith(
        "trials 4/4 done (1 stopped early, 1 errored), 0 running | 50 epochs | best val_mae 0.05 (d) | all done")


def test_a_stopped_experiment_counts_its_unfinished_trials_as_unfinished():
    """After a stop signal Tune shows every trial stopped; its saved state names those left unfinished."""
    reporter = ConsoleReporter("val_mae", "min", max_epochs=20)
    reporter.total, reporter.start = 5, time.monotonic() - 100.0
    trials = [trial("a", "TERMINATED", 4, 0.3), trial("b", "TERMINATED", 20, 0.1),
              trial("c", "TERMINATED", 6, 0.2), trial("d", "TERMINATED", 0, None)]
    assert reporter.progress_line(trials, unfinished={"c", "d"}).endswith(
        "trials 2/5 done (1 stopped early, 0 errored), 0 running | 30 epochs | best val_mae 0.1 (b) "
        "| 3 stopped unfinished")


def test_an_experiment_stopped_between_two_trials_says_how_many_never_started():
    """The stop came as a trial ended (none left unfinished): the final line still says the plan is not done."""
    reporter = ConsoleReporter("val_mae", "min", max_epochs=20)
    reporter.total, reporter.start = 4, time.monotonic() - 100.0
    trials = [trial("a", "TERMINATED", 20, 0.04), trial("b", "TERMINATED", 1, 0.18)]
    assert reporter.progress_line(trials).endswith("left")  # still running: an estimate
    assert reporter.progress_line(trials, ended=True).endswith(
        "trials 2/4 done (1 stopped early, 0 errored), 0 running | 21 epochs | best val_mae 0.04 (a) "
        "| 2 stopped unfinished")
    finished = [*trials, trial("c", "TERMINATED", 20, 0.05), trial("d", "TERMINATED", 2, 0.2)]
    assert reporter.progress_line(finished, ended=True).endswith("all done")


def test_progress_best_is_the_summarys_score_and_never_an_errored_trial():
    reporter = ConsoleReporter("val_mae", "min", max_epochs=20)
    reporter.total, reporter.start = 3, time.monotonic() - 10.0
    a = trial("a", "RUNNING", 5, 0.30)
    a.metric_analysis = {"val_mae": {"min": 0.12, "max": 0.9}}  # Tune's record: its best result so far
    diverged = trial("d", "TERMINATED", 2, 0.05)
    diverged.last_result["diverged"] = True
    trials = [a, trial("b", "TERMINATED", 20, 0.2), trial("c", "ERROR", 3, 0.01), diverged]
    assert "best val_mae 0.12 (a)" in reporter.progress_line(trials)


def test_event_lines_on_constructed_trials(capsys):
    reporter = ConsoleReporter("val_mae", "min", max_epochs=20, fixed={"seed"})
    started = trial("a", "RUNNING", 0, None, lr=0.0123456, layers=3, seed=0)
    reporter.on_trial_start(0, [started], started)
    mutated = trial("a", "RUNNING", 5, 0.2, lr=0.002, layers=3, seed=0)  # PBT changed its config
    reporter.on_trial_result(0, [mutated], mutated, {"training_iteration": 5, "val_mae": 0.2})
    diverged = trial("a", "RUNNING", 6, float("inf"), lr=0.002, layers=3, seed=0)
    for _ in range(2):  # said once
        reporter.on_trial_result(0, [diverged], diverged, {"training_iteration": 6, "diverged": True})
    stopped = trial("b", "TERMINATED", 4, 0.3, epochs=10)
    reporter.on_trial_complete(0, [stopped], stopped)
    full = trial("c", "TERMINATED", 10, 0.1, epochs=10)  # its own 10 epochs: finished, not stopped early
    reporter.on_trial_complete(0, [full], full)
    lines = [line.split("] ", 1)[1] for line in capsys.readouterr().out.splitlines()]
    assert lines == [
        "trial a started: lr=0.0123, layers=3",
        "trial a exploited by PBT before epoch 5: continues from a better trial's weights with lr=0.002 (was 0.0123)",
        "trial a diverged at epoch 6 (non-finite loss)",
        "trial b stopped by the scheduler at epoch 4: val_mae 0.3",
        "trial c finished after 10 epochs: val_mae 0.1",
    ]


def run(script, tmp_path, *flags, cache: Path):
    env = {**os.environ, "HPO_SUITE_CACHE": str(cache)}
    proc = subprocess.run([sys.executable, str(REPO / "experiments" / script), "--smoke-test",
                           "--storage-path", str(tmp_path / "results"), *flags],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout, proc.stderr


@pytest.mark.slow
def test_default_console_is_short_with_progress_and_event_lines(tmp_path, smoke_cache):
    out, err = run("run_asha.py", tmp_path, "--name", "quiet", cache=smoke_cache)
    assert not BOX.search(out) and not BOX.search(err)
    # The trial actors' own lines ("(CGCNNTrainable pid=...) CGCNNTrainable: device cpu ...") come
    # through with Ray's prefix but no colour codes: stdout is a pipe.
    assert "\x1b[" not in out, out
    lines = out.splitlines()
    assert len(lines) < 60, out
    assert lines[0].startswith("4 trials, up to 3 epochs each, tuning val_mae (min); logs in ")
    events = [m.groups() for m in map(EVENT.search, lines) if m]
    started = [trial for trial, what in events if what == "started"]
    ended = [trial for trial, what in events if what in ("finished", "stopped by the scheduler")]
    assert len(started) == 4 and sorted(started) == sorted(ended)  # each trial starts and ends once
    progress = [m.groups() for m in map(PROGRESS.match, lines) if m]
    assert progress and progress[-1][:2] == ("4", "4")
    early = sum(1 for _, what in events if what == "stopped by the scheduler")
    assert progress[-1][2] == str(early) and progress[-1][3:5] == ("0", "0")
    final = [line for line in lines if PROGRESS.match(line)][-1]
    assert final.endswith("all done")
    best = re.search(r"\| best val_mae \S+ \((\S+)\) \|", final)
    assert best and best.group(1) in started  # a trial of this run (the summary ranks by best result, this by last)


@pytest.mark.slow
def test_verbose_brings_back_rays_tables(tmp_path, smoke_cache):
    out, _ = run("run_asha.py", tmp_path, "--name", "loud", "--verbose", "--num-samples", "2", cache=smoke_cache)
    assert BOX.search(out) and "Trial status" in out
    assert not any(EVENT.search(line) for line in out.splitlines())


@pytest.mark.slow
def test_pbt_exploits_are_event_lines(tmp_path, smoke_cache):
    out, err = run("run_pbt.py", tmp_path, "--name", "pbt", "--max-epochs", "6", cache=smoke_cache)
    assert not BOX.search(out) and "[Exploit]" not in out + err  # Ray's multi-line exploit log is left out
    exploits = [line for line in out.splitlines() if " exploited by PBT before epoch " in line]
    assert exploits, out
    change = re.compile(r"continues from a better trial's weights with \w+=\S+ \(was \S+\)")
    assert all(change.search(line) for line in exploits)
