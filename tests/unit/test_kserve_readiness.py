"""What counts as Ready, failed or still pending for an InferenceService in Standard mode.

The statuses are shaped as KServe derives them from the predictor Deployment
(``PropagateRawStatus``/``PropagateModelStatus`` in KServe 0.20): ``observedGeneration`` is the
Deployment's, and ``PredictorReady`` carries the Deployment's Available/Progressing reasons.
"""

from __future__ import annotations

from churn.release.kserve_deploy import Baseline, baseline_of, judge

DONE_X = (
    "True",
    "NewReplicaSetAvailable",
    'ReplicaSet "churn-predictor-x" has successfully progressed.',
)
DONE_Y = (
    "True",
    "NewReplicaSetAvailable",
    'ReplicaSet "churn-predictor-y" has successfully progressed.',
)
ROLLING = ("True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
TIMED_OUT = (
    "False",
    "ProgressDeadlineExceeded",
    'ReplicaSet "churn-predictor-x" has timed out progressing.',
)


def isvc(
    generation: int, predictor: tuple[str, str, str], ready: str = "", model: dict | None = None
) -> dict:
    ready = ready or predictor[0]
    return {
        "metadata": {"name": "churn", "generation": 4},
        "status": {
            "observedGeneration": generation,
            "conditions": [
                {"type": "IngressReady", "status": "True"},
                {
                    "type": "PredictorReady",
                    "status": predictor[0],
                    "reason": predictor[1],
                    "message": predictor[2],
                },
                {"type": "Ready", "status": ready},
            ],
            "modelStatus": model or {},
        },
    }


BEFORE = baseline_of(isvc(3, DONE_X))


def test_the_baseline_is_the_deployments_generation_and_the_predictor_condition() -> None:
    assert baseline_of(isvc(3, DONE_X)) == Baseline(3, DONE_X)
    assert baseline_of({"metadata": {"name": "churn"}}) == Baseline(0, None)


def test_a_ready_left_from_the_previous_version_does_not_count() -> None:
    verdict = judge(isvc(3, DONE_X), BEFORE)
    assert (verdict.state, verdict.reason) == ("pending", "NotObservedYet")


def test_old_pods_serving_during_the_rolling_update_are_not_ready() -> None:
    # KServe reports PredictorReady and Ready True while the old ReplicaSet is available.
    verdict = judge(isvc(4, ROLLING, ready="True"), BEFORE)
    assert (verdict.state, verdict.reason) == ("pending", "MinimumReplicasAvailable")


def test_the_finished_rollout_of_the_new_replica_set_is_ready() -> None:
    verdict = judge(isvc(4, DONE_Y), BEFORE)
    assert (verdict.state, verdict.reason, verdict.message) == ("ready", *DONE_Y[1:])


def test_a_generation_bump_without_a_new_rollout_is_not_ready() -> None:
    # An autoscaler's replica change raises the Deployment's generation; the condition
    # still names the old ReplicaSet.
    assert judge(isvc(4, DONE_X), BEFORE).state == "pending"


def test_ready_needs_the_overall_ready_condition_too() -> None:
    assert judge(isvc(4, DONE_Y, ready="False"), BEFORE).state == "pending"


def test_a_progress_deadline_counts_only_once_the_change_is_observed() -> None:
    before = baseline_of(isvc(3, TIMED_OUT))
    assert judge(isvc(3, TIMED_OUT), before).state == "pending"
    verdict = judge(isvc(4, TIMED_OUT), BEFORE)
    assert (verdict.state, verdict.reason) == ("failed", "ProgressDeadlineExceeded")


def test_a_model_that_fails_to_load_is_a_terminal_failure() -> None:
    failed = {
        "transitionStatus": "BlockedByFailedLoad",
        "states": {"activeModelState": "Loaded", "targetModelState": "FailedToLoad"},
        "lastFailureInfo": {"reason": "ModelLoadFailed", "message": "no such key"},
    }
    verdict = judge(isvc(4, ROLLING, ready="True", model=failed), BEFORE)
    assert (verdict.state, verdict.reason, verdict.message) == (
        "failed",
        "ModelLoadFailed",
        "no such key",
    )
    # A rollback waits: the failed version's pods may still be the ones KServe describes.
    assert judge(isvc(4, ROLLING, ready="True", model=failed), BEFORE, failures=False).state == (
        "pending"
    )


def test_a_failure_info_that_outlived_a_recovery_is_not_a_failure() -> None:
    recovered = {
        "transitionStatus": "UpToDate",
        "states": {"activeModelState": "Loaded", "targetModelState": "Loaded"},
        "lastFailureInfo": {"reason": "ModelLoadFailed", "message": "old"},
    }
    assert judge(isvc(4, DONE_Y, model=recovered), BEFORE).state == "ready"


def test_without_a_change_the_current_status_is_the_answer() -> None:
    assert judge(isvc(3, DONE_X), None).state == "ready"
    assert judge(isvc(3, ROLLING, ready="True"), None).state == "pending"
    assert judge({"metadata": {}}, None).reason == "NoStatus"


def with_transformer(obj: dict, transformer: tuple[str, str, str]) -> dict:
    obj = {**obj, "spec": {"predictor": {}, "transformer": {"containers": []}}}
    obj["status"]["conditions"].append(
        {
            "type": "TransformerReady",
            "status": transformer[0],
            "reason": transformer[1],
            "message": transformer[2],
        }
    )
    return obj


T_DONE_X = (DONE_X[0], DONE_X[1], DONE_X[2].replace("predictor", "transformer"))
T_DONE_Y = (DONE_Y[0], DONE_Y[1], DONE_Y[2].replace("predictor", "transformer"))
T_BEFORE = baseline_of(with_transformer(isvc(3, DONE_X), T_DONE_X))


def test_a_transformer_still_rolling_out_keeps_the_service_pending() -> None:
    # Its old pods serve, so Ready is True; the new ones (the new model.json) are not up.
    verdict = judge(with_transformer(isvc(4, DONE_Y), ROLLING), T_BEFORE)
    assert (verdict.state, verdict.reason) == ("pending", "MinimumReplicasAvailable")
    assert judge(with_transformer(isvc(4, DONE_Y), T_DONE_Y), T_BEFORE).state == "ready"


def test_a_transformer_past_its_deadline_fails_the_rollout() -> None:
    timed_out = (TIMED_OUT[0], TIMED_OUT[1], "transformer timed out")
    verdict = judge(with_transformer(isvc(4, DONE_Y, ready="False"), timed_out), T_BEFORE)
    assert (verdict.state, verdict.reason) == ("failed", "ProgressDeadlineExceeded")


def test_the_transformers_previous_rollout_does_not_count() -> None:
    assert judge(with_transformer(isvc(4, DONE_Y), T_DONE_X), T_BEFORE).state == "pending"
