"""Distribution metrics over image features: FID, KID, Inception Score, precision/recall, density/coverage.

Every function here takes feature arrays (N, D), as produced by an extractor from
:mod:`genlab.metrics.features`, and is pure: same inputs, same number. The references:

- **FID** (Heusel et al. 2017): ‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2 (Σ₁Σ₂)^½). Statistics in float64, the
  covariance centred before it is formed (torchmetrics sums raw outer products, which loses digits
  when the mean is large). tr (Σ₁Σ₂)^½ is computed as Σ √λᵢ(Lᵀ Σ₂ L) with Σ₁ = L Lᵀ: a symmetric
  positive semi-definite eigenproblem, so the result stays real and accurate however ill-conditioned
  the covariances are, unlike ``scipy.linalg.sqrtm`` (whose imaginary parts and instability are a
  known source of wrong FIDs) or a general eigensolver on the non-symmetric Σ₁Σ₂ (torchmetrics).
- **KID** (Bińkowski et al. 2018): the unbiased MMD² with the cubic polynomial kernel
  k(x, y) = (xᵀy / D + 1)³, averaged over random subsets; the standard deviation over subsets is
  reported with it. Subsets are drawn as torchmetrics draws them, so the same seed gives the same
  subsets (and the same value).
- **Inception Score** (Salimans et al. 2016): exp E_x KL(p(y|x) ‖ p(y)), mean and std over splits.
- **Precision and recall** (Kynkäänniemi et al. 2019): k-NN balls around each real (fake) feature
  approximate its manifold; precision is the share of fakes inside the real manifold, recall the
  share of reals inside the fake one.
- **Density and coverage** (Naeem et al. 2020): density counts how many real balls hold each fake
  (÷ k), coverage is the share of real balls holding at least one fake; both as in clovaai's
  ``prdc`` package.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg
import scipy.linalg.blas
import scipy.special
import torch

from genlab.errors import ConfigError, DataError


class SampleSizeWarning(UserWarning):
    """Fewer samples than a metric needs to be trusted (it is computed anyway)."""


def as_features(x: Any, what: str = "features", *, keep_float32: bool = False) -> np.ndarray:
    """A finite float64 (N, D) array (float32 kept as is with ``keep_float32``), or a one-line error."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if x.ndim != 2:
        raise DataError(f"{what} must be a 2-D array (samples, features); got shape {x.shape}.")
    if not np.issubdtype(x.dtype, np.number):
        raise DataError(f"{what} must be numeric; got dtype {x.dtype}.")
    x = x if keep_float32 and x.dtype == np.float32 else x.astype(np.float64, copy=False)
    bad = ~np.isfinite(x)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        raise DataError(
            f"{what} hold {int(bad.sum())} NaN/inf values in {len(rows)} rows (first: row {rows[0]}); "
            "the extractor or the samples are broken: check the images for NaN."
        )
    return x


def _check_pair(a: np.ndarray, b: np.ndarray, minimum: int, metric: str) -> None:
    if a.shape[1] != b.shape[1]:
        raise DataError(
            f"{metric}: the two feature sets have {a.shape[1]} and {b.shape[1]} dimensions; "
            "extract both with the same extractor."
        )
    for x, side in ((a, "first"), (b, "second")):
        if len(x) < minimum:
            raise DataError(f"{metric} needs at least {minimum} samples per side; the {side} set has {len(x)}.")


def warn_if_few(n: int, dim: int, metric: str) -> None:
    """Warn when the covariance of ``n`` samples of dimension ``dim`` cannot be full rank."""
    if n < dim:
        warnings.warn(
            f"{metric} from {n} samples of {dim}-dimensional features: the covariance has rank ≤ {n - 1} < {dim}, "
            f"so the value is dominated by bias; use at least {dim} samples, ideally {10 * dim}.",
            SampleSizeWarning,
            stacklevel=3,
        )


# --- Gaussian statistics and the Fréchet distance ------------------------------------------------
@dataclass(frozen=True)
class GaussianStats:
    """Mean (D,) and unbiased covariance (D, D) of n feature vectors, float64."""

    mean: np.ndarray
    cov: np.ndarray
    n: int

    @classmethod
    def of(cls, features: Any) -> GaussianStats:
        x = as_features(features)
        if len(x) < 2:
            raise DataError(f"a covariance needs at least 2 samples; got {len(x)}.")
        mean = x.mean(axis=0)
        centred = x - mean
        return cls(mean, (centred.T @ centred) / (len(x) - 1), len(x))  # numpy uses a symmetric rank-k update here


class RunningStats:
    """Mean and covariance accumulated batch by batch, in O(D²) memory, float64: the same numbers
    as :meth:`GaussianStats.of` on the concatenated batches (to round-off).

    Sums are taken about a shift (the first batch's mean), so that forming the covariance from
    them does not cancel digits, and Σ (x − shift)(x − shift)ᵀ grows in place by BLAS's symmetric
    rank-k update (``dsyrk``, one triangle: half the multiplications of a general product).
    """

    def __init__(self) -> None:
        self.n = 0
        self.shift: np.ndarray | None = None
        self.total: np.ndarray | None = None  # Σ (x − shift)
        self.gram: np.ndarray | None = None  # Σ (x − shift)(x − shift)ᵀ, upper triangle, Fortran order

    def update(self, features: Any) -> None:
        x = as_features(features)
        if len(x) == 0:
            return
        if self.shift is None:
            self.shift = x.mean(axis=0)
            self.total = np.zeros_like(self.shift)
            self.gram = np.zeros((x.shape[1], x.shape[1]), order="F")
        if x.shape[1] != self.shift.shape[0]:
            raise DataError(f"this batch has {x.shape[1]} features; earlier batches had {self.shift.shape[0]}.")
        centred = x - self.shift
        self.total += centred.sum(axis=0)
        # C ← cᵀc + C with c = centred: (D, n) Fortran-ordered view, no copy
        self.gram = scipy.linalg.blas.dsyrk(1.0, centred.T, beta=1.0, c=self.gram, trans=0, overwrite_c=1)
        self.n += len(x)

    def stats(self) -> GaussianStats:
        if self.n < 2 or self.shift is None or self.total is None or self.gram is None:
            raise DataError(f"a covariance needs at least 2 samples; {self.n} were given.")
        upper = np.triu(self.gram)
        scatter = upper + np.triu(upper, 1).T
        offset = self.total / self.n  # mean − shift
        cov = (scatter - self.n * np.outer(offset, offset)) / (self.n - 1)
        return GaussianStats(self.shift + offset, cov, self.n)


def trace_sqrt_product(cov_a: np.ndarray, cov_b: np.ndarray) -> float:
    """tr (Σ_a Σ_b)^½ for symmetric positive semi-definite Σ_a, Σ_b, real by construction.

    With any factor Σ_a = F Fᵀ, Σ_a Σ_b has the eigenvalues of the symmetric PSD matrix Fᵀ Σ_b F,
    so the trace is Σ √λᵢ over those (tiny negative round-off clipped to 0). F is the Cholesky
    factor when Σ_a is positive definite, else V·diag(√max(w, 0)) from its eigen-decomposition.
    """
    try:
        factor = scipy.linalg.cholesky(cov_a, lower=True, check_finite=False)
        # Lᵀ (Σ_b L) by two triangular products: half the multiplications of two general ones
        trmm = scipy.linalg.blas.dtrmm
        middle = trmm(1.0, factor, trmm(1.0, factor, np.asfortranarray(cov_b), side=1, lower=1), lower=1, trans_a=1)
    except np.linalg.LinAlgError:
        w, v = scipy.linalg.eigh(cov_a, check_finite=False)
        factor = v * np.sqrt(np.clip(w, 0.0, None))
        middle = factor.T @ cov_b @ factor
    middle = (middle + middle.T) / 2  # exactly symmetric for the solver
    eigenvalues = scipy.linalg.eigvalsh(middle, check_finite=False)
    return float(np.sqrt(np.clip(eigenvalues, 0.0, None)).sum())


def frechet_distance(a: GaussianStats, b: GaussianStats) -> float:
    """‖μ_a − μ_b‖² + tr Σ_a + tr Σ_b − 2 tr (Σ_a Σ_b)^½ (≥ 0 up to round-off)."""
    if a.mean.shape != b.mean.shape:
        raise DataError(f"FID: the statistics have {a.mean.shape[0]} and {b.mean.shape[0]} dimensions.")
    diff = a.mean - b.mean
    return float(diff @ diff + np.trace(a.cov) + np.trace(b.cov) - 2.0 * trace_sqrt_product(a.cov, b.cov))


def fid(features_a: Any, features_b: Any) -> float:
    """Fréchet distance between two feature sets (N_a, D) and (N_b, D)."""
    a, b = as_features(features_a, "first features"), as_features(features_b, "second features")
    _check_pair(a, b, 2, "FID")
    warn_if_few(min(len(a), len(b)), a.shape[1], "FID")
    return frechet_distance(GaussianStats.of(a), GaussianStats.of(b))


# --- kernel inception distance ----------------------------------------------------------------
def _poly_mmd2(x: np.ndarray, y: np.ndarray, degree: int, gamma: float, coef: float) -> float:
    """Unbiased MMD² of two equal-size sets with k(u, v) = (γ uᵀv + c)^degree.

    One Gram matrix of z = [x; y]: ``z @ z.T`` is a BLAS symmetric rank-k update (one triangle: 2/3
    of the multiplications of the three products K_xx, K_yy, K_xy). The kernel is evaluated in the
    features' precision and summed in float64, where the float32 sums of torchmetrics lose ~1e-6 of KID.
    """
    m = len(x)
    z = np.concatenate([x, y])
    k = z @ z.T
    k *= k.dtype.type(gamma)
    k += k.dtype.type(coef)
    base = k.copy()
    for _ in range(degree - 1):  # integer power by multiplication: exact and faster than pow
        k *= base
    diag = np.diagonal(k)
    k_xx = k[:m, :m].sum(dtype=np.float64) - diag[:m].sum(dtype=np.float64)
    k_yy = k[m:, m:].sum(dtype=np.float64) - diag[m:].sum(dtype=np.float64)
    k_xy = k[:m, m:].sum(dtype=np.float64)
    return float((k_xx + k_yy) / (m * (m - 1)) - 2 * k_xy / (m * m))


@dataclass(frozen=True)
class KIDResult:
    mean: float
    std: float  # over subsets (population std, as torchmetrics and the reference)
    subsets: int
    subset_size: int


def kid(features_a: Any, features_b: Any, *, subsets: int = 100, subset_size: int = 1000, degree: int = 3,
        gamma: float | None = None, coef: float = 1.0, seed: int = 0) -> KIDResult:  # fmt: skip
    """Kernel inception distance: mean and std of the unbiased MMD² over ``subsets`` random subsets
    of ``subset_size`` from each side (capped at the smaller set's size). ``gamma`` defaults to 1/D.
    The Gram matrices are formed in the features' precision (float32 features stay float32, as in
    torchmetrics; give float64 for a float64 product), the kernel values and sums in float64.

    The subsets are ``torch.randperm`` draws from a generator seeded with ``seed``, first side then
    second, as torchmetrics' ``KernelInceptionDistance`` draws them after ``torch.manual_seed(seed)``.
    """
    a = as_features(features_a, "first features", keep_float32=True)
    b = as_features(features_b, "second features", keep_float32=True)
    _check_pair(a, b, 2, "KID")
    if subsets < 1:
        raise ConfigError(f"subsets={subsets} must be at least 1.")
    size = min(subset_size, len(a), len(b))
    if size < 2:
        raise ConfigError(f"subset_size={subset_size} must be at least 2.")
    if a.dtype != b.dtype:
        a, b = a.astype(np.float64), b.astype(np.float64)
    g = torch.Generator().manual_seed(seed)
    gamma = 1.0 / a.shape[1] if gamma is None else gamma
    scores = []
    for _ in range(subsets):
        ia = torch.randperm(len(a), generator=g)[:size].numpy()
        ib = torch.randperm(len(b), generator=g)[:size].numpy()
        scores.append(_poly_mmd2(a[ia], b[ib], degree, gamma, coef))
    values = np.array(scores)
    return KIDResult(float(values.mean()), float(values.std()), subsets, size)


# --- inception score ----------------------------------------------------------------------------
def inception_score(logits: Any, *, splits: int = 10, seed: int | None = 0) -> tuple[float, float]:
    """Mean and std over ``splits`` of exp E_x KL(p(y|x) ‖ p(y)), from classifier logits (N, K).

    The rows are shuffled (seeded; ``seed=None`` keeps their order) before they are split, as
    torchmetrics does: data stored class by class would otherwise give each split one class and a
    score near 1.
    """
    x = as_features(logits, "logits")
    if seed is not None:
        x = x[np.random.default_rng(seed).permutation(len(x))]
    if splits < 1 or len(x) < splits:
        raise DataError(f"the Inception Score needs at least {max(splits, 1)} samples for {splits} splits; "
                        f"got {len(x)}.")  # fmt: skip
    log_p = x - scipy.special.logsumexp(x, axis=1, keepdims=True)
    scores = []
    for part in np.array_split(log_p, splits):
        log_marginal = scipy.special.logsumexp(part, axis=0) - math.log(len(part))
        kl = (np.exp(part) * (part - log_marginal)).sum(axis=1).mean()
        scores.append(math.exp(kl))
    return float(np.mean(scores)), float(np.std(scores))


# --- k-NN manifold metrics ----------------------------------------------------------------------
def apply_pairwise_distances(x: np.ndarray, y: np.ndarray, fn: Callable[[torch.Tensor, slice], None], *,
                             chunk: int = 2048) -> None:  # fmt: skip
    """Call ``fn(distances, rows)`` on chunks of the Euclidean distance matrix between x and y (float64)."""
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    sq_y = (ty * ty).sum(1)
    for start in range(0, len(x), chunk):
        rows = slice(start, min(start + chunk, len(x)))
        block = tx[rows]
        d2 = (block * block).sum(1, keepdim=True) - 2 * block @ ty.T + sq_y
        fn(d2.clamp_(min=0).sqrt_(), rows)


def knn_radii(features: np.ndarray, k: int) -> np.ndarray:
    """Distance from each point to its k-th nearest neighbour in the same set (itself excluded)."""
    if len(features) <= k:
        raise DataError(f"k-NN radii with k={k} need more than {k} samples; got {len(features)}.")
    radii = np.empty(len(features))

    def take(d: torch.Tensor, rows: slice) -> None:  # the 0-th neighbour is the point itself
        radii[rows] = torch.kthvalue(d, k + 1, dim=1).values.numpy()

    apply_pairwise_distances(features, features, take)
    return radii


def _within(points: np.ndarray, centres: np.ndarray, radii: np.ndarray, *, closed: bool) -> np.ndarray:
    """For each point, how many balls around ``centres`` contain it (closed: distance ≤ radius)."""
    counts = np.zeros(len(points), dtype=np.int64)
    tr = torch.from_numpy(radii)

    def take(d: torch.Tensor, rows: slice) -> None:
        counts[rows] = (d <= tr if closed else d < tr).sum(1).numpy()

    apply_pairwise_distances(points, centres, take)
    return counts


def precision_recall(real: Any, fake: Any, *, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) with k-NN balls (their k = 3)."""
    r, f = as_features(real, "real features"), as_features(fake, "fake features")
    _check_pair(r, f, k + 1, "precision/recall")
    precision = float((_within(f, r, knn_radii(r, k), closed=True) > 0).mean())  # ≤, as the authors' code
    recall = float((_within(r, f, knn_radii(f, k), closed=True) > 0).mean())
    return precision, recall


def density_coverage(real: Any, fake: Any, *, k: int = 5) -> tuple[float, float]:
    """Density and coverage (Naeem et al. 2020; their k = 5), as clovaai's ``prdc.compute_prdc``."""
    r, f = as_features(real, "real features"), as_features(fake, "fake features")
    _check_pair(r, f, k + 1, "density/coverage")
    radii = knn_radii(r, k)
    density = float(_within(f, r, radii, closed=False).sum() / (k * len(f)))  # <, as prdc
    nearest_fake = np.empty(len(r))

    def take(d: torch.Tensor, rows: slice) -> None:
        nearest_fake[rows] = d.min(dim=1).values.numpy()

    apply_pairwise_distances(r, f, take)
    coverage = float((nearest_fake < radii).mean())
    return density, coverage


# --- uncertainty ------------------------------------------------------------------------------
def bootstrap_fid(real: GaussianStats | Any, fake: Any, *, resamples: int, seed: int, level: float = 0.95,
                  estimate: float | None = None) -> tuple[float, float]:  # fmt: skip
    """A bootstrap interval of FID over the generated samples, the real statistics held fixed.

    Resampling with replacement repeats points, which shrinks the spread of a resample and so
    inflates its FID: the percentile interval of the resamples sits above the estimate. It is
    shifted down by that bias (mean of the resamples − the estimate; the bias-corrected percentile
    interval of Efron & Tibshirani 1993, §10.6) and clipped at 0. ``estimate``: the FID of the full
    sets when the caller has it already.
    """
    reference = real if isinstance(real, GaussianStats) else GaussianStats.of(real)
    x = as_features(fake, "fake features")
    if estimate is None:
        estimate = frechet_distance(reference, GaussianStats.of(x))
    rng = np.random.default_rng(seed)
    values = np.array([frechet_distance(reference, GaussianStats.of(x[rng.integers(0, len(x), len(x))]))
                       for _ in range(resamples)])  # fmt: skip
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail]) - (values.mean() - estimate)
    return float(max(low, 0.0)), float(max(high, 0.0))


__all__ = [
    "FID",
    "KID",
    "GaussianStats",
    "KIDResult",
    "RunningStats",
    "SampleSizeWarning",
    "apply_pairwise_distances",
    "as_features",
    "bootstrap_fid",
    "density_coverage",
    "fid",
    "frechet_distance",
    "inception_score",
    "kid",
    "knn_radii",
    "precision_recall",
    "trace_sqrt_product",
]


# --- stateful wrappers ----------------------------------------------------------------------------
class FID:
    """Accumulate features batch by batch, ``compute()`` the FID: ``update(features, real=True|False)``.

    Memory is O(D²) (running mean and covariance), whatever the number of samples. Give
    ``real_stats`` (e.g. cached :class:`GaussianStats`) to skip the real side.
    """

    def __init__(self, real_stats: GaussianStats | None = None) -> None:
        self.real_stats = real_stats
        self.reset()

    def reset(self) -> None:
        self.real, self.fake = RunningStats(), RunningStats()

    def update(self, features: Any, *, real: bool) -> None:
        (self.real if real else self.fake).update(features)

    def compute(self) -> float:
        real = self.real_stats or self.real.stats()
        fake = self.fake.stats()
        warn_if_few(min(real.n, fake.n), real.mean.shape[0], "FID")
        return frechet_distance(real, fake)


class KID:
    """Accumulate features batch by batch (they are kept: KID needs them all), ``compute()`` → :class:`KIDResult`."""

    def __init__(self, **options: Any) -> None:
        self.options = options
        self.reset()

    def reset(self) -> None:
        self.real: list[np.ndarray] = []
        self.fake: list[np.ndarray] = []

    def update(self, features: Any, *, real: bool) -> None:
        (self.real if real else self.fake).append(as_features(features, keep_float32=True))

    def compute(self) -> KIDResult:
        if not self.real or not self.fake:
            raise DataError("KID needs real and generated features; call update(..., real=True) and real=False.")
        return kid(np.concatenate(self.real), np.concatenate(self.fake), **self.options)
