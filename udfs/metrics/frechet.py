"""Gaussian statistics of feature sets and the Frechet distance between two Gaussians (FID, FVD).

``d^2 = ||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2))`` (Heusel et al. 2017; Unterthiner et al. 2018 for
FVD). ``tr((S1 S2)^(1/2))`` is the sum of the square roots of the eigenvalues of ``S1 S2``, which equal
those of the symmetric PSD matrix ``S1^(1/2) S2 S1^(1/2)``: this module takes them from ``eigh`` of
that matrix (real, clipped at 0), in float64. torchmetrics' ``_compute_fid`` takes them from
``eigvals(S1 S2)``; StyleGAN-V/pytorch-fid use ``scipy.linalg.sqrtm(S1 S2)``. tests/test_metrics.py
checks all three agree.

Statistics stream: ``FeatureAccumulator`` keeps ``n``, the feature sum and the sum of outer products
in float64 (the state torchmetrics' ``FrechetInceptionDistance`` keeps), so features of thousands of
videos never sit in memory together, and partial accumulators (batches, workers) add up exactly.
The covariance is the unbiased one (``n - 1``), as ``np.cov``, torchmetrics and StyleGAN-V use.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


def as_features(features: Any, what: str = "features") -> np.ndarray:
    """``features`` (array or tensor, ``(n, d)``) as a float64 array; ValueError for another rank or
    a non-finite value (a NaN feature would silently make every distance NaN)."""
    if hasattr(features, "detach"):
        features = features.detach().to("cpu").double().numpy()
    arr = np.asarray(features, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{what} must be a 2-D (samples, dims) array, got shape {arr.shape}")
    bad = ~np.isfinite(arr)
    if bad.any():
        rows = int(bad.any(axis=1).sum())
        raise ValueError(f"{what}: {rows} of {arr.shape[0]} feature rows hold NaN or inf "
                         "(a broken extractor or input)")
    return arr


@dataclass(frozen=True)
class GaussianStats:
    """Mean ``(d,)`` and unbiased covariance ``(d, d)`` (float64) of ``n`` feature vectors."""

    mean: np.ndarray
    cov: np.ndarray
    n: int

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    @classmethod
    def from_features(cls, features: Any) -> GaussianStats:
        """Statistics of ``(n, d)`` features; ValueError when ``n < 2`` (no covariance)."""
        acc = FeatureAccumulator()
        acc.update(features)
        return acc.stats()

    def save(self, path: str | Path) -> Path:
        """Write ``mean``, ``cov`` and ``n`` to an ``.npz`` file (e.g. cached real-set statistics)."""
        path = Path(path)
        with open(path, "wb") as fh:  # np.savez would append ".npz" to a path without it
            np.savez(fh, mean=self.mean, cov=self.cov, n=np.int64(self.n))
        return path

    @classmethod
    def load(cls, path: str | Path) -> GaussianStats:
        with np.load(Path(path)) as data:
            mean, cov, n = np.asarray(data["mean"], np.float64), np.asarray(data["cov"], np.float64), int(data["n"])
        if mean.ndim != 1 or cov.shape != (mean.shape[0], mean.shape[0]) or n < 2:
            raise ValueError(f"{path}: not Gaussian feature statistics (mean {mean.shape}, cov {cov.shape}, n {n})")
        return cls(mean, cov, n)


class FeatureAccumulator:
    """Streaming ``n``, sum and outer-product sum of feature rows (float64); ``stats()`` at the end."""

    def __init__(self, dim: int | None = None) -> None:
        self.dim = dim
        self.n = 0
        self.total: np.ndarray | None = None
        self.outer: np.ndarray | None = None

    def update(self, features: Any) -> FeatureAccumulator:
        """Add ``(b, d)`` feature rows (array or tensor); ValueError on a dimension change or NaN."""
        x = as_features(features)
        if self.dim is None:
            self.dim = x.shape[1]
        elif x.shape[1] != self.dim:
            raise ValueError(f"features have {x.shape[1]} dims, this set has {self.dim}")
        if self.total is None:
            self.total = np.zeros(self.dim)
            self.outer = np.zeros((self.dim, self.dim))
        self.n += x.shape[0]
        self.total += x.sum(axis=0)
        self.outer += x.T @ x
        return self

    def merge(self, other: FeatureAccumulator) -> FeatureAccumulator:
        """Add another accumulator's rows (another batch, worker or shard) in place."""
        if other.n == 0:
            return self
        if self.dim is not None and other.dim != self.dim:
            raise ValueError(f"cannot merge features of {other.dim} dims into a set of {self.dim}")
        if self.total is None:
            self.dim, self.total, self.outer = other.dim, np.zeros(other.dim), np.zeros((other.dim, other.dim))
        self.n += other.n
        self.total += other.total
        self.outer += other.outer
        return self

    def stats(self) -> GaussianStats:
        """Mean and unbiased covariance; ValueError with fewer than 2 rows."""
        if self.n < 2:
            raise ValueError(f"need at least 2 feature vectors for a covariance, got {self.n}")
        mean = self.total / self.n
        cov = (self.outer - self.n * np.outer(mean, mean)) / (self.n - 1)
        return GaussianStats(mean, (cov + cov.T) / 2, self.n)


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix (eigenvalues clipped at 0)."""
    w, v = np.linalg.eigh((matrix + matrix.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def trace_sqrt_product(cov1: np.ndarray, cov2: np.ndarray) -> float:
    """``tr((cov1 cov2)^(1/2))`` for PSD ``cov1``, ``cov2`` (see the module docstring)."""
    root = _sqrt_psd(cov1)
    w = np.linalg.eigvalsh(root @ cov2 @ root)
    return float(np.sqrt(np.clip(w, 0.0, None)).sum())


def frechet_distance(a: GaussianStats, b: GaussianStats) -> float:
    """The Frechet distance between two Gaussians (FID / FVD when fed the right features).

    Raises ValueError when the dimensions differ or a statistic is not finite."""
    if a.dim != b.dim or a.cov.shape != b.cov.shape:
        raise ValueError(f"feature dimensions differ: {a.dim} vs {b.dim}")
    for name, s in (("first", a), ("second", b)):
        if not (np.isfinite(s.mean).all() and np.isfinite(s.cov).all()):
            raise ValueError(f"the {name} set's statistics are not finite")
    diff = a.mean - b.mean
    value = float(diff @ diff + np.trace(a.cov) + np.trace(b.cov) - 2.0 * trace_sqrt_product(a.cov, b.cov))
    return max(value, 0.0)  # rounding can leave -1e-13 for identical sets


def frechet_distance_of_features(features1: Any, features2: Any) -> float:
    """``frechet_distance`` of two ``(n, d)`` feature sets."""
    return frechet_distance(GaussianStats.from_features(features1), GaussianStats.from_features(features2))
