"""The Spark feature job: the snapshot tables of the pandas path, built on Spark.

It keeps the rules of :mod:`churn.features.activity` and :mod:`churn.features.sequences`
exactly: timestamps are UTC, day ``d`` holds events in ``(d - 1, d]`` midnights, a snapshot
at midnight cutoff ``T`` covers every customer with an event on a day ``<= T``, bin ``L-1``
ends at the cutoff, and the context features (tenure from the earlier of signup and first
event, recency, frequency, monetary) read only days ``<= T``. A customer seen by a cutoff but
idle in its window gets zeros. The tests compare both engines row for row (CDNOW included).

Spark keeps microseconds, pandas nanoseconds. Nanosecond times (the Parquet that pandas and
``churn data synth`` write, found in the file's footer; a pandas table handed to the engine)
are rounded up to the microsecond, which keeps every event on the day pandas gives it; a CSV
time with a fraction finer than a microsecond, read by Spark's own parser, is the one case
where the two could put an event on different days.

Command line, the entry of the ``SparkApplication`` (``mainApplicationFile``:
``local:///.../churn/features/spark_job.py``, or ``python -m churn.features.spark_job``)::

    python -m churn.features.spark_job --transactions URI --out URI
        [--customers URI] [--bin-days 7] [--seq-len 52]
        [--cutoffs 2024-01-01,2024-02-01] [--observed-until 2024-03-31T18:00:00Z]
        [--extra-channels quantity,items]

* ``--transactions``: the log, as in the data contract; a Parquet file or folder, or a CSV
  file with a header (by its ``.csv`` suffix); any URI Spark reads (``s3a://``, ``file://``).
* ``--out``: a folder that must not exist yet. It receives ``sequences.parquet/`` (the
  ``customer_sequences`` source), ``transactions.parquet/`` (the log, for labels),
  ``customers.parquet/`` (with ``--customers``) and ``spec.json``: the layout the Feast
  definitions read from ``$CHURN_FEATURE_DATA``.
* ``--bin-days``, ``--seq-len``: default to ``features.bin_days`` and ``features.seq_len``.
* ``--cutoffs``: comma-separated midnight UTC dates; without it the automatic schedule of
  ``churn features build`` (``features.*`` settings) is fitted to the log's span.
* ``--observed-until``: end of the observation period; defaults to the last event. The
  latest snapshot is taken at the midnight after it.
* ``--extra-channels``: extra numeric columns to aggregate; default: every numeric column
  beyond the required ones.

Exit status 0 with a JSON summary on stdout; 2 with one ``error: ...`` line on stderr when the
input breaks the contract or the output folder exists.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from churn.data.contract import FLOAT32_MAX, REQUIRED_TX, RESERVED_COLUMNS, event_time_bound
from churn.errors import ChurnError, ContractError, OutputError
from churn.features.activity import BASE_CHANNELS, DAY_NS
from churn.features.sequences import CONTEXT_FEATURES, Snapshots
from churn.settings import FeatureConfig

DAY_US = DAY_NS // 1000
NANOS_AS_LONG = "spark.sql.legacy.parquet.nanosAsLong"
# UTC everywhere, and Parquet timestamps Feast and pyarrow read as such (Spark's default,
# INT96, is a legacy encoding).
SPARK_CONF = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.ui.showConsoleProgress": "false",
}
# A local session's shuffles: Spark's default of 200 partitions is 200 tasks per stage for a
# machine with a few cores.
LOCAL_SHUFFLE_PARTITIONS = "8"


def session(master: str | None = None, **conf: str) -> SparkSession:
    """The active Spark session, or a new one with the job's settings.

    Args:
        master: Spark master for a new session (``local[2]``...); ``None`` leaves it to
            ``spark-submit``.
        **conf: More Spark settings for a new session.
    """
    builder = SparkSession.builder.appName("churn-features")
    if master is not None:
        builder = builder.master(master)
    for key, value in {**SPARK_CONF, **conf}.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    # A running session (spark-submit's, a test's) gets the SQL settings the job relies on;
    # the others are fixed once its context starts.
    for key, value in SPARK_CONF.items():
        if key.startswith("spark.sql."):
            spark.conf.set(key, value)
    return spark


def _col(name: str) -> Column:
    # Backticks, so a column named "a.b" is that column, not field b of a.
    return F.col("`" + name.replace("`", "``") + "`")


def day_column(ts: Column) -> Column:
    """Right-closed day index, ``ceil(us / day)``, in exact integer arithmetic."""
    us = F.unix_micros(ts)
    rest = F.pmod(us, F.lit(DAY_US))
    # pmod keeps the remainder >= 0, so days before 1970 round up too; the quotient is exact.
    whole_days = ((us - rest) / F.lit(DAY_US)).cast("long")
    return whole_days + F.when(rest > 0, 1).otherwise(0)


def daily_activity(tx: DataFrame, channels: list[str]) -> DataFrame:
    """Transactions per customer and right-closed day, as the pandas ``daily_activity``.

    Args:
        tx: Columns ``customer_id``, ``timestamp`` (timestamp), ``amount`` and the extra
            channels.
        channels: ``n_txn``, ``spend``, then extra columns of ``tx``.

    Returns:
        Columns ``customer_id``, ``day`` (long) and one double column per channel.
    """
    sums = [F.count(F.lit(1)).cast("double").alias("n_txn")]
    sums.append(F.sum(F.col("amount").cast("double")).alias("spend"))
    sums += [F.sum(_col(c).cast("double")).alias(c) for c in channels[len(BASE_CHANNELS) :]]
    keys = [
        F.col("customer_id").cast("string").alias("customer_id"),
        day_column(F.col("timestamp")),
    ]
    return tx.groupBy(*keys[:1], keys[1].alias("day")).agg(*sums)


def _snapshot_days(spark: SparkSession, cutoffs: Sequence[pd.Timestamp]) -> DataFrame:
    days = []
    for cutoff in cutoffs:
        if cutoff.value % DAY_NS:
            raise ContractError(f"snapshot time {cutoff} is not a midnight UTC")
        days.append((cutoff.value // DAY_NS,))
    return spark.createDataFrame(days, "T long")


def _signup_days(signup: DataFrame) -> DataFrame:
    return signup.select(
        F.col("customer_id").cast("string").alias("customer_id"),
        day_column(F.col("signup_date").cast("timestamp")).alias("signup_day"),
    )


def _check_float32(binned: DataFrame, channels: list[str], bin_days: int, seq_len: int) -> None:
    """Refuses a bin sum float32 cannot hold, as the pandas path does."""
    too_big = F.lit(False)
    for c in channels:
        too_big = too_big | (F.abs(_col(c)) > F.lit(FLOAT32_MAX))
    row = binned.where(too_big).limit(1).collect()
    if not row:
        return
    hit = row[0]
    channel = next(c for c in channels if abs(hit[c]) > FLOAT32_MAX)
    cutoff = pd.Timestamp(hit["T"] * DAY_NS, tz="UTC")
    bin_end = cutoff - pd.Timedelta(days=(seq_len - 1 - hit["bin"]) * bin_days)
    raise ContractError(
        f"channel {channel!r} of customer {hit['customer_id']!r} sums to {hit[channel]:.4g} in "
        f"the {bin_days}-day bin ending {bin_end.date()} (snapshot {cutoff.date()}), beyond "
        f"{FLOAT32_MAX:.4g}: features are stored as float32, where it would become infinite"
    )


def _dense_bins(channel: str, seq_len: int) -> Column:
    """The ``bins`` map's ``channel`` as an array of ``seq_len`` floats, 0 for an empty bin."""

    def step(j: Column) -> Column:
        value = F.try_element_at(F.col("bins"), j).getField(channel)
        return F.coalesce(value, F.lit(0.0)).cast("float")

    return F.transform(F.sequence(F.lit(0), F.lit(seq_len - 1)), step)


def build_snapshots(
    activity: DataFrame,
    channels: list[str],
    cutoffs: Sequence[pd.Timestamp],
    bin_days: int,
    seq_len: int,
    signup: DataFrame | None = None,
) -> DataFrame:
    """Snapshot rows at each cutoff, as :func:`churn.features.sequences.build_snapshots`.

    Args:
        activity: Output of :func:`daily_activity`.
        channels: Its channel columns.
        cutoffs: Midnight UTC cutoffs.
        bin_days: Days per bin.
        seq_len: Bins per sequence.
        signup: Optional ``customer_id``, ``signup_date`` table.

    Returns:
        The ``customer_sequences`` source: ``customer_id``, ``snapshot_ts`` (UTC), one
        ``array<float>`` of ``seq_len`` per channel, then the context features (float),
        ordered by snapshot time then customer.

    Raises:
        ContractError: A cutoff is not a midnight, or a bin sum overflows float32.
    """
    spark = activity.sparkSession
    times = F.broadcast(_snapshot_days(spark, cutoffs))
    upto = activity.crossJoin(times).where(F.col("day") <= F.col("T"))
    context = upto.groupBy("customer_id", "T").agg(
        F.min("day").alias("first_day"),
        F.max("day").alias("last_day"),
        F.sum("n_txn").alias("frequency"),
        F.sum("spend").alias("total_spend"),
    )
    first = F.col("first_day").cast("double")
    if signup is not None:
        context = context.join(_signup_days(signup), "customer_id", "left")
        # least() skips nulls, as np.fmin skips the NaN of a customer without a signup date.
        first = F.least(first, F.col("signup_day").cast("double"))

    binned = (
        upto.where(F.col("day") > F.col("T") - seq_len * bin_days)
        .withColumn("bin", (F.lit(seq_len - 1) - F.floor((F.col("T") - F.col("day")) / bin_days)))
        .groupBy("customer_id", "T", F.col("bin").cast("int").alias("bin"))
        .agg(*[F.sum(_col(c)).alias(c) for c in channels])
        .persist()
    )
    _check_float32(binned, channels, bin_days, seq_len)
    per_row = binned.groupBy("customer_id", "T").agg(
        F.map_from_entries(
            F.collect_list(F.struct("bin", F.struct(*[_col(c) for c in channels])))
        ).alias("bins")
    )
    seq_columns = [_dense_bins(c, seq_len).alias(f"seq_{c}") for c in channels]
    frequency = F.col("frequency")
    context_columns = [
        (F.col("T") - first).cast("float").alias("tenure_days"),
        (F.col("T") - F.col("last_day")).cast("double").cast("float").alias("recency_days"),
        frequency.cast("float").alias("frequency"),
        (F.col("total_spend") / F.greatest(frequency, F.lit(1.0))).cast("float").alias("monetary"),
    ]
    return (
        context.join(per_row, ["customer_id", "T"], "left")
        .select(
            "customer_id",
            F.timestamp_micros(F.col("T") * DAY_US).alias("snapshot_ts"),
            *seq_columns,
            *context_columns,
        )
        .orderBy("snapshot_ts", "customer_id")
    )


def to_snapshots(table: DataFrame | pa.Table, channels: list[str], seq_len: int) -> Snapshots:
    """The Spark table as the pandas path's :class:`Snapshots` (what the Feast repo writes)."""
    arrow = table.toArrow() if isinstance(table, DataFrame) else table
    n = arrow.num_rows
    seq = np.zeros((n, len(channels), seq_len), dtype=np.float32)
    for c, name in enumerate(channels):
        values = arrow[f"seq_{name}"].combine_chunks().flatten()
        seq[:, c, :] = values.to_numpy(zero_copy_only=False).reshape(n, seq_len)
    snapshot_ts = arrow["snapshot_ts"].cast(pa.timestamp("ns", tz="UTC")).cast(pa.int64())
    return Snapshots(
        customer_id=np.asarray(arrow["customer_id"].to_numpy(zero_copy_only=False)).astype(str),
        snapshot_ts=snapshot_ts.to_numpy(),
        seq=seq,
        context=np.stack(
            [arrow[f].to_numpy(zero_copy_only=False) for f in CONTEXT_FEATURES], axis=1
        ).astype(np.float32),
        channels=list(channels),
    )


def snapshots_from_pandas(
    tx: pd.DataFrame,
    channels: list[str],
    cutoffs: Sequence[pd.Timestamp],
    cfg: FeatureConfig,
    signup: pd.DataFrame | None = None,
) -> Snapshots:
    """Builds the snapshots of a validated log on Spark (``churn features build --engine spark``).

    Args:
        tx: A validated transaction table.
        channels: Output of :func:`churn.features.activity.channel_names`.
        cutoffs: Midnight UTC snapshot times.
        cfg: Feature settings: ``bin_days``, ``seq_len`` and ``spark_master``.
        signup: The validated customers table, if any.
    """
    local = cfg.spark_master.startswith("local")
    spark = session(
        cfg.spark_master,
        **({"spark.sql.shuffle.partitions": LOCAL_SHUFFLE_PARTITIONS} if local else {}),
    )
    columns = ["customer_id", "timestamp", "amount", *channels[len(BASE_CHANNELS) :]]
    # Rounded up to Spark's microseconds as _micros_rounded_up does, not cut: an event 500 ns
    # after a cutoff's midnight would otherwise land in that cutoff's snapshot.
    frame = tx[columns].assign(
        customer_id=tx["customer_id"].astype(str), timestamp=tx["timestamp"].dt.ceil("us")
    )
    events = spark.createDataFrame(pa.Table.from_pandas(frame, preserve_index=False))
    profile = None
    if signup is not None:
        table = signup[["customer_id", "signup_date"]].assign(
            customer_id=signup["customer_id"].astype(str),
            signup_date=signup["signup_date"].dt.ceil("us"),
        )
        profile = spark.createDataFrame(pa.Table.from_pandas(table, preserve_index=False))
    out = build_snapshots(
        daily_activity(events, channels), channels, cutoffs, cfg.bin_days, cfg.seq_len, profile
    )
    return to_snapshots(out, channels, cfg.seq_len)


def read_table(spark: SparkSession, uri: str) -> DataFrame:
    """A Parquet file or folder, or a CSV file with a header; ids always as strings."""
    if not uri.lower().endswith(".csv"):
        frame = _read_parquet(spark, uri)
        return frame.withColumn("customer_id", F.col("customer_id").cast("string"))
    inferred = spark.read.option("header", True).option("inferSchema", True).csv(uri).schema
    # A second read with the ids as text: inference would turn "00042" into 42.
    schema = T.StructType(
        [
            T.StructField(f.name, T.StringType() if f.name == "customer_id" else f.dataType)
            for f in inferred.fields
        ]
    )
    return spark.read.option("header", True).schema(schema).csv(uri)


def _read_parquet(spark: SparkSession, uri: str) -> DataFrame:
    """Parquet, nanosecond timestamps included: pandas and pyarrow write them (``churn data
    synth`` does), and Spark refuses them (``PARQUET_TYPE_ILLEGAL``) unless it reads them as
    nanoseconds since the epoch. Exactly the columns the file stores so become microsecond
    timestamps here, rounded up: the same table as a microsecond file would give."""
    nanos = _nanosecond_columns(spark, uri)
    if nanos:
        # On until run_job ends: Spark reads the files again at every action, with the
        # setting of that time.
        spark.conf.set(NANOS_AS_LONG, "true")
    frame = spark.read.parquet(uri)
    for name in nanos:
        frame = frame.withColumn(name, _micros_rounded_up(name))
    return frame


def _nanosecond_columns(spark: SparkSession, uri: str) -> list[str]:
    """The top-level columns a Parquet file or folder stores as ``TIMESTAMP(NANOS)``.

    Read from the footer of its first data file through Hadoop, so any URI Spark reads works;
    a column of plain integers (a genuine ``timestamp`` of epoch seconds, say) is not one.
    """
    if not _exists(spark, uri):
        raise ContractError(f"{uri}: no such file or folder")
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    path = jvm.org.apache.hadoop.fs.Path(uri)
    fs = path.getFileSystem(conf)
    if fs.getFileStatus(path).isDirectory():
        files = fs.listFiles(path, True)
        path = None
        while files.hasNext():
            candidate = files.next().getPath()
            if not candidate.getName().startswith(("_", ".")):
                path = candidate
                break
        if path is None:
            return []
    hadoop = jvm.org.apache.parquet.hadoop
    reader = hadoop.ParquetFileReader.open(hadoop.util.HadoopInputFile.fromPath(path, conf))
    try:
        schema = reader.getFooter().getFileMetaData().getSchema()
    finally:
        reader.close()
    return [
        field.getName()
        for field in schema.getFields()
        if str(field.getLogicalTypeAnnotation()).startswith("TIMESTAMP(NANOS")
    ]


def _micros_rounded_up(name: str) -> Column:
    """``ceil(ns / 1000)`` as a timestamp, in exact integer arithmetic.

    Up, because ceil(ceil(ns / 1000) / day_us) = ceil(ns / day_ns): every event keeps the
    right-closed day that the pandas path gives it, even within a microsecond after midnight.
    """
    col = "`" + name.replace("`", "``") + "`"
    return F.timestamp_micros(
        F.expr(f"({col} - pmod({col}, 1000)) div 1000 + IF(pmod({col}, 1000) > 0, 1, 0)")
    )


def _require(frame: DataFrame, uri: str, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ContractError(f"{uri}: missing required column(s) {missing}; found {frame.columns}")


def _as_timestamp(frame: DataFrame, column: str) -> Column:
    if isinstance(frame.schema[column].dataType, T.TimestampType | T.TimestampNTZType | T.DateType):
        return _col(column).cast("timestamp")
    return F.try_to_timestamp(_col(column).cast("string"))


def load_log(spark: SparkSession, uri: str, extra: list[str] | None) -> tuple[DataFrame, list[str]]:
    """Reads and checks a transaction log; returns it and its channels.

    Raises:
        ContractError: A required column is missing or empty, a timestamp is unreadable, an
            amount is negative, or an extra channel is missing or not numeric.
    """
    raw = read_table(spark, uri)
    _require(raw, uri, REQUIRED_TX)
    numeric = [
        f.name
        for f in raw.schema.fields
        if f.name not in REQUIRED_TX and isinstance(f.dataType, T.NumericType)
    ]
    chosen = numeric if extra is None else extra
    wrong = [c for c in chosen if c not in numeric or c in RESERVED_COLUMNS]
    if wrong:
        raise ContractError(
            f"{uri}: extra channel(s) {wrong} are not numeric columns of the log; it has {numeric}"
        )
    tx = raw.select(
        F.col("customer_id"),
        _as_timestamp(raw, "timestamp").alias("timestamp"),
        F.col("amount").cast("double").alias("amount"),
        *[_col(c).cast("double").alias(c) for c in chosen],
    )
    checks = {
        "customer_id is empty": F.col("customer_id").isNull() | (F.trim("customer_id") == ""),
        "timestamp is empty or not a timestamp": F.col("timestamp").isNull(),
        "amount is empty, negative or not finite": F.col("amount").isNull()
        | (F.col("amount") < 0)
        | F.isnan("amount")
        | (F.abs("amount") > FLOAT32_MAX),
    }
    for c in chosen:
        checks[f"{c} is empty or not finite"] = (
            _col(c).isNull() | F.isnan(_col(c)) | (F.abs(_col(c)) > FLOAT32_MAX)
        )
    flags = [F.when(cond, F.lit(what)) for what, cond in checks.items()]
    problem = tx.select(F.coalesce(*flags).alias("problem"), "customer_id").where(
        F.col("problem").isNotNull()
    )
    first = problem.limit(1).collect()
    if first:
        raise ContractError(
            f"{uri}: {first[0]['problem']} (customer {first[0]['customer_id']!r}, among others)"
        )
    return tx, [*BASE_CHANNELS, *chosen]


def _write_text(spark: SparkSession, uri: str, text: str) -> None:
    """Writes a small file through Hadoop's file system, so any URI Spark writes works."""
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    path = jvm.org.apache.hadoop.fs.Path(uri)
    fs = path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    stream = fs.create(path, False)
    try:
        stream.write(bytearray(text.encode()))
    finally:
        stream.close()


def _exists(spark: SparkSession, uri: str) -> bool:
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    path = jvm.org.apache.hadoop.fs.Path(uri)
    return bool(path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()).exists(path))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line described in the module docstring."""
    cfg = FeatureConfig()
    parser = argparse.ArgumentParser(
        prog="python -m churn.features.spark_job",
        description="Build the Feast snapshot tables on Spark.",
    )
    parser.add_argument("--transactions", required=True, help="Log: Parquet, or CSV by suffix.")
    parser.add_argument("--out", required=True, help="Output folder; must not exist.")
    parser.add_argument("--customers", help="Optional customers table.")
    parser.add_argument("--bin-days", type=_positive, default=cfg.bin_days)
    parser.add_argument("--seq-len", type=_positive, default=cfg.seq_len)
    parser.add_argument("--cutoffs", type=_comma_list, help="Midnight UTC dates, a,b,c.")
    parser.add_argument("--observed-until", help="End of observation; default: last event.")
    parser.add_argument("--extra-channels", type=_comma_list, help="Extra numeric columns.")
    return parser.parse_args(argv)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return value


def _comma_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def run_job(spark: SparkSession, args: argparse.Namespace) -> dict:
    """Reads the inputs, builds the snapshots and writes the four outputs.

    Returns:
        A summary: snapshot rows, channels, cutoffs, latest snapshot, output folder.

    Raises:
        ContractError: The inputs break the data contract or the cutoffs are invalid.
        OutputError: ``args.out`` exists.
    """
    # _read_parquet may turn this on for the job's reads; the session gets its own back.
    previous = spark.conf.get(NANOS_AS_LONG, None)
    spark.conf.set(NANOS_AS_LONG, "false")
    try:
        return _run_job(spark, args)
    finally:
        if previous is None:
            spark.conf.unset(NANOS_AS_LONG)
        else:
            spark.conf.set(NANOS_AS_LONG, previous)


def _run_job(spark: SparkSession, args: argparse.Namespace) -> dict:
    from churn.data.cutoffs import choose_cutoffs, observed_until_of

    out = args.out.rstrip("/")
    if _exists(spark, out):
        raise OutputError(f"{out} exists: the job writes a new folder, never into an old one")
    cfg = FeatureConfig(bin_days=args.bin_days, seq_len=args.seq_len)
    tx, channels = load_log(spark, args.transactions, args.extra_channels)
    # Microseconds, not collected timestamps: PySpark turns those into the driver's local time.
    span = tx.agg(
        F.min(F.unix_micros("timestamp")).alias("first"),
        F.max(F.unix_micros("timestamp")).alias("last"),
    ).first()
    if span is None or span["first"] is None:
        raise ContractError(f"{args.transactions}: holds no rows")
    first = pd.Timestamp(span["first"], unit="us", tz="UTC")
    last = pd.Timestamp(span["last"], unit="us", tz="UTC")
    end = observed_until_of(pd.DataFrame({"timestamp": [last]}), args.observed_until)
    latest_event = event_time_bound(cfg.max_event_time)
    if max(end, last) > latest_event:
        raise ContractError(
            f"{args.transactions}: events or observed-until reach {max(end, last)}, later than "
            f"{latest_event} (features.max_event_time; by default one day after now)"
        )
    chosen = choose_cutoffs(args.cutoffs, first, end, cfg, args.transactions)
    latest = end.ceil("D")
    snapshot_times = sorted({*chosen, latest})
    profile = None
    numeric_attrs: list[str] = []
    categorical_attrs: list[str] = []
    if args.customers:
        profile = read_table(spark, args.customers)
        _require(profile, args.customers, ("customer_id", "signup_date"))
        profile = profile.withColumn("signup_date", _as_timestamp(profile, "signup_date"))
        for field in profile.schema.fields:
            if field.name in ("customer_id", "signup_date"):
                continue
            numeric = isinstance(field.dataType, T.NumericType)
            (numeric_attrs if numeric else categorical_attrs).append(field.name)
        profile = profile.select(
            *[
                _col(c).cast("float").alias(c) if c in numeric_attrs else _col(c)
                for c in profile.columns
            ]
        )
    snapshots = build_snapshots(
        daily_activity(tx, channels), channels, snapshot_times, args.bin_days, args.seq_len, profile
    )
    snapshots.write.parquet(f"{out}/sequences.parquet")
    tx.write.parquet(f"{out}/transactions.parquet")
    if profile is not None:
        profile.write.parquet(f"{out}/customers.parquet")
    spec = {
        "channels": channels,
        "context_features": list(CONTEXT_FEATURES),
        "numeric_attributes": numeric_attrs,
        "categorical_attributes": categorical_attrs,
        "bin_days": args.bin_days,
        "seq_len": args.seq_len,
        "cutoffs": [c.isoformat() for c in chosen],
        "snapshots": [c.isoformat() for c in snapshot_times],
        "latest_snapshot": latest.isoformat(),
        "observed_from": first.isoformat(),
        "observed_until": end.isoformat(),
        "source": args.transactions,
        "engine": "spark",
    }
    _write_text(spark, f"{out}/spec.json", json.dumps(spec, indent=2))
    return {
        "out": out,
        "snapshot_rows": spark.read.parquet(f"{out}/sequences.parquet").count(),
        "channels": channels,
        "cutoffs": [c.date().isoformat() for c in chosen],
        "latest_snapshot": latest.isoformat(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the job; a contract or output problem is one ``error:`` line and exit status 2."""
    args = parse_args(argv)
    try:
        summary = run_job(session(), args)
    except ChurnError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
