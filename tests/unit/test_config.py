"""Settings: defaults, YAML, environment overrides and clear errors."""

from __future__ import annotations

import pytest

from churn.settings import Settings, load_settings


def test_defaults_need_no_input():
    settings = load_settings(env={})
    assert settings == Settings()
    assert settings.features.horizon_days == 90


def test_environment_overrides_are_typed():
    settings = load_settings(
        env={
            "CHURN_TRAIN__EPOCHS": "3",
            "CHURN_EVAL__AUC_THRESHOLD": "0.75",
            "CHURN_MODEL__DILATIONS": "1,2",
            "CHURN_REGISTRY__ENDPOINT_URL": "none",
            "CHURN_HOME": "/tmp/x",
        }
    )
    assert settings.train.epochs == 3
    assert settings.eval.auc_threshold == 0.75
    assert settings.model.dilations == [1, 2]
    assert settings.registry.endpoint_url is None
    assert str(settings.home) == "/tmp/x"


@pytest.mark.parametrize(
    ("value", "columns"),
    [
        ("num_tenure_days, num_frequency", ["num_tenure_days", "num_frequency"]),
        ("", []),
    ],
)
def test_untested_drift_columns_come_from_the_environment_as_a_comma_list(value, columns):
    settings = load_settings(env={"CHURN_MONITOR__UNTESTED_COLUMNS": value})
    assert settings.monitor.untested_columns == columns


@pytest.mark.parametrize(
    ("value", "alarms"),
    [
        (
            "seq_spend_per_txn_change=0.35, num_monetary=0.5",
            {
                "seq_spend_per_txn_change": 0.35,
                "num_monetary": 0.5,
            },
        ),
        ('{"seq_spend_per_txn_change": 0.4}', {"seq_spend_per_txn_change": 0.4}),
        ("", {}),
    ],
)
def test_fixed_drift_alarms_come_from_the_environment_as_pairs_or_json(value, alarms):
    settings = load_settings(env={"CHURN_MONITOR__FIXED_ALARMS": value})
    assert settings.monitor.fixed_alarms == alarms
    assert Settings().monitor.fixed_alarms == {"seq_spend_per_txn_change": 0.3}


def test_other_tools_variables_are_ignored():
    settings = load_settings(env={"CHURN_KFP_HOST": "http://x", "CHURN_TEST_CLUSTER": "1"})
    assert settings == Settings()


def test_yaml_file_then_environment(tmp_path):
    path = tmp_path / "settings.yaml"
    path.write_text("train:\n  epochs: 5\n  lr: 0.01\nfeatures:\n  bin_days: 1\n")
    settings = load_settings(path, env={"CHURN_TRAIN__EPOCHS": "7"})
    assert (settings.train.epochs, settings.train.lr, settings.features.bin_days) == (7, 0.01, 1)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CHURN_TRAIN__EPOCS": "3"}, "unknown configuration field train.epocs"),
        ({"CHURN_TRAIN__EPOCHS": "many"}, r"configuration field train.epochs: .*\(got 'many'\)"),
        # A negative horizon would put the test cutoff into the training split.
        (
            {"CHURN_FEATURES__HORIZON_DAYS": "-90"},
            "features.horizon_days: .*greater than or equal to 1",
        ),
        ({"CHURN_FEATURES__BIN_DAYS": "0"}, "features.bin_days: .*greater than or equal to 1"),
        ({"CHURN_EVAL__AUC_THRESHOLD": "1.5"}, "eval.auc_threshold: .*less than or equal to 1"),
        ({"CHURN_SERVING__INFERENCE_PORT": "70000"}, "serving.inference_port"),
        ({"CHURN_SERVING__PROTOCOL_VERSION": "v3"}, "serving.protocol_version"),
        # A misspelt value is an error, never a silent default.
        ({"CHURN_MODEL__DROPOUT": "treu"}, "model.dropout"),
        ({"CHURN_MODEL__WIDE": "maybe"}, "model.wide"),
        (
            {"CHURN_TRAIN__MIN_STEPS_PER_EPOCH": "0"},
            "train.min_steps_per_epoch: .*greater than or equal to 1",
        ),
        ({"CHURN_TRAIN__WIDE_C_GRID": "0.1,-1"}, "train.wide_c_grid.1: .*greater than 0"),
        ({"CHURN_TRAIN__WIDE_C_GRID": "nan"}, "train.wide_c_grid.0"),
        ({"CHURN_TRAIN__WIDE_C_GRID": ""}, "train.wide_c_grid: .*valid list"),
    ],
)
def test_bad_values_name_the_field(env, message):
    with pytest.raises(ValueError, match=message):
        load_settings(env=env)


def test_the_wide_c_grid_reads_a_comma_list_from_the_environment():
    settings = load_settings(env={"CHURN_TRAIN__WIDE_C_GRID": "0.5, 2"})
    assert settings.train.wide_c_grid == [0.5, 2.0]


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"nope\.yaml does not exist"):
        load_settings(tmp_path / "nope.yaml", env={})


def test_the_registry_follows_churn_home_unless_a_uri_is_given(tmp_path):
    from pipelines.arguments import RunArguments

    assert load_settings(env={}).registry.uri == ".churn/registry"
    moved = load_settings(env={"CHURN_HOME": str(tmp_path)})
    assert moved.registry.uri == str(tmp_path / "registry")
    path = tmp_path / "settings.yaml"
    path.write_text(f"home: {tmp_path / 'from-yaml'}\n")
    assert load_settings(path, env={}).registry.uri == str(tmp_path / "from-yaml" / "registry")
    explicit = {"CHURN_HOME": str(tmp_path), "CHURN_REGISTRY__URI": "s3://models/churn"}
    assert load_settings(env=explicit).registry.uri == "s3://models/churn"
    # The pods get the resolved folder, never an empty URI they would have to guess.
    registry = RunArguments.from_settings(moved).parameters()["registry"]
    assert registry["uri"] == str(tmp_path / "registry")
