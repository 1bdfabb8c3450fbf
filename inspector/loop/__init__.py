"""The closed loop: relabeled samples become a better model on the line.

- ``registry``: the models the box knows (files under the store's root, provenance and
  activations in its database); choosing the model a run starts with; promote, rollback
- ``refit``: a candidate fitted from the store's labeled good samples
- ``shadow``: a candidate scored beside the active model on the labeled history
- ``candidates``: refit a candidate into the registry, shadow-run one (the page and CLI's one
  code path)
- ``drift``: score drift per camera against the fit-time scores, an alarm that clears itself
- ``live_shadow``: a candidate scoring live frames beside the active model, never in the way
- ``jobs``: one background job at a time (a refit, a shadow run), at low priority, polled
"""

from inspector.loop.candidates import (
    Busy,
    active_model,
    as_job,
    refit_candidate,
    shadow_candidate,
)
from inspector.loop.drift import Drift, DriftMonitor
from inspector.loop.jobs import Cancelled, JobRunner, JobRunning
from inspector.loop.live_shadow import LiveShadow
from inspector.loop.refit import (
    MIN_REFIT_SAMPLES,
    NotEnoughSamples,
    RefitSamples,
    options_from_card,
    refit,
    refit_samples,
)
from inspector.loop.registry import Entry, Registry, check_model_name
from inspector.loop.shadow import NoLabeledHistory, ShadowReport, labeled_history, shadow_run

__all__ = [
    "MIN_REFIT_SAMPLES",
    "Busy",
    "Cancelled",
    "Drift",
    "DriftMonitor",
    "Entry",
    "JobRunner",
    "JobRunning",
    "LiveShadow",
    "NoLabeledHistory",
    "NotEnoughSamples",
    "RefitSamples",
    "Registry",
    "ShadowReport",
    "active_model",
    "as_job",
    "check_model_name",
    "labeled_history",
    "options_from_card",
    "refit",
    "refit_candidate",
    "refit_samples",
    "shadow_candidate",
    "shadow_run",
]
