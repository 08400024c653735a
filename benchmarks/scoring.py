"""Batch-scoring throughput against bare model inference on the same tensors, in one run.

A child process first writes synthetic customers' features to a Parquet file (untimed, and
outside this process, so its memory is not counted). Then this process streams that file
chunk by chunk through the batch scorer's path: read a chunk of features, build the model
request (``churn.features.request.build_request``), score it and build the output rows
(``churn.release.batch_score.score_chunk``), and append them to a Parquet scores file
(``write_scores``, the writer ``churn score`` uses). The bare run calls ``predict_proba`` on
the same chunk's tensors, and each chunk's scores must equal it to 1e-6.

Left out: Feast's point-in-time join (``FeatureRepo.historical_features``), which ``churn
score`` runs per chunk before this path; here a plain Parquet read stands in for it.

Goal: batch scoring >= 50% of bare inference, peak memory (max RSS of this process) < 4 GB.

Usage: ``python benchmarks/scoring.py [--customers 1000000] [--chunk 50000]``
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from churn.features.sequences import CONTEXT_FEATURES
from churn.features.store import Features
from churn.model.network import build_model, predict_proba
from churn.release.batch_score import ScoringModel, score_chunk, write_scores
from churn.settings import FeatureConfig, ModelConfig

CHANNELS = ["n_txn", "spend", "quantity"]
CUTOFF = pd.Timestamp("2026-11-30", tz="UTC")


def write_features(path: Path, customers: int, chunk: int, seq_len: int) -> None:
    """Sparse non-negative activity and context per customer, written chunk by chunk."""
    width = len(CHANNELS) * seq_len
    schema = pa.schema(
        [
            ("customer_id", pa.string()),
            ("seq", pa.list_(pa.float32(), width)),
            ("context", pa.list_(pa.float32(), len(CONTEXT_FEATURES))),
        ]
    )
    with pq.ParquetWriter(path, schema) as writer:
        for index, start in enumerate(range(0, customers, chunk)):
            rows = min(chunk, customers - start)
            rng = np.random.default_rng(index)
            seq = ((rng.random((rows, width)) < 0.2) * rng.gamma(2.0, 10.0, (1,))).astype(
                np.float32
            )
            context = rng.gamma(2.0, 30.0, (rows, len(CONTEXT_FEATURES))).astype(np.float32)
            writer.write_table(
                pa.table(
                    {
                        "customer_id": [str(start + i) for i in range(rows)],
                        "seq": pa.FixedSizeListArray.from_arrays(seq.ravel(), width),
                        "context": pa.FixedSizeListArray.from_arrays(
                            context.ravel(), len(CONTEXT_FEATURES)
                        ),
                    },
                    schema=schema,
                )
            )


def read_chunks(path: Path, chunk: int, seq_len: int) -> Iterator[tuple[list[str], Features]]:
    """The features file, ``chunk`` rows at a time, as the feature store hands them over."""
    for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk):
        rows = batch.num_rows
        seq = batch.column("seq").values.to_numpy().reshape(rows, len(CHANNELS), seq_len)
        context = batch.column("context").values.to_numpy().reshape(rows, -1)
        yield (
            batch.column("customer_id").to_pylist(),
            Features(
                seq=seq,
                context=context,
                numeric=np.zeros((rows, 0), dtype=np.float32),
                categorical=np.zeros((rows, 0), dtype=str),
                has_history=np.ones(rows, dtype=bool),
            ),
        )


def specs(seq_len: int) -> tuple[dict, dict]:
    """The feature repository's spec and the model's input spec."""
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
    return spec, input_spec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=50_000)
    parser.add_argument("--write-features", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    seq_len = FeatureConfig().seq_len
    if args.write_features:
        write_features(args.write_features, args.customers, args.chunk, seq_len)
        return
    spec, input_spec = specs(seq_len)
    # Arrow hands out read-only arrays; the model only reads them.
    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
    torch.manual_seed(0)
    model = build_model(input_spec, ModelConfig().model_dump()).eval()
    scoring = ScoringModel("bench", model, {"input_spec": input_spec, "threshold": 0.5})
    with tempfile.TemporaryDirectory(prefix="churn-bench-scoring-") as tmp:
        features_file = Path(tmp) / "features.parquet"
        subprocess.run(
            [sys.executable, __file__, "--customers", str(args.customers), "--chunk",
             str(args.chunk), "--write-features", str(features_file)],
            check=True,
        )  # fmt: skip
        bare_s = 0.0
        scored_at = pd.Timestamp.now(tz="UTC")

        def scored() -> Iterator[pa.Table]:
            nonlocal bare_s
            for ids, features in read_chunks(features_file, args.chunk, seq_len):
                cutoffs = np.full(len(ids), CUTOFF.to_datetime64())
                table = score_chunk(ids, cutoffs, features, spec, scoring, set(), scored_at)
                began = time.perf_counter()
                bare = predict_proba(
                    model,
                    torch.from_numpy(features.seq),
                    torch.from_numpy(features.context),
                    torch.zeros((len(ids), 0), dtype=torch.int64),
                ).numpy()
                bare_s += time.perf_counter() - began
                assert np.abs(table["score"].to_numpy() - bare).max() < 1e-6
                yield table

        began = time.perf_counter()
        written = write_scores(scored(), Path(tmp) / "scores.parquet")
        batch_s = time.perf_counter() - began - bare_s
    assert written == args.customers
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    batch_rate, bare_rate = args.customers / batch_s, args.customers / bare_s
    print(
        f"{args.customers:,} customers, chunks of {args.chunk:,}, seq_len {seq_len}, "
        f"{torch.get_num_threads()} threads: batch scoring (read, request, score, write) "
        f"{batch_rate:,.0f}/s, bare inference {bare_rate:,.0f}/s, ratio "
        f"{batch_rate / bare_rate:.2f} (goal >= 0.5); peak memory {peak_gb:.2f} GB (goal < 4)"
    )


if __name__ == "__main__":
    main()
