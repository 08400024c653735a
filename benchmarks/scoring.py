"""Batch-scoring throughput against bare model inference on the same tensors, in one run.

Synthetic customers' features (as Feast returns them) go through the batch scorer's path,
``churn.features.request.build_request`` then ``ScoringModel.score``, chunk by chunk; the bare
run calls ``predict_proba`` on the same chunk's tensors. Feast's read is left out: it is I/O,
and the question here is what the request path costs over the model. Goal: batch >= 50% of bare,
peak memory (max RSS) < 4 GB.

Usage: ``python benchmarks/scoring.py [--customers 1000000] [--chunk 50000]``
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch

from churn.features.request import build_request
from churn.features.sequences import CONTEXT_FEATURES
from churn.features.store import Features
from churn.model.network import build_model, predict_proba
from churn.release.batch_score import ScoringModel
from churn.settings import FeatureConfig, ModelConfig

CHANNELS = ["n_txn", "spend", "quantity"]


def chunk_features(rows: int, seq_len: int, seed: int) -> Features:
    """One chunk of customers' features: sparse non-negative activity and context."""
    rng = np.random.default_rng(seed)
    seq = (rng.random((rows, len(CHANNELS), seq_len)) < 0.2) * rng.gamma(2.0, 10.0, (1,))
    return Features(
        seq=seq.astype(np.float32),
        context=rng.gamma(2.0, 30.0, (rows, len(CONTEXT_FEATURES))).astype(np.float32),
        numeric=np.zeros((rows, 0), dtype=np.float32),
        categorical=np.zeros((rows, 0), dtype=str),
        has_history=np.ones(rows, dtype=bool),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=50_000)
    args = parser.parse_args()
    seq_len = FeatureConfig().seq_len
    spec = {
        "channels": CHANNELS,
        "seq_len": seq_len,
        "bin_days": 7,
        "context_features": list(CONTEXT_FEATURES),
        "numeric_attributes": [],
        "categorical_attributes": [],
    }
    input_spec = {
        "channels": CHANNELS,
        "seq_len": seq_len,
        "bin_days": 7,
        "numeric_features": list(CONTEXT_FEATURES),
        "categorical_features": {},
        "norm": {
            "seq_mean": [1.0] * len(CHANNELS),
            "seq_std": [5.0] * len(CHANNELS),
            "num_mean": [30.0] * len(CONTEXT_FEATURES),
            "num_std": [30.0] * len(CONTEXT_FEATURES),
        },
    }
    model = build_model(input_spec, ModelConfig().model_dump()).eval()
    scoring = ScoringModel("bench", model, {"input_spec": input_spec, "threshold": 0.5})
    batch_s = bare_s = 0.0
    for index, start in enumerate(range(0, args.customers, args.chunk)):
        rows = min(args.chunk, args.customers - start)
        features = chunk_features(rows, seq_len, index)
        ids = [str(start + i) for i in range(rows)]
        began = time.perf_counter()
        request = build_request(ids, features, spec, input_spec)
        scores = scoring.score(request, np.arange(rows))
        batch_s += time.perf_counter() - began
        cat = torch.zeros((rows, 0), dtype=torch.int64)
        began = time.perf_counter()
        bare = predict_proba(
            model, torch.from_numpy(request.seq), torch.from_numpy(request.num), cat
        ).numpy()
        bare_s += time.perf_counter() - began
        assert np.abs(scores - bare).max() < 1e-6
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    batch_rate, bare_rate = args.customers / batch_s, args.customers / bare_s
    print(
        f"{args.customers:,} customers, seq_len {seq_len}, {torch.get_num_threads()} threads: "
        f"batch scoring {batch_rate:,.0f}/s, bare inference {bare_rate:,.0f}/s, "
        f"ratio {batch_rate / bare_rate:.2f} (goal >= 0.5); peak memory {peak_gb:.2f} GB "
        "(goal < 4)"
    )


if __name__ == "__main__":
    main()
