"""Countermeasure metrics: EER exactly as AASIST's ``evaluation.compute_eer`` (clovaai/aasist),
and score-level ensembling.

Convention (ASVspoof / AASIST): ``target_scores`` are the bona fide trials' scores, higher =
more bona fide; ``nontarget_scores`` the spoofs'.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["compute_det_curve", "compute_eer", "eer_from_labels", "ensemble_scores"]


def compute_det_curve(
    target_scores: np.ndarray, nontarget_scores: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False rejection and false acceptance rates at every threshold (the sorted scores, with
    one below the minimum first). Returns ``(frr, far, thresholds)``, each ``[N + 1]``."""
    tar = np.asarray(target_scores, dtype=np.float64).ravel()
    non = np.asarray(nontarget_scores, dtype=np.float64).ravel()
    if tar.size == 0 or non.size == 0:
        raise ValueError("EER needs at least one bona fide and one spoof score")
    n = tar.size + non.size
    scores = np.concatenate([tar, non])
    labels = np.concatenate([np.ones(tar.size), np.zeros(non.size)])
    order = np.argsort(scores, kind="mergesort")  # stable, as the reference
    labels = labels[order]
    tar_sums = np.cumsum(labels)
    non_sums = non.size - (np.arange(1, n + 1) - tar_sums)
    frr = np.concatenate([[0.0], tar_sums / tar.size])
    far = np.concatenate([[1.0], non_sums / non.size])
    thresholds = np.concatenate([[scores[order[0]] - 0.001], scores[order]])
    return frr, far, thresholds


def compute_eer(target_scores: np.ndarray, nontarget_scores: np.ndarray) -> tuple[float, float]:
    """Equal error rate (a fraction in [0, 1]) and its threshold: the DET point where
    ``|frr - far|`` is smallest, EER = the mean of the two rates there."""
    frr, far, thr = compute_det_curve(target_scores, nontarget_scores)
    i = int(np.argmin(np.abs(frr - far)))
    return float(np.mean([frr[i], far[i]])), float(thr[i])


def eer_from_labels(scores: np.ndarray, labels: np.ndarray) -> float:
    """EER of ``scores: [N]`` with ``labels: [N]`` (1 = bona fide, 0 = spoof)."""
    scores, labels = np.asarray(scores), np.asarray(labels).astype(bool)
    return compute_eer(scores[labels], scores[~labels])[0]


def ensemble_scores(
    systems: Sequence[np.ndarray],
    weights: Sequence[float] | None = None,
    normalize: str = "zscore",
    reference: Sequence[np.ndarray] | None = None,
) -> np.ndarray:
    """Score-level fusion of several systems' scores on the same trials.

    Args:
        systems: one ``[N]`` score array per system.
        weights: one weight per system (default equal); normalised to sum to 1.
        normalize: ``"zscore"`` (each system standardised with the mean / std of its
            ``reference`` scores, default its own scores; makes differently scaled logits
            comparable) or ``"none"`` (plain weighted mean).
        reference: per-system calibration scores (e.g. a development set) for ``zscore``.

    Returns:
        the fused scores ``[N]``.
    """
    if not systems:
        raise ValueError("ensemble_scores needs at least one system")
    arrs = [np.asarray(s, dtype=np.float64).ravel() for s in systems]
    if any(a.shape != arrs[0].shape for a in arrs):
        raise ValueError(f"all systems must score the same trials: {[a.shape for a in arrs]}")
    w = np.ones(len(arrs)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (len(arrs),) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError(f"weights must be {len(arrs)} non-negative numbers, got {weights}")
    w = w / w.sum()
    if normalize == "zscore":
        refs = arrs if reference is None else [np.asarray(r, dtype=np.float64) for r in reference]
        arrs = [(a - r.mean()) / max(r.std(), 1e-12) for a, r in zip(arrs, refs)]
    elif normalize != "none":
        raise ValueError(f"normalize must be 'zscore' or 'none', got {normalize!r}")
    return np.sum([wi * a for wi, a in zip(w, arrs)], axis=0)
