"""Where a run's transaction log comes from: CDNOW, the generator, a file or folder, or S3."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from churn.errors import ContractError
from churn.io.object_store import fetch, is_s3_uri
from churn.settings import FeatureConfig

SYNTH_DEFAULTS = {"customers": 2000, "days": 730, "seed": 0}


@dataclass(frozen=True)
class DataSource:
    """A transaction log ready for ``churn.features.build.build_features``.

    Attributes:
        transactions: The transaction log file.
        customers: The customers table, if any.
        observed_until: End of the observation period (ISO time); ``None`` takes the last event.
        cutoffs: Cutoffs the source prescribes (the synthetic generator's schedule, which drops
            cutoffs before its first day); ``None`` leaves the choice to the feature step.
        cancellations: The cancellations table of a data folder, if it has one (contract
            labels read it).
    """

    transactions: Path
    customers: Path | None = None
    observed_until: str | None = None
    cutoffs: list[str] | None = None
    cancellations: Path | None = None


def resolve_data(
    data: str,
    workdir: str | Path,
    cfg: FeatureConfig,
    customers: str | None = None,
    endpoint_url: str | None = None,
) -> DataSource:
    """Turns the pipeline's ``data`` argument into files that follow the data contract.

    Args:
        data: One of

            * ``cdnow``: the CDNOW log shipped in the ``lifetimes`` package, converted;
            * ``synth`` or ``synth:customers=N,days=D,seed=S``: a synthetic log (defaults in
              :data:`SYNTH_DEFAULTS`) whose cutoff schedule follows ``cfg``;
            * a transaction log file (CSV or Parquet);
            * a folder with ``transactions.parquet`` (or ``.csv``) and optionally
              ``customers.parquet`` and ``generator.json`` (what ``churn data synth`` writes)
              and ``cancellations.parquet`` (or ``.csv``);
            * either of the last two in S3: ``s3://bucket/key`` of the file or of the folder's
              prefix, fetched into ``workdir`` first (see ``churn.io.object_store.fetch``).
        workdir: Scratch folder for converted, generated or fetched files.
        cfg: Feature settings (horizon and cutoff schedule for synthetic data).
        customers: A customers table (a path or ``s3://`` URI); overrides one found in a data
            folder.
        endpoint_url: S3 endpoint of a non-AWS store for ``s3://`` inputs; ``None`` for AWS.

    Returns:
        The files and the observation period.

    Raises:
        ContractError: ``data`` names nothing usable, or a ``synth:`` option is malformed.
    """
    workdir = Path(workdir)
    if is_s3_uri(data):
        data = str(fetch(data, workdir / "s3-data", endpoint_url))
    if customers and is_s3_uri(customers):
        customers = str(fetch(customers, workdir / "s3-customers", endpoint_url))
    if data == "cdnow":
        from churn.data.cdnow import load_cdnow, write_table

        source = DataSource(write_table(load_cdnow(), workdir / "cdnow.parquet"))
    elif data == "synth" or data.startswith("synth:"):
        source = _synthesize(data, workdir / "synth", cfg)
    else:
        source = _data_folder(Path(data)) if Path(data).is_dir() else DataSource(Path(data))
        if not source.transactions.is_file():
            raise ContractError(
                f"data {data!r} is neither 'cdnow', 'synth[:customers=N,days=D,seed=S]', "
                "a transaction log file nor a folder holding transactions.parquet"
            )
    if customers:
        source = dataclasses.replace(source, customers=Path(customers))
    return source


def _synthesize(data: str, out: Path, cfg: FeatureConfig) -> DataSource:
    from churn.data.synth import generate, make_spec

    options = dict(SYNTH_DEFAULTS)
    for item in filter(None, data.partition(":")[2].split(",")):
        key, _, value = item.partition("=")
        if key not in options or not value.strip().isdigit():
            raise ContractError(
                f"data {data!r}: {item!r} is not one of "
                f"{', '.join(f'{k}=<integer>' for k in options)}"
            )
        options[key] = int(value)
    spec = make_spec(
        options["customers"],
        options["days"],
        options["seed"],
        horizon_days=cfg.horizon_days,
        step_days=cfg.cutoff_step_days,
        n_train_cutoffs=cfg.n_train_cutoffs,
    )
    generate(spec, out)
    return DataSource(
        out / "transactions.parquet",
        out / "customers.parquet",
        spec.observed_until.isoformat(),
        [c.date().isoformat() for c in spec.cutoffs],
    )


def _data_folder(folder: Path) -> DataSource:
    transactions = next(
        (p for p in (folder / "transactions.parquet", folder / "transactions.csv") if p.is_file()),
        folder / "transactions.parquet",
    )
    customers = folder / "customers.parquet"
    generator = folder / "generator.json"
    observed_until = _observed_until(generator) if generator.is_file() else None
    candidates = (folder / "cancellations.parquet", folder / "cancellations.csv")
    cancellations = next((p for p in candidates if p.is_file()), None)
    return DataSource(
        transactions,
        customers if customers.is_file() else None,
        observed_until,
        cancellations=cancellations,
    )


def _observed_until(generator: Path) -> str:
    try:
        meta = json.loads(generator.read_text())
        return str(meta["observed_until"])
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
        raise ContractError(
            f"{generator} is damaged or not from `churn data synth` (no readable "
            f"'observed_until': {exc!r}); remove it or regenerate the folder"
        ) from exc
