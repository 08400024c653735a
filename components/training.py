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
    train_nodes: int,
    gpus_per_node: int,
    pipeline_settings: dict,
    model: Output[Model],
) -> None:
    """Trains the churn CNN and writes the model folder.

    With ``train_nodes`` 1 it trains in this pod (on its GPU when it has one). With more it
    submits a Kubeflow Trainer ``TrainJob`` of ``train_nodes`` x ``gpus_per_node`` torchrun
    processes that read the training set from its artifact URI and write the model to this
    step's, waits for it, and fetches the model back.

    Args:
        training_set: The training set folder.
        epochs: Maximum number of epochs (overrides ``train_config``).
        threshold_metric: Metric the decision threshold maximises on validation.
        model_settings: ``ModelConfig`` fields.
        train_settings: ``TrainConfig`` fields.
        train_nodes: Training nodes; 1 trains here.
        gpus_per_node: GPUs per TrainJob node (0: CPU nodes).
        pipeline_settings: ``PipelineConfig`` fields (images, namespace, placement).
        model: Output: the model folder (``model.pt`` + ``model.json``).
    """
    import logging

    from churn.model.train import train as fit
    from churn.settings import ModelConfig, PipelineConfig, TrainConfig, parse_section

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    model_cfg = parse_section(ModelConfig, model_settings, "model")
    train_cfg = parse_section(TrainConfig, {**train_settings, "epochs": epochs}, "train")
    if train_nodes > 1:
        from pipelines.trainjob import train_on_cluster

        summary = train_on_cluster(
            training_set_uri=training_set.uri,
            model_uri=model.uri,
            model_path=model.path,
            nodes=train_nodes,
            gpus_per_node=gpus_per_node,
            threshold_metric=threshold_metric,
            model_settings=model_cfg.model_dump(),
            train_settings=train_cfg.model_dump(),
            pipeline=parse_section(PipelineConfig, pipeline_settings, "pipeline"),
        )
    else:
        summary = fit(
            training_set.path,
            model.path,
            model_cfg,
            train_cfg,
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
