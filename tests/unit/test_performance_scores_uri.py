"""Where `churn monitor performance` looks for stored batch scores by default."""

from __future__ import annotations

from pathlib import Path

from churn.release.score_store import scores_uri as written_scores_uri
from churn.settings import Settings
from monitoring.performance import scores_uri


def test_an_s3_registry_puts_scores_under_its_own_prefix() -> None:
    settings = Settings(registry={"uri": "s3://models/churn-registry"})
    assert scores_uri(settings) == "s3://models/churn-registry/scores"


def test_a_folder_registry_puts_scores_inside_the_registry_folder(tmp_path: Path) -> None:
    assert scores_uri(Settings(home=tmp_path)) == str(tmp_path / "registry" / "scores")


def test_the_default_is_where_the_scoring_pipeline_writes(tmp_path: Path) -> None:
    for registry in ("s3://models/churn-registry/", str(tmp_path / "reg")):
        settings = Settings(home=tmp_path, registry={"uri": registry})
        written = written_scores_uri(settings.registry.uri, "2026-11-30")
        assert written == f"{scores_uri(settings)}/date=2026-11-30/scores.parquet"


def test_the_setting_wins_over_the_default(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, monitor={"scores_uri": "s3://elsewhere/daily"})
    assert scores_uri(settings) == "s3://elsewhere/daily"


def test_an_empty_setting_means_the_default(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, monitor={"scores_uri": ""})
    assert scores_uri(settings) == str(tmp_path / "registry" / "scores")
