"""The models the box knows: their files under ``<storage root>/models/<name>/``, their
provenance and every change of the active model in the store's database.

A kept model is a fitted-model folder (``model.onnx`` + ``card.json``) copied into the
registry under a name; its sha256 is its identity (one name per sha, one sha per name).
The active model is the one of the latest activation (a start, promotion or rollback), so
a restart keeps a promoted model. The config's ``model.path`` wins only when it changed
since the last start: an integrator who points the config at a new model means it.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from inspector.errors import ModelError, UnknownModel
from inspector.files import write_atomic
from inspector.model import LoadedModel, ModelCard, load_model, now_iso, save_model
from inspector.store import Store

logger = logging.getLogger(__name__)

REGISTRY_DIR = "models"
SHADOW_FILE = "shadow.json"  # in a kept model's folder: its latest shadow run's report
MAX_NAME = 64
# Names become folder names and URL parts: letters, digits, "_", "-", "."; not starting with
# "." (hidden, and the registry's own temporary folders start with one).
_NAME = re.compile(rf"[A-Za-z0-9][A-Za-z0-9_.-]{{0,{MAX_NAME - 1}}}")


def check_model_name(name: Any) -> str:
    """``name`` when it can name a registry entry, else ``ValueError`` saying what may."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"a model name is 1-{MAX_NAME} of A-Z a-z 0-9 _ - . and starts with a "
                         f"letter or digit, got {name!r}"[:200])
    return name


class Inspection(Protocol):
    """What a switch needs of the running inspection (``InspectionService``)."""

    def use_model(self, model: LoadedModel) -> Any: ...


@dataclass(frozen=True)
class Entry:
    """One model the store knows; ``folder`` is None for one that scored rows but whose files
    the registry does not keep (models seen before the registry existed)."""

    name: str
    sha256: str
    card: ModelCard
    folder: Path | None
    added_ns: int
    origin: dict[str, Any]
    active: bool

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "sha256": self.sha256, "active": self.active,
                "kept": self.folder is not None, "added_ns": self.added_ns,
                "origin": self.origin, "threshold": self.card.threshold.value,
                "method": self.card.method, "backbone": self.card.backbone.get("name"),
                "input_size": list(self.card.input.size), "created_at": self.card.created_at,
                "training": self.card.training.model_dump(mode="json"),
                "threshold_warning": self.card.threshold.detail.get("warning"),
                "metrics": self.card.metrics}


class Registry:
    """The model registry over one open ``Store``; safe to share between threads."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.folder = store.root / REGISTRY_DIR

    # -- reading -----------------------------------------------------------------------------

    def entries(self) -> list[Entry]:
        """Every model the store knows, newest first; the active one is marked."""
        active = self.active_sha()
        entries = []
        for row in self.store.models():
            try:
                card = ModelCard.model_validate_json(row["card_json"])
            except ValueError:  # a card from another version; listing must not fail on it
                logger.warning("model %s: card not readable by this version", row["sha256"][:12])
                continue
            folder = self.store.root / row["folder"] if row["folder"] else None
            entries.append(Entry(row["name"], row["sha256"], card, folder, row["added_ns"],
                                 row["origin"], row["sha256"] == active))
        return entries

    def get(self, key: str) -> Entry:
        """The entry named ``key``, or whose sha256 starts with ``key`` (at least 8 digits)."""
        entries = self.entries()
        named = [e for e in entries if e.name == key]
        if len(named) > 1:  # a kept model and an older one seen under the same name
            named = [e for e in named if e.folder is not None] or named[:1]
        if not named and len(key) >= 8:
            named = [e for e in entries if e.sha256.startswith(key.lower())]
        if len(named) > 1:
            raise UnknownModel(f"{key!r} names {len(named)} models; give more of the sha256")
        if not named:
            known = ", ".join(e.name for e in entries if e.folder is not None) or "none"
            raise UnknownModel(f"no model {key!r} in the registry (kept: {known}); "
                               "`inspector models list` shows them")
        return named[0]

    def load(self, key: str) -> LoadedModel:
        """The kept model ``key``, verified against its card's sha256."""
        entry = self.get(key)
        if entry.folder is None:
            raise UnknownModel(f"model {entry.name} scored rows here but its files are not "
                               "kept; import it with `inspector models import FOLDER`")
        return load_model(entry.folder)

    def active_sha(self) -> str | None:
        latest = self.store.activations(1)
        if latest:
            return latest[0]["sha256"]
        active = self.store.active_model()
        return active["sha256"] if active else None

    def previous(self) -> Entry | None:
        """The kept model that was active before the current one: what a rollback returns to."""
        current = self.active_sha()
        kept = {e.sha256: e for e in self.entries() if e.folder is not None}
        for activation in self.store.activations(1000):
            if activation["sha256"] != current and activation["sha256"] in kept:
                return kept[activation["sha256"]]
        return None

    # -- changing ----------------------------------------------------------------------------

    def add(self, model: LoadedModel, name: str | None = None,
            origin: dict[str, Any] | None = None) -> Entry:
        """Keep ``model`` under ``name`` (default: its card's name, made unique). Adding a
        model the registry already keeps returns its entry, with the card replaced when it
        differs (``inspector calibrate`` changes the card, not the ONNX bytes)."""
        existing = {e.sha256: e for e in self.entries()}
        same = existing.get(model.sha256)
        if same is not None and same.folder is not None:
            card = model.card
            if same.card.threshold.chosen_at > card.threshold.chosen_at:
                # A threshold set on this box since (the admin page) outlives the older card
                # a restart brings from the config's folder; a newer calibration replaces it.
                card = card.model_copy(update={"threshold": same.card.threshold,
                                               "score_scale": same.card.score_scale})
            if same.card != card:  # recalibrated (same bytes): the newer card wins
                self._replace_card(same, card)
                return self.get(same.name)
            return same
        if name is None:
            taken = {e.name for e in existing.values() if e.folder is not None}
            name = _unique(_as_name(model.card.name), taken)
        self.check_new_name(name)
        target = self.folder / name
        self.folder.mkdir(parents=True, exist_ok=True)
        # Written whole into a hidden folder, then renamed: a crash leaves no half model
        # under a real name (a leftover hidden folder is replaced by the next add).
        staging = Path(tempfile.mkdtemp(dir=self.folder, prefix=f".{name}."))
        try:
            save_model(staging, model.card, model.onnx)
            if target.exists():  # files of an add whose database write never happened
                shutil.rmtree(target)
            staging.rename(target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        relative = target.relative_to(self.store.root).as_posix()
        self.store.register_model(model.sha256, name, model.card.model_dump_json(),
                                  active=False, folder=relative, origin=origin or {})
        logger.info("model %s (%s…) kept in %s", name, model.sha256[:12], target)
        return self.get(name)

    def keep_threshold(self, model: LoadedModel) -> Entry:
        """Make ``model``'s card (a threshold just set or restored on the running box) the
        kept card of its bytes, stamped now, so a restart starts with this threshold."""
        card = model.card.model_copy(update={"threshold": model.card.threshold.model_copy(
            update={"chosen_at": now_iso()})})
        entry = self.add(LoadedModel(card, model.onnx, model.path))
        if entry.card != card:  # kept with a newer threshold within the same second
            self._replace_card(entry, card)
        return self.get(entry.name)

    def _replace_card(self, entry: Entry, card: ModelCard) -> None:
        assert entry.folder is not None
        save_model(entry.folder, card)
        self.store.register_model(entry.sha256, entry.name, card.model_dump_json(),
                                  active=False)
        logger.info("model %s: card updated (threshold %.4g)", entry.name, card.threshold.value)

    def check_new_name(self, name: Any) -> str:
        """``name`` when a new model may be kept under it: ``ValueError`` when it is no
        model name, ``ModelError`` when a kept model has it."""
        check_model_name(name)
        if any(e.name == name and e.folder is not None for e in self.entries()):
            raise ModelError(f"a model named {name!r} is already kept; choose another name")
        return name

    def save_shadow(self, key: str, report: dict[str, Any]) -> None:
        """Keep ``report`` (``ShadowReport.to_json()``, plus when) as the model's figures on
        the labeled history; the latest run replaces the one before."""
        entry = self.get(key)
        if entry.folder is None:
            raise UnknownModel(f"model {entry.name} is not kept; nothing to attach a report to")
        write_atomic(entry.folder / SHADOW_FILE, json.dumps(report, indent=1).encode())

    def shadow(self, key: str | Entry) -> dict[str, Any] | None:
        """The latest shadow report of ``key`` (a name, or an entry already at hand), or
        None when it has had none."""
        entry = key if isinstance(key, Entry) else self.get(key)
        if entry.folder is None:
            return None
        try:
            return json.loads((entry.folder / SHADOW_FILE).read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            logger.warning("%s: shadow report unreadable (%s)", entry.folder / SHADOW_FILE, exc)
            return None

    def export(self, key: str, destination: Path) -> Path:
        """Write the kept model ``key`` as a fitted-model folder at ``destination``."""
        model = self.load(key)
        if destination.exists() and any(destination.iterdir()):
            raise ModelError(f"{destination} exists and is not empty; choose a new folder")
        save_model(destination, model.card, model.onnx)
        return destination

    def switch(self, key: str, action: str, user: str | None,
               inspection: Inspection | None = None, detail: dict[str, Any] | None = None
               ) -> Entry:
        """Make the kept model ``key`` the active one (``action``: promote or rollback).

        With a running ``inspection`` the model is loaded and warmed up first and takes over
        between two batches, so no frame is lost; a model that cannot run here is refused
        (``ModelError``) and nothing is recorded. Without one (the web UI alone) it becomes
        the model the next run starts with."""
        model = self.load(key)
        if inspection is not None:
            inspection.use_model(model)
        self.store.record_activation(model.sha256, action, user,
                                     {"name": self.get(key).name, **(detail or {})})
        return self.get(key)

    def rollback(self, user: str | None, inspection: Inspection | None = None) -> Entry:
        """Back to the model that was active before the current one."""
        previous = self.previous()
        if previous is None:
            raise UnknownModel("no previous model to roll back to")
        return self.switch(previous.name, "rollback", user, inspection,
                           {"from": self.active_sha()})

    def startup_model(self, configured: LoadedModel, config_path: str | None = None
                      ) -> tuple[LoadedModel, str]:
        """The model a run starts with, and why. The configured model is kept in the registry;
        the active one wins unless the configured model changed since the last start."""
        kept = self.add(configured, origin={"kind": "config", "path": config_path})
        # The kept card: the config's, unless a threshold was set here since (``add``).
        configured = LoadedModel(kept.card, configured.onnx, configured.path)
        starts = [a for a in self.store.activations(1000) if a["action"] == "start"]
        last_configured = starts[0]["detail"].get("configured") if starts else None
        active = self.active_sha()
        model, reason = configured, "the config's model.path"
        if last_configured == configured.sha256 and active not in (None, configured.sha256):
            try:
                model = self.load(active)
                reason = "the promoted model (the config's model.path is unchanged since)"
            except ModelError as exc:
                logger.error("active model %s cannot be loaded (%s); starting with the config's",
                             active[:12], exc)
                reason = f"the config's model.path (the active model failed to load: {exc})"
        elif last_configured not in (None, configured.sha256):
            reason = "the config's model.path (changed since the last start)"
        self.store.record_activation(model.sha256, "start", None,
                                     {"configured": configured.sha256, "reason": reason})
        return model, reason


def _as_name(text: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).lstrip("._-")[:MAX_NAME]
    return cleaned or "model"


def _unique(name: str, taken: set[str]) -> str:
    candidate, n = name, 2
    while candidate in taken:
        suffix = f"-{n}"
        candidate, n = name[:MAX_NAME - len(suffix)] + suffix, n + 1
    return candidate
