"""Evaluation: image-distribution metrics, text metrics, likelihoods, memorisation and usefulness.

Pure functions over arrays, with thin stateful wrappers that accumulate batches::

    from genlab import metrics
    metrics.fid(real_features, fake_features)            # float
    metrics.kid(real_features, fake_features).mean       # KIDResult(mean, std, subsets, subset_size)
    metrics.precision_recall(real_features, fake_features)
    acc = metrics.FID(); acc.update(batch, real=False); acc.compute()

Features come from an extractor (:func:`load_extractor`: the shipped domain networks or the FID
Inception-v3 from a local weight file); ``genlab eval`` (:func:`evaluate_run`) does the whole job
for a run and writes ``metrics.json``.
"""

from genlab.metrics.evaluate import EvalOptions, evaluate_run, evaluate_samples
from genlab.metrics.features import Extractor, load_domain_net, load_extractor, real_features
from genlab.metrics.image import (
    FID,
    KID,
    GaussianStats,
    KIDResult,
    RunningStats,
    SampleSizeWarning,
    bootstrap_fid,
    density_coverage,
    fid,
    frechet_distance,
    inception_score,
    kid,
    precision_recall,
)
from genlab.metrics.memorization import memorization, save_closest_pairs
from genlab.metrics.text import bleu, chrf, distinct_n, ngram_overlap, perplexity, self_bleu

__all__ = [
    "FID",
    "KID",
    "EvalOptions",
    "Extractor",
    "GaussianStats",
    "KIDResult",
    "RunningStats",
    "SampleSizeWarning",
    "bleu",
    "bootstrap_fid",
    "chrf",
    "density_coverage",
    "distinct_n",
    "evaluate_run",
    "evaluate_samples",
    "fid",
    "frechet_distance",
    "inception_score",
    "kid",
    "load_domain_net",
    "load_extractor",
    "memorization",
    "ngram_overlap",
    "perplexity",
    "precision_recall",
    "real_features",
    "save_closest_pairs",
    "self_bleu",
]
