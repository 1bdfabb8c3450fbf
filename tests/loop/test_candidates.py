"""Candidates end to end over a real store, registry and fit: refit one into the registry as a
background job, shadow-run it against the active model, and the refusals on the way."""

from __future__ import annotations

import json

import pytest

from inspector.cli import main
from inspector.errors import ModelError, UnknownModel
from inspector.loop import (
    MIN_REFIT_SAMPLES,
    Busy,
    JobRunner,
    NoLabeledHistory,
    Registry,
    as_job,
    refit_candidate,
    shadow_candidate,
)
from inspector.loop.candidates import one_at_a_time
from inspector.model import load_model, save_model
from inspector.store import Store
from tests.loop.conftest import Line


@pytest.fixture
def registry(store: Store, model_dir) -> Registry:
    registry = Registry(store)
    registry.startup_model(load_model(model_dir))  # what `inspector run` does at start
    return registry


def test_a_refit_job_keeps_its_candidate_in_the_registry(registry: Registry, frames) -> None:
    line = Line(registry.store, frames)
    line.add("pass", "good", camera="cam1", n=MIN_REFIT_SAMPLES)
    line.add("reject", "defect", camera="cam1", n=2)
    line.add("pass", "good", camera="cam2", n=3)
    runner = JobRunner()
    runner.start("refit", as_job(refit_candidate, registry, "candidate", "qa1",
                                 cameras=["cam1"]))
    assert runner.wait(timeout=120)
    status = runner.status()
    assert status["state"] == "done", status["error"]
    entry = registry.get("candidate")
    assert status["result"]["sha256"] == entry.sha256 and not entry.active
    origin = entry.origin
    assert (origin["kind"], origin["by"], origin["from_sha256"]) == (
        "refit", "qa1", registry.active_sha())
    assert origin["samples"]["labeled_good"] == MIN_REFIT_SAMPLES
    assert entry.card.metrics["refit"]["cameras"] == ["cam1"]
    assert not [p for p in registry.folder.iterdir() if p.name.startswith(".refit")]  # none left

    # cam2 has too few: the job fails with the refusal's reason, and nothing is kept.
    runner.start("refit", as_job(refit_candidate, registry, "cam2-model", "qa1",
                                 cameras=["cam2"]))
    assert runner.wait(timeout=30)
    assert runner.status()["state"] == "failed"
    assert "at least 10 labeled good frames, found 3" in runner.status()["error"]
    with pytest.raises(UnknownModel):
        registry.get("cam2-model")


def test_a_refit_refuses_a_taken_name_before_fitting(registry: Registry) -> None:
    taken = registry.entries()[0].name
    with pytest.raises(ModelError, match="already kept"):
        refit_candidate(registry, taken, "qa1")
    with pytest.raises(ValueError, match="model name"):
        refit_candidate(registry, "../x", "qa1")


def test_nothing_to_compare_before_the_box_has_run(store: Store) -> None:
    with pytest.raises(UnknownModel, match="start `inspector run` once"):
        refit_candidate(Registry(store), "candidate", "qa1")


def test_a_shadow_run_of_a_kept_candidate_becomes_its_figures(registry: Registry, frames,
                                                              model_dir) -> None:
    line = Line(registry.store, frames)
    with pytest.raises(NoLabeledHistory, match="label"):
        shadow_candidate(registry, registry.entries()[0].name)
    line.add("pass", "good", n=4)
    line.add("reject", "defect", n=2)
    running = load_model(model_dir)
    stricter = running.card.model_copy(update={"threshold": running.card.threshold.model_copy(
        update={"value": 1e9}), "name": "never-rejects"})
    (registry.folder.parent / "stricter").mkdir()
    save_model(registry.folder.parent / "stricter", stricter, running.onnx)
    folder_report = shadow_candidate(registry, registry.folder.parent / "stricter")
    assert folder_report["after"]["rejects"] == 0 and folder_report["labeled"] == 6
    assert registry.shadow(registry.entries()[0].name) is None  # a folder's report is not kept

    stages: list[tuple[str, float]] = []
    report = shadow_candidate(registry, registry.entries()[0].name,
                              report=lambda stage, fraction=None: stages.append((stage, fraction)))
    assert stages[-1] == ("scoring 6 of 6 labeled frames", 1.0)
    kept = registry.shadow(registry.entries()[0].name)
    assert kept == report and kept["before"]["sha256"] == kept["after"]["sha256"]
    assert kept["changed"] == []  # the active model against itself changes nothing


# -- the CLI --------------------------------------------------------------------------------

@pytest.fixture
def config(registry: Registry, tmp_path) -> str:
    path = tmp_path / "inspector.toml"
    path.write_text(f'[storage]\nroot = "{registry.store.root}"\n')
    return str(path)


def test_refit_and_shadow_commands(registry: Registry, frames, config: str, tmp_path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    line = Line(registry.store, frames)
    line.add("pass", "good", n=MIN_REFIT_SAMPLES - 1)
    assert main(["refit", "--config", config, "--out", "candidate"]) == 1
    assert "found 9" in capsys.readouterr().err
    line.add("pass", "good", n=1)
    line.add("reject", "defect", n=2)
    assert main(["refit", "--config", config, "--out", "candidate", "--since", "2023-11-14"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["candidate"] == "candidate" and answer["labeled_good"] == MIN_REFIT_SAMPLES
    assert registry.get("candidate").origin["by"].startswith("cli:")

    # Judged on parts it did not learn from: the 10 it was fitted on are left out.
    line.add("pass", "good", n=3)
    out = tmp_path / "shadow.json"
    assert main(["shadow", "candidate", "--config", config, "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert "labeled frames scored: 5" in table and "false rejects" in table
    assert f"{MIN_REFIT_SAMPLES} it was fitted on left out" in table
    report = json.loads(out.read_text())
    assert {"labeled", "before", "after", "changed"} <= report.keys()
    for side in ("before", "after"):
        assert {"false_rejects", "escapes", "auroc"} <= report[side].keys()
    assert report["excluded_training"] == MIN_REFIT_SAMPLES
    assert registry.shadow("candidate")["labeled"] == 5


def test_the_commands_refuse_bad_input_clearly(config: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["refit", "--config", config, "--out", "x", "--since", "last tuesday"])
    assert exited.value.code == 2 and "not a time" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["shadow", "x", "--config", config, "--cameras", "../etc"])
    assert "camera" in capsys.readouterr().err
    assert main(["shadow", "nope", "--config", config]) == 1
    assert "no model 'nope'" in capsys.readouterr().err
    assert main(["shadow", "inspection-model", "--config", config]) == 1
    assert "no labeled inspection" in capsys.readouterr().err


def test_one_refit_or_shadow_run_at_a_time_across_processes(registry: Registry, frames,
                                                           config: str, capsys) -> None:
    Line(registry.store, frames).add("pass", "good", n=MIN_REFIT_SAMPLES)
    with one_at_a_time(registry):  # as if the Models page's job were working
        with pytest.raises(Busy, match="another refit or shadow run"):
            refit_candidate(registry, "candidate", "qa1")
        assert main(["shadow", registry.entries()[0].name, "--config", config]) == 1
        assert "another refit or shadow run" in capsys.readouterr().err
    assert refit_candidate(registry, "candidate", "qa1").name == "candidate"  # free again
