"""Memory estimates, checked before the feature and training-set builds start their work.

Both builds hold every sequence in memory at once, ``rows x channels x seq_len`` float32
values, and copy it as it moves from numpy to Arrow, Parquet, DuckDB and back. Peaks measured
with ``ru_maxrss`` on CDNOW and synthetic logs (seq_len 52 to 6,000 daily bins) gave:

* feature build: 1.8 to 2.4 times the snapshot sequences (the per-cutoff parts, their
  concatenation, the Arrow table);
* training-set build: the labelled rows' arrays once (the retrieval fills them chunk by chunk,
  and its join reads only the chunk's customers' snapshots) plus about 0.15 times the
  sequences per row on the way, over a fixed ~0.85 GB (interpreter, Feast, DuckDB, the labels,
  one chunk's join): 1.6 GB at 1M, 4.7 GB at 5M and 8.6 GB at 10M entity rows (L=52,
  3 channels; 0.65, 3.3 and 6.5 GB written; ``VmHWM``, as ``ru_maxrss`` of a subprocess
  starts at its parent's).

The factors below round those up, so a refusal means the work would not have fitted.
"""

from __future__ import annotations

from pathlib import Path

import psutil

from churn.errors import ResourceError

FLOAT32_BYTES = 4
FEATURE_COPIES = 3
DATASET_LABELLED_COPIES = 3
DATASET_SOURCE_COPIES = 0
_CGROUP = Path("/sys/fs/cgroup")
# cgroup v1 writes "no limit" as a page-rounded 2**63 - 1.
_NO_LIMIT = 2**60


def sequence_bytes(rows: int, channels: int, seq_len: int) -> int:
    """Bytes of one copy of ``rows`` sequences of ``channels x seq_len`` float32 values."""
    return rows * channels * seq_len * FLOAT32_BYTES


def available_bytes(cgroup: Path = _CGROUP) -> int:
    """Memory this process may still allocate: the machine's, or its container's when lower.

    ``psutil`` sees the host's memory from inside a container, so the cgroup's limit less its
    usage (v2 ``memory.max``/``memory.current``, v1 ``memory/memory.limit_in_bytes``/
    ``memory.usage_in_bytes``) bounds it in a Kubernetes pod.

    Args:
        cgroup: Root of the cgroup file system.

    Returns:
        Bytes.
    """
    available = int(psutil.virtual_memory().available)
    for limit_file, usage_file in (
        (cgroup / "memory.max", cgroup / "memory.current"),
        (cgroup / "memory" / "memory.limit_in_bytes", cgroup / "memory" / "memory.usage_in_bytes"),
    ):
        limit, usage = _read_int(limit_file), _read_int(usage_file)
        if limit is not None and usage is not None and limit < _NO_LIMIT:
            available = min(available, max(limit - usage, 0))
    return available


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):  # absent, or "max" (no limit)
        return None


def check_memory(need: int, what: str, budget_mb: int | None) -> None:
    """Refuses work whose estimated peak exceeds the budget or the available memory.

    Args:
        need: Estimated peak in bytes.
        what: The work and how the estimate was made, for the message.
        budget_mb: ``features.memory_budget_mb``; ``None`` takes :func:`available_bytes`.

    Raises:
        ResourceError: The estimate exceeds the limit; the message names both and the settings.
    """
    if budget_mb is None:
        limit, source = available_bytes(), "available on this machine"
    else:
        limit, source = budget_mb * 2**20, "allowed by features.memory_budget_mb"
    if need > limit:
        raise ResourceError(
            f"{what} needs about {_gib(need)} of memory, but {_gib(limit)} are {source}: lower "
            "features.seq_len (--seq-len) or use fewer cutoffs, or run it on a machine with more "
            "memory (features.memory_budget_mb sets the limit instead)"
        )


def _gib(n: int) -> str:
    return f"{n / 2**30:,.1f} GiB"
