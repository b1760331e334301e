"""The console of a real run (experiments/core/console.py): short, one progress line and one line per
event, no boxed tables from Ray; ``--verbose`` brings Ray's tables back."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BOX = re.compile("[╭╰│├]")  # Ray's table borders
PROGRESS = re.compile(r"^\[\d+:\d\d\] trials (\d+)/(\d+) done \((\d+) stopped early, (\d+) errored\), (\d+) running \| "
                      r"[\d.]+ epochs \| best val_mae (\S+)")
EVENT = re.compile(r"^\[\d+:\d\d\] trial (\S+) (started|finished|stopped by the scheduler|errored|diverged|collapsed|"
                   r"exploited by PBT)\b")


def run(script, tmp_path, *flags):
    env = {**os.environ, "HPO_SUITE_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, str(REPO / "experiments" / script), "--smoke-test",
                           "--storage-path", str(tmp_path / "results"), *flags],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout, proc.stderr


@pytest.mark.slow
def test_default_console_is_short_with_progress_and_event_lines(tmp_path):
    out, err = run("run_asha.py", tmp_path, "--name", "quiet")
    assert not BOX.search(out) and not BOX.search(err)
    lines = out.splitlines()
    assert len(lines) < 60, out
    assert lines[0].startswith("4 trials, up to 3 epochs each, tuning val_mae (min); logs in ")
    events = [m.groups() for m in map(EVENT.match, lines) if m]
    started = [trial for trial, what in events if what == "started"]
    ended = [trial for trial, what in events if what in ("finished", "stopped by the scheduler")]
    assert len(started) == 4 and sorted(started) == sorted(ended)  # each trial starts and ends once
    progress = [m.groups() for m in map(PROGRESS.match, lines) if m]
    assert progress and progress[-1][:2] == ("4", "4")
    early = sum(1 for _, what in events if what == "stopped by the scheduler")
    assert progress[-1][2] == str(early) and progress[-1][3:5] == ("0", "0")
    final = [line for line in lines if PROGRESS.match(line)][-1]
    assert final.endswith("all done")
    best = re.search(r"best val_mae \S+ \(trial (\S+),", out)  # the summary table's best trial
    assert best and f"({best.group(1)})" in final


@pytest.mark.slow
def test_verbose_brings_back_rays_tables(tmp_path):
    out, _ = run("run_asha.py", tmp_path, "--name", "loud", "--verbose", "--num-samples", "2")
    assert BOX.search(out) and "Trial status" in out
    assert not any(EVENT.match(line) for line in out.splitlines())


@pytest.mark.slow
def test_pbt_exploits_are_event_lines(tmp_path):
    out, err = run("run_pbt.py", tmp_path, "--name", "pbt", "--max-epochs", "6")
    assert not BOX.search(out) and "[Exploit]" not in out + err  # Ray's multi-line exploit log is left out
    exploits = [line for line in out.splitlines() if " exploited by PBT before epoch " in line]
    assert exploits, out
    change = re.compile(r"continues from a better trial's weights with \w+=\S+ \(was \S+\)")
    assert all(change.search(line) for line in exploits)
