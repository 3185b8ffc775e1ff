"""Regression metrics for lossbench: Pearson and Spearman correlation (SciPy), MSE and MAE (scikit-learn)."""

import datasets
import evaluate
from scipy.stats import pearsonr
from scipy.stats import spearmanr
from sklearn.metrics import mean_absolute_error
from sklearn.metrics import mean_squared_error

_DESCRIPTION = "Pearson and Spearman correlation, mean squared and mean absolute error of real-valued predictions."
_KWARGS_DESCRIPTION = """
Args:
    predictions (list of float): predicted targets.
    references (list of float): true targets.
Returns:
    pearson, spearman, mse, mae (floats); a correlation is nan when predictions or references are constant.
"""
_CITATION = "Virtanen et al., SciPy 1.0, Nature Methods 17, 2020; Pedregosa et al., Scikit-learn, JMLR 12, 2011."


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class RegressionMetrics(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("float64"), "references": datasets.Value("float64")}
            ),
        )

    def _compute(self, predictions, references):
        constant = min(predictions) == max(predictions) or min(references) == max(references)
        return {
            "pearson": float("nan") if constant else float(pearsonr(predictions, references).statistic),
            "spearman": float("nan") if constant else float(spearmanr(predictions, references).statistic),
            "mse": float(mean_squared_error(references, predictions)),
            "mae": float(mean_absolute_error(references, predictions)),
        }
