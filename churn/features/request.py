"""Online features to model requests: the one place that turns what Feast serves into instances.

The KServe transformer, ``churn features get``, the deploy smoke test and batch scoring all
call :func:`build_request`, so a request built from the online store is the same everywhere.
An instance is what ``churn/release/torchserve_handler.py`` and
``churn.model.network.encode_instances`` accept::

    {"sequence": {channel: [L raw values]}, "numeric": {feature: value},
     "categorical": {feature: "value" or None}}

The model's input spec (``model.json``'s ``input_spec``) says which features it reads:
``numeric_features`` are the point-in-time context features followed by the numeric
attributes, and ``categorical_features`` maps each categorical attribute to its vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from churn.features.sequences import CONTEXT_FEATURES
from churn.features.store import Features, FeatureStoreError


@dataclass
class ModelRequest:
    """The model's inputs for some customers, in the order they were asked for.

    Attributes:
        customer_ids: The customers.
        instances: One request instance per customer; an unknown customer's holds zeros.
        known: bool [N]; False where the online store has no snapshot of the customer.
        feature_ts: int64 [N] unix seconds of each customer's snapshot (0 where unknown).
        seq: float32 [N, C, L] in the input spec's channel order.
        num: float32 [N, F] in the input spec's numeric feature order.
        cat: object [N, K] categorical values in the input spec's order (``None`` where the
            store has none).
    """

    customer_ids: list[str]
    instances: list[dict]
    known: np.ndarray
    feature_ts: np.ndarray
    seq: np.ndarray
    num: np.ndarray
    cat: np.ndarray

    def feature_timestamp(self, index: int) -> pd.Timestamp | None:
        """The snapshot time of customer ``index`` (UTC), ``None`` when unknown."""
        if not self.known[index]:
            return None
        return pd.Timestamp(int(self.feature_ts[index]), unit="s", tz="UTC")


def model_feature_spec(input_spec: dict) -> dict:
    """Which online features a model reads, in the form of a feature repository's spec.

    A server reads exactly these (also where it has no ``spec.json``, as in the cluster,
    whose feature definitions live in Feast's SQL registry).

    Args:
        input_spec: The model's input spec.

    Returns:
        ``channels``, ``seq_len``, ``context_features``, ``numeric_attributes`` and
        ``categorical_attributes``.
    """
    numeric = list(input_spec["numeric_features"])
    return {
        "channels": list(input_spec["channels"]),
        "seq_len": int(input_spec["seq_len"]),
        "bin_days": input_spec.get("bin_days"),
        "context_features": [f for f in numeric if f in CONTEXT_FEATURES],
        "numeric_attributes": [f for f in numeric if f not in CONTEXT_FEATURES],
        "categorical_attributes": list(input_spec["categorical_features"]),
    }


def store_input_spec(spec: dict) -> dict:
    """The input spec of a model that reads every feature a repository holds.

    Args:
        spec: The repository's ``spec.json``.

    Returns:
        ``channels``, ``seq_len``, ``bin_days``, ``numeric_features`` and
        ``categorical_features`` (without vocabularies: every value is sent as it is).
    """
    return {
        "channels": list(spec["channels"]),
        "seq_len": int(spec["seq_len"]),
        "bin_days": spec.get("bin_days"),
        "numeric_features": [*spec["context_features"], *spec["numeric_attributes"]],
        "categorical_features": {name: [] for name in spec["categorical_attributes"]},
    }


def check_fits(spec: dict, input_spec: dict) -> None:
    """Refuses online features that the model cannot read as it was trained.

    The store may hold more than the model reads (a newer build with an extra channel while
    the previous champion still serves); it may not hold less, nor bins of another length.

    Args:
        spec: What the online features hold (a feature repository's ``spec.json``, or
            :func:`model_feature_spec`).
        input_spec: The model's input spec.

    Raises:
        FeatureStoreError: A channel, numeric or categorical feature of the model is missing,
            or the sequence length or bin width differs; the message names it.
    """
    problems = []
    missing = [c for c in input_spec["channels"] if c not in spec["channels"]]
    if missing:
        problems.append(f"channels {missing} are missing (the store has {spec['channels']})")
    if int(spec["seq_len"]) != int(input_spec["seq_len"]):
        problems.append(
            f"sequences hold {spec['seq_len']} bins, the model reads {input_spec['seq_len']}"
        )
    store_bins, model_bins = spec.get("bin_days"), input_spec.get("bin_days")
    if store_bins is not None and model_bins is not None and int(store_bins) != int(model_bins):
        problems.append(f"bins are {store_bins} days wide, the model's {model_bins}")
    numeric = [*spec["context_features"], *spec["numeric_attributes"]]
    missing = [f for f in input_spec["numeric_features"] if f not in numeric]
    if missing:
        problems.append(f"numeric features {missing} are missing")
    missing = [
        f for f in input_spec["categorical_features"] if f not in spec["categorical_attributes"]
    ]
    if missing:
        problems.append(f"categorical features {missing} are missing")
    if problems:
        raise FeatureStoreError(
            "the online features do not fit the model: " + "; ".join(problems) + ". Rebuild "
            "and materialize the features with the model's settings, or serve a model trained "
            "on this store"
        )


def build_request(
    customer_ids: list[str], features: Features, spec: dict, input_spec: dict
) -> ModelRequest:
    """Turns the online features of some customers into the model's request.

    Args:
        customer_ids: The customers, in the order ``features`` holds them.
        features: Their online features (:meth:`churn.features.store.OnlineReader.read`).
        spec: What ``features`` holds (the reader's spec).
        input_spec: The model's input spec.

    Returns:
        The instances, with each customer's feature timestamp and whether it is known.

    Raises:
        FeatureStoreError: The features do not fit the model (see :func:`check_fits`), or
            their count differs from the customers'.
    """
    check_fits(spec, input_spec)
    n = len(customer_ids)
    if len(features.seq) != n:
        raise FeatureStoreError(f"the online store returned {len(features.seq)} rows for {n} ids")
    channel_index = {c: j for j, c in enumerate(spec["channels"])}
    seq = features.seq[:, [channel_index[c] for c in input_spec["channels"]], :]
    numeric_source = np.concatenate([features.context, features.numeric], axis=1)
    numeric_index = {
        f: j for j, f in enumerate([*spec["context_features"], *spec["numeric_attributes"]])
    }
    num = (
        numeric_source[:, [numeric_index[f] for f in input_spec["numeric_features"]]]
        .astype(np.float32)
        .reshape(n, len(input_spec["numeric_features"]))
    )
    categorical_index = {f: j for j, f in enumerate(spec["categorical_attributes"])}
    cat = np.empty((n, len(input_spec["categorical_features"])), dtype=object)
    for k, name in enumerate(input_spec["categorical_features"]):
        values = features.categorical[:, categorical_index[name]]
        # The store's "" is "no value": the model's unknown index, sent as null.
        cat[:, k] = [str(v) if v != "" else None for v in values]
    event_ts = features.event_ts if features.event_ts is not None else np.zeros(n, dtype=np.int64)
    return ModelRequest(
        customer_ids=[str(c) for c in customer_ids],
        instances=_instances(seq, num, cat, input_spec),
        known=features.has_history.copy(),
        feature_ts=np.where(features.has_history, event_ts, 0).astype(np.int64),
        seq=seq,
        num=num,
        cat=cat,
    )


def _instances(seq: np.ndarray, num: np.ndarray, cat: np.ndarray, input_spec: dict) -> list[dict]:
    channels = list(input_spec["channels"])
    numeric = list(input_spec["numeric_features"])
    categorical = list(input_spec["categorical_features"])
    # float32 -> Python float is exact, and JSON keeps a float's shortest round-trip form, so
    # the server scores exactly the values the store holds.
    seq_lists = seq.tolist()
    num_lists = num.tolist()
    return [
        {
            "sequence": dict(zip(channels, seq_lists[i], strict=True)),
            "numeric": dict(zip(numeric, num_lists[i], strict=True)),
            "categorical": dict(zip(categorical, cat[i].tolist(), strict=True)),
        }
        for i in range(len(seq))
    ]
