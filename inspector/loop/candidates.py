"""What the Models page and the CLI do with candidates, one code path for both: refit one
into the registry from the store's labeled frames, and shadow-run one against the active
model. Each takes ``report(stage, fraction)`` and ``should_stop()``, so the page runs it as
a background job (``JobRunner``) and the CLI in the foreground."""

from __future__ import annotations

import functools
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # not POSIX: one box runs one command at a time by convention
    fcntl = None  # type: ignore[assignment]

from inspector.errors import InspectorError, UnknownModel
from inspector.loop.jobs import JobFunction, Report, ShouldStop
from inspector.loop.refit import refit, refit_samples
from inspector.loop.registry import Entry, Registry
from inspector.loop.shadow import shadow_run
from inspector.model import LoadedModel, load_model

WORK_LOCK = ".work.lock"  # in the registry folder: held while a refit or shadow run works


class Busy(InspectorError):
    """Another refit or shadow run is working on this box (the page's or a command's)."""


@contextmanager
def one_at_a_time(registry: Registry) -> Iterator[None]:
    """Held while a refit or shadow run works, across processes: the Models page's jobs and
    the CLI's commands share the box's cores with inspection, so only one runs at once."""
    registry.folder.mkdir(parents=True, exist_ok=True)
    with open(registry.folder / WORK_LOCK, "ab") as handle:
        if fcntl is not None:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise Busy("another refit or shadow run is working on this box (on the "
                           "Models page or from a command); wait for it to end") from None
        yield


def _never() -> bool:
    return False


def _ignore(stage: str, fraction: float | None = None) -> None:
    pass


def active_model(registry: Registry) -> tuple[Entry, LoadedModel]:
    """The active model's entry and files; refused when the box has not run yet."""
    sha = registry.active_sha()
    if sha is None:
        raise UnknownModel("no active model yet: start `inspector run` once, and it keeps the "
                           "config's model in the registry")
    return registry.get(sha), registry.load(sha)


def refit_candidate(registry: Registry, name: str, user: str | None, *,
                    cameras: Sequence[str] | None = None, since_ns: int | None = None,
                    include_passes: bool = False, report: Report = _ignore,
                    should_stop: ShouldStop = _never) -> Entry:
    """Fit a candidate named ``name`` the way the active model was fitted, on the store's
    labeled good frames, and keep it in the registry (not active)."""
    registry.check_new_name(name)  # before the fit, not after it
    entry, active = active_model(registry)
    report("reading samples", 0.0)
    samples = refit_samples(registry.store, cameras=cameras, since_ns=since_ns,
                            include_passes=include_passes)
    # Fitted beside the registry (same filesystem), then kept under its name by ``add``.
    with one_at_a_time(registry), tempfile.TemporaryDirectory(dir=registry.folder,
                                                              prefix=".refit-") as tmp:
        out = Path(tmp) / "model"
        refit(registry.store, active.card, out, samples=samples, progress=report,
              should_stop=should_stop, name=name)
        return registry.add(load_model(out), name, origin={
            "kind": "refit", "by": user, "from": entry.name, "from_sha256": entry.sha256,
            "samples": samples.to_json(), "inspection_ids": list(samples.ids)})


def shadow_candidate(registry: Registry, candidate: str | Path, *,
                     cameras: Sequence[str] | None = None, since_ns: int | None = None,
                     report: Report = _ignore, should_stop: ShouldStop = _never
                     ) -> dict[str, Any]:
    """Score ``candidate`` (a kept model's name, or a model folder) beside the active model
    on the labeled history. A kept candidate keeps the report as its figures."""
    entry, active = active_model(registry)
    folder = Path(candidate)
    kept = not folder.is_dir()
    model = registry.load(str(candidate)) if kept else load_model(folder)
    fitted_on = registry.get(str(candidate)).origin.get("inspection_ids", []) if kept else []

    def progress(done: int, total: int) -> None:
        report(f"scoring {done} of {total} labeled frames", done / total)

    with one_at_a_time(registry):
        result = shadow_run(registry.store, active, model, cameras=cameras,
                            since_ns=since_ns, progress=progress, should_stop=should_stop,
                            exclude_ids=fitted_on)
    data = {**result.to_json(), "at_ns": time.time_ns(), "active": entry.name,
            "candidate": registry.get(str(candidate)).name if kept else str(folder)}
    if kept:
        registry.save_shadow(str(candidate), data)
    return data


def as_job(action: Callable[..., Any], *args: Any, **kwargs: Any) -> JobFunction:
    """``action(*args, **kwargs)`` as a ``JobRunner`` job; its result as JSON."""

    def job(report: Report, should_stop: ShouldStop) -> dict[str, Any]:
        result = functools.partial(action, *args, **kwargs)(report=report,
                                                            should_stop=should_stop)
        return result.to_json() if isinstance(result, Entry) else result

    return job
