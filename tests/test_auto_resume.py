"""--auto-resume of run_two_stage.py (a requeued Slurm job) and the post-mortem summary of a two-stage stage."""

from pathlib import Path

import yaml

import experiments.workflows.two_stage as two_stage


def test_two_stage_auto_resume_starts_under_the_job_tag_then_resumes_that_run(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(two_stage, "run_two_stage", lambda config, retry_errored=False: calls.append(
        (config, retry_errored)) or ({}, 0))
    monkeypatch.setenv("HPO_EXPERIMENT_TAG", "job77")  # slurm/submit.sbatch's
    argv = ["--smoke-test", "--storage-path", str(tmp_path), "--auto-resume"]

    assert two_stage.main(argv) == 0  # the first allocation: nothing saved yet, so it starts
    config, retry = calls[-1]
    assert config.name == "cgcnn_two_stage_job77" and not retry
    parent = tmp_path / config.name
    parent.mkdir()
    (parent / two_stage.SNAPSHOT).write_text(yaml.safe_dump(config.to_yaml_dict(), sort_keys=False))

    assert two_stage.main(argv) == 0  # the requeued job: the same name, resumed, errored trials retried
    resumed, retry = calls[-1]
    assert resumed.name == config.name and Path(resumed.storage_path) == tmp_path and retry
    assert resumed.seeds == config.seeds


def test_postmortem_knows_the_two_stage_strategy_by_its_stage_folders(tmp_path, capsys):
    from experiments.workflows.postmortem import main

    other = tmp_path / "run" / "not_a_stage"
    other.mkdir(parents=True)
    assert main(["two_stage", str(other)]) == 2  # one error line, as for any bad input
    assert "is not a stage of a two-stage run" in capsys.readouterr().err
    stage = tmp_path / "run" / two_stage.STAGE1
    stage.mkdir()
    assert main(["two_stage", str(stage)]) == 2  # a stage folder: on to the saved state, which is missing
    assert "no saved experiment state" in capsys.readouterr().err
