"""The closed loop: relabeled samples become a better model on the line.

- ``registry``: the models the box knows (files under the store's root, provenance and
  activations in its database); choosing the model a run starts with
- ``refit``: a candidate fitted from the store's labeled good samples, as a background job
- ``shadow``: a candidate scored beside the active model on the labeled history
"""

from inspector.loop.registry import Entry, Registry, check_model_name

__all__ = ["Entry", "Registry", "check_model_name"]
