"""Presentation of an evaluation: PNG plots, a self-contained HTML report and a text table.

Plots use matplotlib's Agg canvas on standalone figures (no pyplot), so rendering needs no
display and leaves no global state behind in a long-lived process. The HTML embeds every
image as a base64 data URI and its CSS inline: the file can be mailed, attached to a Kubeflow
run or opened offline and shows the same thing.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from churn.model import metrics as m
from churn.model.network import PLATT

MODEL_LABELS = {
    "cnn": "CNN",
    "hist_gradient_boosting": "Gradient boosting",
    "logistic_regression": "Logistic regression",
}
CLASS_NAMES = ("retained", "churned")
# (key, label, True if higher is better, False if lower is better, None if not ranked).
METRIC_ROWS: tuple[tuple[str, str, bool | None], ...] = (
    ("roc_auc", "ROC-AUC", True),
    ("pr_auc", "PR-AUC (average precision)", True),
    ("accuracy", "Accuracy", True),
    ("precision", "Precision", True),
    ("recall", "Recall", True),
    ("f1", "F1", True),
    ("log_loss", "Log loss", False),
    ("brier", "Brier score", False),
    ("threshold", "Threshold", None),
    ("predicted_positive_rate", "Predicted churn rate", None),
)
PLOTS = {
    "roc.png": "ROC curves on the test split",
    "pr.png": "Precision-recall curves on the test split",
    "calibration.png": (
        "Reliability diagram on the test split (10 equal-width bins): the CNN calibrated on "
        "validation, and dotted before calibration"
    ),
    "confusion_matrix.png": "CNN confusion matrix on the test split at the model threshold",
    "score_hist.png": "CNN test scores by true class",
}


def _label(name: str) -> str:
    return MODEL_LABELS.get(name, name)


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    FigureCanvasAgg(fig)
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def _figure() -> tuple[Figure, Axes]:
    fig = Figure(figsize=(5.5, 4.5))
    return fig, fig.add_subplot()


def make_plots(
    y_test: np.ndarray,
    scores: Mapping[str, np.ndarray],
    threshold: float,
    uncalibrated: np.ndarray | None = None,
) -> dict[str, bytes]:
    """Draws the evaluation plots.

    Args:
        y_test: Test labels, 0 or 1.
        scores: Test probabilities per model; ``"cnn"`` must be present and comes first in
            the legends, the others are overlaid for comparison.
        threshold: The CNN's decision threshold (marked on its plots).
        uncalibrated: The CNN's test probabilities before calibration, drawn dashed in the
            reliability diagram only (its ranking curves are the calibrated ones).

    Returns:
        PNG bytes keyed by file name, the keys of :data:`PLOTS`.
    """
    cnn = scores["cnn"]
    out: dict[str, bytes] = {}

    fig, ax = _figure()
    for name, s in scores.items():
        fpr, tpr, _ = m.roc_curve(y_test, s)
        ax.plot(fpr, tpr, label=f"{_label(name)} (AUC {m.roc_auc(y_test, s):.3f})")
    (tn, fp), (fn, tp) = m.confusion_matrix(y_test, cnn, threshold)
    ax.scatter([fp / (fp + tn)], [tp / (tp + fn)], color="black", zorder=3, label="CNN threshold")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="Chance")
    ax.set(xlabel="False positive rate", ylabel="True positive rate", title="ROC")
    ax.legend(loc="lower right", fontsize=8)
    out["roc.png"] = _png(fig)

    fig, ax = _figure()
    for name, s in scores.items():
        precision, recall, _ = m.precision_recall_curve(y_test, s)
        ap = m.average_precision(y_test, s)
        ax.step(recall, precision, where="post", label=f"{_label(name)} (AP {ap:.3f})")
    base = float(np.mean(y_test))
    ax.axhline(base, linestyle="--", color="grey", linewidth=1, label=f"Chance ({base:.3f})")
    ax.set(xlabel="Recall", ylabel="Precision", title="Precision-recall", ylim=(0, 1.02))
    ax.legend(loc="lower left", fontsize=8)
    out["pr.png"] = _png(fig)

    fig, ax = _figure()
    for name, s in scores.items():
        frac, mean, _ = m.calibration_bins(y_test, s, n_bins=10)
        ax.plot(mean, frac, marker="o", label=_label(name))
    if uncalibrated is not None:
        frac, mean, _ = m.calibration_bins(y_test, uncalibrated, n_bins=10)
        ax.plot(mean, frac, marker="x", linestyle=":", color="grey", label="CNN, uncalibrated")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="Perfect")
    ax.set(xlabel="Mean predicted probability", ylabel="Observed churn rate")
    ax.set(title="Reliability", xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="upper left", fontsize=8)
    out["calibration.png"] = _png(fig)

    fig, ax = _figure()
    matrix = m.confusion_matrix(y_test, cnn, threshold)
    ax.imshow(matrix, cmap="Blues")
    total = matrix.sum()
    for (i, j), count in np.ndenumerate(matrix):
        colour = "white" if count > matrix.max() / 2 else "black"
        text = f"{count}\n{count / total:.1%}"
        ax.text(j, i, text, ha="center", va="center", color=colour)
    ax.set_xticks([0, 1], labels=[f"pred. {c}" for c in CLASS_NAMES])
    ax.set_yticks([0, 1], labels=[f"true {c}" for c in CLASS_NAMES])
    ax.set_title(f"CNN confusion matrix (threshold {threshold:.3f})")
    out["confusion_matrix.png"] = _png(fig)

    fig, ax = _figure()
    bins = np.linspace(0.0, 1.0, 41)
    for label, cls in ((CLASS_NAMES[0], 0.0), (CLASS_NAMES[1], 1.0)):
        ax.hist(
            cnn[y_test == cls], bins=bins.tolist(), alpha=0.55, density=True, label=f"true {label}"
        )
    ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.3f}")
    ax.set(xlabel="CNN churn probability", ylabel="Density", title="Score distribution")
    ax.legend(fontsize=8)
    out["score_hist.png"] = _png(fig)
    return out


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _models(result: Mapping) -> dict[str, Mapping]:
    return {"cnn": result, **result.get("baselines", {})}


def _metrics_table(result: Mapping) -> str:
    models = _models(result)
    head = "".join(f"<th>{html.escape(_label(n))}</th>" for n in models)
    rows = []
    for key, label, higher in METRIC_ROWS:
        values = [row.get(key) for row in models.values()]
        best = None
        numeric = [v for v in values if isinstance(v, int | float)]
        if higher is not None and numeric:
            best = max(numeric) if higher else min(numeric)
        cells = "".join(
            f'<td class="best">{_fmt(v)}</td>'
            if v is not None and v == best
            else f"<td>{_fmt(v)}</td>"
            for v in values
        )
        rows.append(f"<tr><th>{html.escape(label)}</th>{cells}</tr>")
    return f"<table><tr><th>Metric</th>{head}</tr>{''.join(rows)}</table>"


def _splits_table(splits: Mapping) -> str:
    rows = []
    for name, s in splits.items():
        cutoffs = s.get("cutoffs", [])
        span = (
            ", ".join(cutoffs)
            if len(cutoffs) <= 2
            else f"{cutoffs[0]} … {cutoffs[-1]} ({len(cutoffs)})"
        )
        cells = (
            name,
            s["rows"],
            s["positives"],
            s["negatives"],
            f"{s['positive_rate']:.3f}",
            span,
        )
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    head = "".join(
        f"<th>{h}</th>" for h in ("Split", "Rows", "Churned", "Retained", "Churn rate", "Cutoffs")
    )
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.15rem; margin-top: 2rem; }
table { border-collapse: collapse; margin: 0.5rem 0; }
th, td { border: 1px solid #ccc; padding: 0.3rem 0.7rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
td.best { background: #d6f5d6; font-weight: 600; }
.grid { display: flex; flex-wrap: wrap; gap: 1rem; }
figure { margin: 0; } figure img { width: 480px; border: 1px solid #eee; }
figcaption { font-size: 0.85rem; color: #555; max-width: 480px; }
.note { font-size: 0.9rem; color: #444; }
"""


def _calibration_note(result: Mapping) -> str:
    calibration = result.get("calibration") or {}
    raw = result.get("uncalibrated")
    if calibration.get("method") != PLATT or not raw:
        return "<p>CNN probabilities are the raw sigmoid of its output (no calibration).</p>"
    return (
        f"<p>CNN probabilities are Platt-scaled, sigmoid({calibration['slope']:.4f} &times; "
        f"logit {calibration['intercept']:+.4f}), fitted on the validation split; the ranking "
        f"is unchanged. Uncalibrated, its test log loss was {raw['log_loss']:.4f} and its "
        f"Brier score {raw['brier']:.4f}.</p>"
    )


def render_report(result: Mapping, images: Mapping[str, bytes], title: str = "") -> str:
    """Renders the evaluation as one self-contained HTML page.

    Args:
        result: The metrics dictionary written to ``metrics.json`` by ``churn.evaluation.evaluate``.
        images: PNG bytes keyed by file name (see :func:`make_plots`).
        title: Page title; defaults to a generic one.

    Returns:
        The HTML text: no external references, images as data URIs, CSS inline.
    """
    title = title or "Churn model evaluation"
    esc = html.escape
    figures = "".join(
        f'<figure><img alt="{esc(PLOTS.get(name, name))}" '
        f'src="data:image/png;base64,{base64.b64encode(data).decode("ascii")}">'
        f"<figcaption>{esc(PLOTS.get(name, name))}</figcaption></figure>"
        for name, data in images.items()
    )
    summary = (
        f"<p>Model <code>{esc(str(result.get('model_dir', '')))}</code> on training set "
        f"<code>{esc(str(result.get('dataset_dir', '')))}</code>.</p>"
        f"<p>Test rows: {result['n_test']}; churn rate {result['positive_rate']:.3f}. "
        f"CNN decision threshold <b>{result['threshold']:.4f}</b>, chosen on the validation "
        f"split at training time. Each baseline's threshold maximises "
        f"{esc(str(result.get('threshold_metric', '')))} on the validation split; no threshold "
        f"is ever chosen on the test split.</p>"
    )
    summary += _calibration_note(result)
    comparisons = "".join(
        f"<li>CNN minus {esc(_label(name))}: {c['difference']:+.4f} "
        + (
            f"(95% CI {c['ci95'][0]:+.4f} to {c['ci95'][1]:+.4f})"
            if c["ci95"]
            else "(no interval: a class has a single test row)"
        )
        + "</li>"
        for name, c in result.get("auc_vs_baselines", {}).items()
    )
    if comparisons:
        summary += (
            "<p>Test ROC-AUC differences on the same rows, with DeLong's paired standard "
            f"error: an interval that holds 0 is a tie.</p><ul>{comparisons}</ul>"
        )
    notes = (
        '<p class="note">Best value per row in green (higher is better, except log loss and '
        "Brier score). Baselines use RFM and aggregate features of the same sequences: "
        "gradient-boosted trees stopped early on the validation split, and logistic "
        "regression on standardised features with its regularisation chosen on the "
        "validation split. Log loss and Brier score also measure calibration: the CNN is "
        "trained with a positive-class weight, which shifts its raw scores, so its "
        "probabilities are recalibrated on the validation split.</p>"
    )
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
        f"<style>{_CSS}</style></head><body>"
        f"<h1>{esc(title)}</h1>{summary}"
        f"<h2>Test metrics: CNN vs baselines</h2>{_metrics_table(result)}{notes}"
        f"<h2>Training set splits</h2>{_splits_table(result.get('splits', {}))}"
        f'<h2>Plots</h2><div class="grid">{figures}</div>'
        "</body></html>\n"
    )


def format_table(result: Mapping) -> str:
    """A plain-text table of the CNN and baseline test metrics, for the terminal.

    Args:
        result: The metrics dictionary written to ``metrics.json`` by ``churn.evaluation.evaluate``.

    Returns:
        The table, one metric per line.
    """
    models = _models(result)
    names = [_label(n) for n in models]
    width = max(len(n) for n in names) + 2
    lines = ["metric".ljust(28) + "".join(n.rjust(width) for n in names)]
    for key, label, _ in METRIC_ROWS:
        values = [_fmt(row.get(key, "")) for row in models.values()]
        lines.append(label.ljust(28) + "".join(v.rjust(width) for v in values))
    return "\n".join(lines)
