"""Runs started from the dashboard (ui.jobs): through the sweep engine into the store, with progress, and
Cancel stopping at the end of an epoch with every finished run kept and the interrupted one not stored."""
from __future__ import annotations

import pytest

from autoft_core.config import RunConfig
from autoft_core import kept_tensors
from autoft_core.core.recipe import Recipe
from autoft_core.experiment import lookup
from autoft_core.paths import DataPaths
from autoft_core.runs import lookup_many
from ui import jobs

pytestmark = pytest.mark.usefixtures("one_thread")


def _configs(epochs: int, seeds: tuple[int, ...]) -> list[RunConfig]:
    return [RunConfig(setup="digits", shift="output", method="full", recipe=Recipe(epochs=epochs, shots=20), seed=s)
            for s in seeds]


def test_a_job_runs_what_the_store_lacks_with_progress(store) -> None:
    configs = _configs(2, (0, 1))
    job = jobs.start("t", configs[:1], store, DataPaths(), "cpu")
    job.wait()
    assert job.state == jobs.DONE and len(job.finished) == 1 and (job.epoch, job.epochs) == (2, 2)
    again = jobs.start("t", configs, store, DataPaths(), "cpu")  # the stored run is not run again
    again.wait()
    assert again.state == jobs.DONE and again.to_run == 1 and "seed=1" in again.finished[0]
    assert all(lookup(cfg, store).stored for cfg in configs)
    resolved = [lookup(cfg, store).cfg for cfg in configs]  # asked as resolved configs: found by their keys
    assert lookup_many([*configs, *resolved], store) == [lookup(cfg, store) for cfg in [*configs, *resolved]]


def test_cancel_stops_after_the_epoch_and_keeps_the_finished_runs(store, monkeypatch) -> None:
    configs = _configs(3, (0, 1, 2))
    seen: list[tuple[int, int]] = []
    progress = jobs.Job.progress

    def cancel_in_second_run(job: jobs.Job, epoch: int, total: int, stats: dict) -> None:
        seen.append((len(job.finished), epoch))
        if len(job.finished) == 1 and epoch == 1:
            job.cancel()  # as the Cancel button does, while the second run is in its first epoch
        progress(job, epoch, total, stats)

    monkeypatch.setattr(jobs.Job, "progress", cancel_in_second_run)
    job = jobs.start("t", configs, store, DataPaths(), "cpu")
    job.wait()
    assert job.state == jobs.CANCELLED and len(job.finished) == 1
    assert seen[-1] == (1, 1)  # no epoch ran after the one in which Cancel was pressed
    assert [lookup(cfg, store).stored for cfg in configs] == [True, False, False]


def test_one_off_pretraining_is_reported_once_per_source_model(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("AUTOFT_CACHE", str(tmp_path))

    class Setup:  # a setup whose source models are trained (a file written) on first use, shared by two shifts
        def source_model(self, shift: str) -> None:
            model = tmp_path / "models" / f"{'feature' if shift == 'feature' else 'standard'}.safetensors"
            model.parent.mkdir(exist_ok=True)
            model.touch()

    monkeypatch.setattr(jobs, "get_setup", lambda name, paths: Setup())
    job = jobs.Job("t", 4)
    backend = jobs.DashboardBackend(job, DataPaths(), "cpu")
    configs = [RunConfig(shift=shift, seed=seed) for shift in ("output", "input", "feature") for seed in (0, 1)]
    backend._prepare(configs)
    assert [line.split(" in ")[0] for line in job.one_off] == [
        "Pretrained the digits source model for the output shift", "Pretrained the digits source model for the "
        "feature shift"]  # the input shift's model is the output shift's
    backend._prepare(configs)
    assert len(job.one_off) == 2  # cached now: nothing more to report


def test_a_kept_file_checked_while_preparing_is_not_reported_as_pretraining(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("AUTOFT_CACHE", str(tmp_path))

    class Setup:  # its source model cached: preparing only checks kept files, leaving their stamps
        def source_model(self, shift: str) -> None:
            (tmp_path / f"renders-{shift}.safetensors{kept_tensors.SIDECAR}").write_text("{}")

    monkeypatch.setattr(jobs, "get_setup", lambda name, paths: Setup())
    job = jobs.Job("t", 1)
    jobs.DashboardBackend(job, DataPaths(), "cpu")._prepare([RunConfig(shift="output")])
    assert job.one_off == []
