"""The dataset build's progress bar is for a terminal: a log file or a Slurm job gets no bar lines."""

from trainables.data import load_dataset


def test_no_progress_bar_when_stderr_is_not_a_terminal(tmp_path, capfd):
    load_dataset(None, num_structures=12, seed=0, cache_dir=str(tmp_path), progress=True)
    err = capfd.readouterr().err  # a pipe here, as in a log file: tqdm would print a line per update
    assert "EMT adsorption dataset" not in err and "it/s" not in err, err
