"""Adam's moments for a run that continues from committed weights (``FROM_MODEL``).

A shipped model (``models/``) has its weights, not Caffe's ``.solverstate``, so Adam's two
moments are lost (a checkpoint carries its solver state and goes on with it instead, exactly).
Restarting them from zero at iteration N is not a fresh Adam start: Caffe's bias correction
uses the global iteration (``t = N + 1``, a correction of 1), so a zero history gives steps of
``lr x (1 - b1^k) / sqrt(1 - b2^k)`` on every weight -- 3.2 x lr at the first update, still
about 5 x lr after 30 and 1.3 x lr after 1,000 -- whatever the gradient's noise.  Measured on
``red10_denoise-s30`` restarted at 18,466 iterations: the validation PSNR fell from 29.99 to
27.00 dB within 34 iterations and was still 0.34 dB short 1,534 iterations later.

Instead :func:`estimate` gives the moments a long Adam run would hold: the gradients of the
training batches just before iteration N in the run's schedule (the ones the run last trained
on), at the committed weights (held: nothing is updated), averaged as Adam averages them
(exponential, ``b1``/``b2``), then bias-corrected for the number of batches.  The run then
resumes with Caffe's own code, from a solver state holding these moments (docs/training.md).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .caffeio import pycaffe

#: training batches whose gradients estimate the moments (the first moment's memory is
#: about 10 batches, the second's 1,000; 100 batches cost RED10 a few minutes on 2 cores)
BATCHES = 100


def estimate(train_net: Path, weights: Path, batches: int, iter_size: int, beta1: float,
             beta2: float) -> list[np.ndarray]:
    """Adam's history for ``weights``: the first moments of every learnable blob, then the
    second moments (Caffe's ``history`` order), from ``batches`` iterations of the training
    net ``train_net`` (which reads the batches to use, in order; each iteration accumulates
    ``iter_size`` batches, as Caffe's solver does).  Blobs are returned float32, bias-corrected;
    a progress bar shows on a terminal."""
    from tqdm import tqdm
    caffe = pycaffe()
    net = caffe.Net(str(train_net), str(weights), caffe.TRAIN)
    blobs = [b for layer in net.params.values() for b in layer]
    m = [np.zeros(b.data.shape, np.float64) for b in blobs]
    v = [np.zeros(b.data.shape, np.float64) for b in blobs]
    for _ in tqdm(range(batches), desc="Adam moments", unit="batch", disable=None, leave=False):
        net.clear_param_diffs()
        for _ in range(iter_size):
            net.forward()
            net.backward()
        for k, b in enumerate(blobs):
            g = b.diff.astype(np.float64) / iter_size
            m[k] = beta1 * m[k] + (1 - beta1) * g
            v[k] = beta2 * v[k] + (1 - beta2) * g * g
    c1, c2 = 1 - beta1 ** batches, 1 - beta2 ** batches
    del net
    return [(x / c1).astype(np.float32) for x in m] + [(x / c2).astype(np.float32) for x in v]
