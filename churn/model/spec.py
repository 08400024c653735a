"""The input spec a model is bound to, and how two specs differ.

A model's ``input_spec`` (in ``model.json``) is its training set's metadata. The fields in
:data:`SPEC_FIELDS` fix what a client sends (channels, sequence length, numeric and categorical
features with their vocabularies), what one sequence step means (``bin_days``) and what the
answer means (``horizon_days``, the label's definition). Two models that differ in any of them
answer different requests, or the same request with a different meaning, and neither can be
scored on the other's training set. ``norm`` is not among them: each model carries its own.

``churn_definition`` (lapse, partial defection or contract, with its parameters) is part of the
answer's meaning like the horizon: the gate never compares models of different definitions. A
spec written before the field existed is lapse, the only definition there was.
"""

from __future__ import annotations

SPEC_FIELDS = (
    "channels",
    "seq_len",
    "bin_days",
    "horizon_days",
    "churn_definition",
    "numeric_features",
    "categorical_features",
)
# What a spec without the field means (models trained before the definitions existed).
_DEFAULTS = {"churn_definition": {"name": "lapse"}}
# Vocabularies can hold thousands of values; a message names a few of them.
_SHOWN = 5


def input_spec_changes(old: dict, new: dict) -> list[str]:
    """What changes from one input spec to another, one phrase per changed field.

    Args:
        old: The input spec in use (the champion's).
        new: The input spec that would replace it.

    Returns:
        For example ``["bin_days 7 -> 1", "channels: added ['returns']"]``; empty when the
        two specs accept the same requests with the same meaning.
    """
    changes = []
    for key in SPEC_FIELDS:
        before, after = old.get(key, _DEFAULTS.get(key)), new.get(key, _DEFAULTS.get(key))
        if key == "categorical_features" and isinstance(before, dict) and isinstance(after, dict):
            changes.extend(_vocabulary_changes(before, after))
        elif isinstance(before, list) and isinstance(after, list):
            if before != after:
                changes.append(f"{key}: {_list_change(before, after)}")
        elif before != after:
            changes.append(f"{key} {before!r} -> {after!r}")
    return changes


def _vocabulary_changes(before: dict, after: dict) -> list[str]:
    # The order of the features is the order of the model's categorical columns.
    if list(before) != list(after):
        return [f"categorical_features: {_list_change(list(before), list(after))}"]
    return [
        f"categorical_features[{name!r}] vocabulary: {_list_change(before[name], after[name])}"
        for name in before
        if before[name] != after[name]
    ]


def _list_change(before: list, after: list) -> str:
    # Sets keep large vocabularies cheap; repr() also copes with a hand-edited, unhashable item.
    old, new = {repr(x) for x in before}, {repr(x) for x in after}
    added = [x for x in after if repr(x) not in old]
    removed = [x for x in before if repr(x) not in new]
    parts = []
    if added:
        parts.append(f"added {_few(added)}")
    if removed:
        parts.append(f"removed {_few(removed)}")
    # Same items in another order: each position now means something else to the model.
    return ", ".join(parts) or f"reordered {_few(before)} -> {_few(after)}"


def _few(items: list) -> str:
    shown = ", ".join(repr(x) for x in items[:_SHOWN])
    more = f", ... ({len(items)} in all)" if len(items) > _SHOWN else ""
    return f"[{shown}{more}]"
