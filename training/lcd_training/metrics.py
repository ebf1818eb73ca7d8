"""Binary change-detection metrics from confusion counts."""
from __future__ import annotations

from typing import Dict

import numpy as np


class Confusion:
    def __init__(self) -> None:
        self.tp = self.fp = self.fn = self.tn = 0

    def update(self, pred: np.ndarray, label: np.ndarray) -> None:
        p = pred.astype(bool).ravel()
        t = label.astype(bool).ravel()
        tp = int(np.count_nonzero(p & t))
        fp = int(np.count_nonzero(p & ~t))
        fn = int(np.count_nonzero(~p & t))
        self.tp += tp
        self.fp += fp
        self.fn += fn
        self.tn += int(p.size) - tp - fp - fn

    def summary(self, full: bool = False) -> Dict:
        return summarize(self.tp, self.fp, self.fn, self.tn, full)


def _div(a: float, b: float, empty: float) -> float:
    return float(a) / float(b) if b > 0 else empty


def summarize(tp: int, fp: int, fn: int, tn: int, full: bool = False) -> Dict:
    """precision, recall, F1 and IoU of the 'changed' class; overall accuracy and Cohen's kappa.

    When there is nothing to find and nothing was predicted (tp + fp + fn == 0) precision, recall, F1 and IoU are 1;
    otherwise a zero denominator gives 0."""
    nothing = (tp + fp + fn) == 0
    e = 1.0 if nothing else 0.0
    precision = _div(tp, tp + fp, e)
    recall = _div(tp, tp + fn, e)
    f1 = _div(2 * tp, 2 * tp + fp + fn, e)
    iou = _div(tp, tp + fp + fn, e)
    out = {"precision": round(precision, 6), "recall": round(recall, 6), "f1": round(f1, 6), "iou": round(iou, 6)}
    if full:
        n = tp + fp + fn + tn
        oa = _div(tp + tn, n, 0.0)
        pe = _div((tp + fp) * (tp + fn) + (fn + tn) * (fp + tn), n * n, 0.0)
        kappa = (oa - pe) / (1 - pe) if pe < 1 else 1.0
        out.update({"overallAccuracy": round(oa, 6), "kappa": round(float(kappa), 6),
                    "confusion": {"tp": tp, "fp": fp, "fn": fn, "tn": tn}, "pixels": n})
    return out
