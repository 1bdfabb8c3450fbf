"""The model registry: kept models, their names, activations and the model a run starts with."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from inspector.cli import main
from inspector.errors import ModelError, UnknownModel
from inspector.loop import Registry, check_model_name
from inspector.model import LoadedModel, load_model
from inspector.store import Store


def variant(model: LoadedModel, threshold: float, name: str = "variant") -> LoadedModel:
    """The same graph under another name and threshold, with different bytes (so another
    sha256): a second model without a second fit."""
    onnx = model.onnx + b"\0" * int(threshold * 1000)  # trailing bytes ONNX Runtime ignores
    from inspector.model import sha256_bytes

    card = model.card.model_copy(update={
        "name": name, "onnx_sha256": sha256_bytes(onnx),
        "threshold": model.card.threshold.model_copy(update={"value": threshold})})
    return LoadedModel(card, onnx, model.path)


@pytest.fixture
def registry(store: Store) -> Registry:
    return Registry(store)


@pytest.fixture
def tiny(model_dir: Path) -> LoadedModel:
    return load_model(model_dir)


def test_a_kept_model_is_a_verified_folder_under_the_store(registry: Registry,
                                                          tiny: LoadedModel) -> None:
    entry = registry.add(tiny, "line-a", origin={"kind": "fit", "by": "qa1"})
    assert entry.folder == registry.store.root / "models" / "line-a"
    assert (entry.name, entry.sha256, entry.origin) == ("line-a", tiny.sha256,
                                                        {"kind": "fit", "by": "qa1"})
    assert registry.load("line-a").onnx == tiny.onnx
    assert registry.get(tiny.sha256[:8]).name == "line-a"
    assert not [p for p in registry.folder.iterdir() if p.name.startswith(".")]  # no staging


def test_adding_the_same_bytes_again_keeps_one_copy(registry: Registry, tiny: LoadedModel) -> None:
    first = registry.add(tiny, "line-a")
    again = registry.add(tiny, "other-name")
    assert again.name == first.name == "line-a"
    assert [e.name for e in registry.entries()] == ["line-a"]


def test_a_recalibrated_model_replaces_its_kept_card(registry: Registry, tiny: LoadedModel
                                                      ) -> None:
    registry.add(tiny, "line-a")
    card = tiny.card.model_copy(update={"threshold": tiny.card.threshold.model_copy(
        update={"value": 42.0, "method": "f1_optimal"})})
    entry = registry.add(LoadedModel(card, tiny.onnx, tiny.path), "ignored-name")
    assert entry.name == "line-a" and entry.card.threshold.value == 42.0
    assert registry.load("line-a").card.threshold.value == 42.0  # the files say so too
    model, _ = registry.startup_model(LoadedModel(card, tiny.onnx, tiny.path))
    assert model.card.threshold.value == 42.0


def test_a_threshold_set_on_the_box_outlives_a_restart_until_a_newer_calibration(
        registry: Registry, tiny: LoadedModel) -> None:
    def with_threshold(value: float, chosen_at: str) -> LoadedModel:
        card = tiny.card.model_copy(update={"threshold": tiny.card.threshold.model_copy(
            update={"value": value, "chosen_at": chosen_at})})
        return LoadedModel(card, tiny.onnx, tiny.path)

    configured = with_threshold(1.0, "2026-01-01T00:00:00+00:00")
    registry.startup_model(configured)
    kept = registry.keep_threshold(with_threshold(7.5, "2026-01-01T00:00:00+00:00"))
    assert kept.card.threshold.value == 7.5 and kept.card.threshold.chosen_at > "2026-01-02"
    model, _ = registry.startup_model(configured)  # a restart with the config's older card
    assert model.card.threshold.value == 7.5
    assert registry.load(tiny.sha256).card.threshold.value == 7.5
    # Restored (the admin's undo): kept too, though the restored card is the older one.
    registry.keep_threshold(configured)
    assert registry.startup_model(configured)[0].card.threshold.value == 1.0
    registry.keep_threshold(with_threshold(7.5, "2026-01-01T00:00:00+00:00"))
    # `inspector calibrate` later writes a newer card into the config's folder: it wins.
    recalibrated = with_threshold(3.0, "2099-01-01T00:00:00+00:00")
    assert registry.startup_model(recalibrated)[0].card.threshold.value == 3.0


def test_names_are_unique_and_checked(registry: Registry, tiny: LoadedModel) -> None:
    registry.add(tiny, "line-a")
    with pytest.raises(ModelError, match="already kept"):
        registry.add(variant(tiny, 2.0), "line-a")
    assert registry.add(variant(tiny, 2.0, name="line-a")).name == "line-a-2"  # default: unique
    for bad in ("", "../x", ".hidden", "a/b", "x" * 65, "cam\n", None):
        with pytest.raises(ValueError, match="model name"):
            check_model_name(bad)
        if isinstance(bad, str) and bad:
            with pytest.raises(ValueError):
                registry.add(variant(tiny, 3.0), bad)


def test_unknown_models_are_named_with_what_is_kept(registry: Registry, tiny: LoadedModel) -> None:
    registry.add(tiny, "line-a")
    with pytest.raises(UnknownModel, match=r"no model 'nope'.*kept: line-a"):
        registry.load("nope")


def test_a_leftover_folder_from_a_crash_is_replaced(registry: Registry, tiny: LoadedModel) -> None:
    leftover = registry.folder / "line-a"
    leftover.mkdir(parents=True)
    (leftover / "model.onnx").write_bytes(b"half")
    entry = registry.add(tiny, "line-a")
    assert load_model(entry.folder).sha256 == tiny.sha256


def test_export_writes_a_fitted_model_folder(registry: Registry, tiny: LoadedModel,
                                             tmp_path: Path) -> None:
    registry.add(tiny, "line-a")
    out = registry.export("line-a", tmp_path / "out")
    assert load_model(out).sha256 == tiny.sha256
    with pytest.raises(ModelError, match="not empty"):
        registry.export("line-a", out)


def test_a_run_starts_with_the_promoted_model_until_the_config_changes(
        registry: Registry, tiny: LoadedModel) -> None:
    other, third = variant(tiny, 2.0, "candidate"), variant(tiny, 3.0, "newer")
    model, why = registry.startup_model(tiny)
    assert model.sha256 == tiny.sha256 and "config" in why
    registry.add(other, "candidate")
    registry.switch("candidate", "promote", "qa1", detail={"why": "fewer false rejects"})
    model, why = registry.startup_model(tiny)  # a restart keeps the promotion
    assert model.sha256 == other.sha256 and "promoted" in why
    model, why = registry.startup_model(third)  # the integrator points the config elsewhere
    assert model.sha256 == third.sha256 and "changed" in why
    assert registry.get("newer").active and registry.get("newer").origin["kind"] == "config"


def test_a_promoted_model_that_no_longer_loads_falls_back_to_the_config(
        registry: Registry, tiny: LoadedModel) -> None:
    registry.startup_model(tiny)
    registry.add(variant(tiny, 2.0), "candidate")
    registry.switch("candidate", "promote", "qa1")
    (registry.folder / "candidate" / "model.onnx").write_bytes(b"damaged")
    model, why = registry.startup_model(tiny)
    assert model.sha256 == tiny.sha256 and "failed to load" in why


def test_rollback_returns_to_the_model_active_before(registry: Registry, tiny: LoadedModel
                                                     ) -> None:
    registry.startup_model(tiny)
    assert registry.previous() is None
    registry.add(variant(tiny, 2.0), "candidate")
    registry.switch("candidate", "promote", "qa1")
    assert registry.previous().sha256 == tiny.sha256
    assert registry.rollback("admin").sha256 == tiny.sha256
    assert registry.active_sha() == tiny.sha256
    actions = [(a["action"], a["user"]) for a in registry.store.activations()]
    assert actions == [("rollback", "admin"), ("promote", "qa1"), ("start", None)]
    audited = [json.loads(a["detail_json"]) for a in registry.store.audit_log(10)
               if a["action"] == "model"]
    assert [(a["action"], a["name"]) for a in audited] == [  # changes are audited, starts not
        ("rollback", tiny.card.name), ("promote", "candidate")]
    assert audited[0]["from"] == registry.get("candidate").sha256


def test_activating_an_unknown_sha_is_refused(store: Store) -> None:
    with pytest.raises(KeyError):
        store.record_activation("00" * 32, "promote", "qa1")
    with pytest.raises(ValueError, match="action"):
        store.record_activation("00" * 32, "delete", "qa1")


# -- the CLI --------------------------------------------------------------------------------

@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "inspector.toml"
    path.write_text(f'[storage]\nroot = "{tmp_path / "var"}"\n')
    return path


def test_models_import_list_and_export(config: Path, model_dir: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    sha = load_model(model_dir).sha256
    assert main(["models", "import", str(model_dir), "--name", "line-a",
                 "--config", str(config)]) == 0
    assert f"kept as line-a ({sha[:12]}" in capsys.readouterr().out
    assert main(["models", "import", str(model_dir), "--config", str(config)]) == 0
    assert "already kept as line-a" in capsys.readouterr().out
    assert main(["models", "list", "--config", str(config)]) == 0
    listing = capsys.readouterr().out
    assert "line-a" in listing and sha[:12] in listing and "import" in listing
    assert main(["models", "list", "--json", "--config", str(config)]) == 0
    row = json.loads(capsys.readouterr().out.splitlines()[0])
    assert (row["name"], row["sha256"], row["kept"]) == ("line-a", sha, True)
    assert main(["models", "export", "line-a", str(tmp_path / "copy"),
                 "--config", str(config)]) == 0
    assert load_model(tmp_path / "copy").sha256 == sha


def test_models_commands_refuse_bad_input_clearly(config: Path, model_dir: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "export", "nope", str(tmp_path / "x"), "--config", str(config)]) == 1
    assert "no model 'nope'" in capsys.readouterr().err
    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    (broken / "model.onnx").write_bytes(b"not the model")
    assert main(["models", "import", str(broken), "--config", str(config)]) == 1
    assert "does not match" in capsys.readouterr().err
    assert main(["models", "import", str(model_dir), "--name", "../up",
                 "--config", str(config)]) == 2
    assert "model name" in capsys.readouterr().err
    assert main(["models", "list", "--config", str(config)]) == 0
    assert "no models yet" in capsys.readouterr().out


class FakeInspection:
    """The running inspection's side of a switch: what it was handed, or a refusal."""

    def __init__(self, refuse: bool = False) -> None:
        self.refuse = refuse
        self.used: list[str] = []

    def use_model(self, model: LoadedModel) -> None:
        if self.refuse:
            raise ModelError("cannot run here")
        self.used.append(model.sha256)


def test_a_switch_hands_the_model_to_the_running_inspection_first(
        registry: Registry, tiny: LoadedModel) -> None:
    registry.startup_model(tiny)
    registry.add(variant(tiny, 2.0), "candidate")
    with pytest.raises(ModelError, match="cannot run"):
        registry.switch("candidate", "promote", "qa1", FakeInspection(refuse=True))
    assert registry.active_sha() == tiny.sha256  # refused: nothing recorded
    running = FakeInspection()
    registry.switch("candidate", "promote", "qa1", running)
    registry.rollback("qa1", running)
    assert running.used == [registry.get("candidate").sha256, tiny.sha256]


def test_rollback_without_a_previous_model_is_refused(registry: Registry, tiny: LoadedModel
                                                      ) -> None:
    registry.startup_model(tiny)
    with pytest.raises(UnknownModel, match="no previous model"):
        registry.rollback("qa1")
