"""Where `churn monitor performance` looks for stored batch scores by default."""

from __future__ import annotations

from pathlib import Path

from churn.settings import Settings
from monitoring.performance import scores_uri


def test_an_s3_registry_puts_scores_under_its_bucket() -> None:
    settings = Settings(registry={"uri": "s3://models/churn-registry"})
    assert scores_uri(settings) == "s3://models/scores"


def test_a_folder_registry_puts_scores_in_the_home_folder(tmp_path: Path) -> None:
    assert scores_uri(Settings(home=tmp_path)) == str(tmp_path / "scores")


def test_the_setting_wins_over_either_default(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, monitor={"scores_uri": "s3://elsewhere/daily"})
    assert scores_uri(settings) == "s3://elsewhere/daily"


def test_an_empty_setting_means_the_default(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, monitor={"scores_uri": ""})
    assert scores_uri(settings) == str(tmp_path / "scores")
