"""Model steps: training the CNN and evaluating it beside the baselines.

Component bodies (see ``components.factory.make_components``): imports sit inside the functions
because KFP ships only the function's source to the container.
"""

from typing import NamedTuple

from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Input, Metrics, Model, Output


def train(
    training_set: Input[Dataset],
    epochs: int,
    threshold_metric: str,
    model_settings: dict,
    train_settings: dict,
    model: Output[Model],
) -> None:
    """Trains the churn CNN (on the GPU when the pod has one) and writes the model folder.

    Args:
        training_set: The training set folder.
        epochs: Maximum number of epochs (overrides ``train_config``).
        threshold_metric: Metric the decision threshold maximises on validation.
        model_settings: ``ModelConfig`` fields.
        train_settings: ``TrainConfig`` fields.
        model: Output: the model folder (``model.pt`` + ``model.json``).
    """
    import logging

    from churn.model.train import train as fit
    from churn.settings import ModelConfig, TrainConfig, parse_section

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    summary = fit(
        training_set.path,
        model.path,
        parse_section(ModelConfig, model_settings, "model"),
        parse_section(TrainConfig, {**train_settings, "epochs": epochs}, "train"),
        threshold_metric,
        dataset_uri=training_set.uri,
    )
    model.metadata.update(
        {
            "framework": "pytorch",
            "device": summary["device"],
            "epochs_run": summary["epochs_run"],
            "best_epoch": summary["best_epoch"],
            "best_val_auc": summary["best_val_auc"],
            "threshold": summary["threshold"],
        }
    )


def evaluate(
    model: Input[Model],
    training_set: Input[Dataset],
    threshold_metric: str,
    evaluation: Output[Artifact],
    metrics: Output[Metrics],
    classification_metrics: Output[ClassificationMetrics],
    report: Output[HTML],
) -> NamedTuple("EvaluateOutputs", [("roc_auc", float)]):  # type: ignore[valid-type]
    """Scores the model on the test split beside the baselines and writes the report.

    Args:
        model: The model folder.
        training_set: The training set folder the model was trained on.
        threshold_metric: Metric each baseline's threshold maximises on validation.
        evaluation: Output: folder with ``metrics.json``, the PNG plots and ``report.html``.
        metrics: Output: test metrics of the CNN and each baseline's ROC-AUC, for the UI.
        classification_metrics: Output: ROC curve and confusion matrix, for the UI.
        report: Output: the self-contained HTML report.

    Returns:
        ``roc_auc``: the CNN's test ROC-AUC, which the gate compares.
    """
    import json
    import logging
    import shutil
    from pathlib import Path

    from churn.evaluation.evaluate import evaluate as score

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    result = score(model.path, training_set.path, evaluation.path, threshold_metric)
    for key in ("roc_auc", "pr_auc", "f1", "precision", "recall", "log_loss", "threshold"):
        metrics.log_metric(key, float(result[key]))
    for name, baseline in result["baselines"].items():
        metrics.log_metric(f"{name}_roc_auc", float(baseline["roc_auc"]))
    curve = result["roc_curve"]
    classification_metrics.log_roc_curve(curve["fpr"], curve["tpr"], curve["thresholds"])
    matrix = result["confusion_matrix"]
    classification_metrics.log_confusion_matrix(matrix["categories"], matrix["matrix"])
    shutil.copyfile(Path(evaluation.path) / "report.html", report.path)
    # The UI reads the metadata; the files exist so kfp.local's cache, which treats an output
    # without a file as missing, can reuse this step.
    for artifact in (metrics, classification_metrics):
        Path(artifact.path).write_text(json.dumps(artifact.metadata) + "\n")
    # KFP fills the NamedTuple's fields from a plain tuple, in order.
    return (float(result["roc_auc"]),)
