"""One table of what every metric is: name, title, direction, unit, definition.

Tables, verdicts, plots, the calibration report and the docs all read this table (the way
torchmetrics classes carry ``higher_is_better``), so a metric is described in one place.
Pure data: no torch.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MetricInfo:
    name: str
    title: str  # for people: "macro-F1", "ECE"
    higher_is_better: bool
    definition: str  # exactly what losscli computes
    unit: str = ""  # "%" for fractions shown in percent (points) to people; "" otherwise
    doc: str = ""  # one line, for tables of metrics

    @property
    def percent(self) -> bool:
        return self.unit == "%"

    @property
    def direction(self) -> str:
        return "higher" if self.higher_is_better else "lower"


_BINNING = ("B = 15 equal-width bins on the top-label confidence; bin b holds confidences in (b/B, (b+1)/B], "
            "the first bin also takes 0 and the last bin is closed at 1.0 (confidence 1.0 goes to the last bin)")

METRICS: dict[str, MetricInfo] = {m.name: m for m in (
    MetricInfo("accuracy", "accuracy", True, "fraction of samples whose argmax equals the label", "%",
               "fraction of correct argmax predictions"),
    MetricInfo("top5", "top-5", True, "fraction whose label is among the k = min(5, C) highest scores", "%",
               "label among the min(5, C) highest scores"),
    MetricInfo("macro_f1", "macro-F1", True,
               "unweighted mean of per-class F1 = 2TP / (2TP + FP + FN), over classes that occur in the labels "
               "or the predictions", "%", "mean per-class F1 over classes seen in labels or predictions"),
    MetricInfo("balanced_accuracy", "balanced accuracy", True,
               "unweighted mean of per-class recall over classes present in the labels", "%",
               "mean per-class recall over classes present in labels"),
    MetricInfo("nll", "NLL", False, "mean over samples of -log softmax(logits)[label] (natural log), from logits",
               "", "mean negative log-likelihood of the label (nats), from logits"),
    MetricInfo("brier", "Brier", False, "sum over classes of (p_c - onehot_c)^2, averaged over samples (range 0..2)",
               "", "sum over classes of squared error to one-hot, mean over samples"),
    MetricInfo("ece", "ECE", False,
               f"top-label expected calibration error; {_BINNING}; ECE = sum over non-empty bins of "
               "(n_b / N) * |accuracy_b - mean confidence_b|", "",
               "top-label ECE, equal-width bins (lo, hi], last bin closed at 1.0"),
    MetricInfo("adaptive_ece", "adaptive ECE", False,
               "the same with equal-mass bins: samples sorted by confidence, the i-th (0-based) goes to bin "
               "floor(i * B / N), so bin sizes differ by at most one (min(B, N) non-empty bins; equal confidences "
               "may straddle a boundary)", "", "top-label ECE with equal-mass bins"),
    MetricInfo("classwise_ece", "classwise ECE", False,
               "for each class c, bin p_c of every sample into B equal-width bins (same edges) and take sum over "
               "bins (n_b / N) * |frequency of label c in bin - mean p_c in bin|; the MEAN over the C classes "
               "(not the sum)", "", "mean over classes of per-class ECE with equal-width bins"),
    MetricInfo("mce", "MCE", False,
               "maximum over non-empty equal-width bins of |accuracy_b - mean confidence_b| (top-label)", "",
               "largest |accuracy - confidence| over non-empty equal-width bins"),
    MetricInfo("aurc", "AURC", False,
               "area under the risk-coverage curve with top-label confidence as the selection score: samples "
               "ranked by decreasing confidence, risk(k) = errors among the k most confident / k, AURC = mean of "
               "risk(k) for k = 1..N; tied confidences get their expected (random-order) risk", "",
               "area under the risk-coverage curve (selective prediction)"),
    MetricInfo("many_shot_accuracy", "many-shot accuracy", True,
               "mean test recall of the classes with more than 100 training samples", "%",
               "accuracy on classes with > 100 training samples"),
    MetricInfo("medium_shot_accuracy", "medium-shot accuracy", True,
               "mean test recall of the classes with 20 to 100 training samples", "%",
               "accuracy on classes with 20..100 training samples"),
    MetricInfo("few_shot_accuracy", "few-shot accuracy", True,
               "mean test recall of the classes with fewer than 20 training samples", "%",
               "accuracy on classes with < 20 training samples"),
    # regression datasets (hl_gauss): point predictions p = loss.decode(logits) against float targets y
    MetricInfo("mse", "MSE", False, "mean over samples of (p - y)^2, p the decoded prediction (hl_gauss: the "
               "expectation of the bin centres under softmax(logits))", "", "mean squared error of the predictions"),
    MetricInfo("mae", "MAE", False, "mean over samples of |p - y|, p the decoded prediction", "",
               "mean absolute error of the predictions"),
    MetricInfo("r2", "R²", True, "1 - sum (p - y)^2 / sum (y - mean(y))^2 over the split (0: as good as predicting "
               "the split's mean; NaN when all targets are equal)", "", "coefficient of determination"),
)}

#: the headline metrics ``compute_metrics`` returns, in report order
HEADLINE = ("accuracy", "top5", "macro_f1", "balanced_accuracy", "nll", "brier", "ece", "adaptive_ece",
            "classwise_ece", "mce", "aurc")


def metric_info(name: str) -> MetricInfo:
    """The metric's entry; an unknown name gets a neutral entry (higher is better, no unit)."""
    return METRICS.get(name) or MetricInfo(name, name.replace("_", " "), True, name)


def higher_is_better(name: str) -> bool:
    return metric_info(name).higher_is_better


def definitions_text(names=HEADLINE) -> str:
    """The metric conventions as a markdown list (what reports quote verbatim)."""
    return "".join(f"- {n}: {metric_info(n).definition}.\n" for n in names)


#: the headline metrics' conventions, as reports quote them
DEFINITIONS = definitions_text()
