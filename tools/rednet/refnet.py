"""An independent numpy forward pass of RED-Net, to check the generated Caffe nets.

Nothing here reads the templates or :meth:`rednet.netgen.NetConfig.layers`: the wiring is
re-derived from the configuration's fields following the paper and the README description
of the released net, and convolution / transposed convolution are written from their
definitions (a loop over kernel taps; Caffe uses im2col + GEMM).  Tests give Caffe and this
module the same random weights and compare the outputs.

Conventions (Caffe's):
- Convolution weights ``(C_out, C_in, kh, kw)``; ``y[o, y, x] = b[o] + sum_{c,i,j}
  W[o, c, i, j] * xpad[c, y*s + i, x*s + j]`` (cross-correlation), output size
  ``(H + 2p - k) // s + 1``.
- Deconvolution (transposed convolution) weights ``(C_in, C_out, kh, kw)``: every input
  pixel ``x[c, y, x]`` scatters ``x * W[c, o, :, :]`` onto the output at
  ``(y*s - p, x*s - p)``; output size ``s*(H - 1) + k - 2p``.  With stride 1 this equals a
  convolution with the kernel flipped in both axes, in/out swapped and pad ``k - 1 - p``.
"""
from __future__ import annotations

import numpy as np


def conv2d(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int = 1, pad: int = 1) -> np.ndarray:
    """Caffe Convolution on one image ``x`` (C, H, W) with weights (O, C, k, k)."""
    c, h, wd = x.shape
    o, c2, kh, kw = w.shape
    assert c == c2, (x.shape, w.shape)
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    ho = (h + 2 * pad - kh) // stride + 1
    wo = (wd + 2 * pad - kw) // stride + 1
    y = np.zeros((o, ho, wo), dtype=np.float64)
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride]
            y += np.einsum("oc,chw->ohw", w[:, :, i, j], patch)
    return y + b[:, None, None]


def deconv2d(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int = 1, pad: int = 1) -> np.ndarray:
    """Caffe Deconvolution on one image ``x`` (C, H, W) with weights (C, O, k, k): scatter-add."""
    c, h, wd = x.shape
    c2, o, kh, kw = w.shape
    assert c == c2, (x.shape, w.shape)
    full = np.zeros((o, stride * (h - 1) + kh, stride * (wd - 1) + kw), dtype=np.float64)
    for i in range(kh):
        for j in range(kw):
            full[:, i:i + stride * (h - 1) + 1:stride, j:j + stride * (wd - 1) + 1:stride] += \
                np.einsum("co,chw->ohw", w[:, :, i, j], x)
    ho = stride * (h - 1) + kh - 2 * pad
    wo = stride * (wd - 1) + kw - 2 * pad
    return full[:, pad:pad + ho, pad:pad + wo] + b[:, None, None]


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0)


def mirror_source(cfg, t: int) -> int | None:
    """The mirrored skip into layer t: encoder layer n-i into decoder layer n+i (n = depth/2)
    when n-i is a multiple of the span k; None for encoder layers and where there is none."""
    n, k = cfg.depth // 2, cfg.skip
    if cfg.shortcuts != "mirror" or k is None or t <= n:
        return None
    j = n - (t - n)
    return j if (1 <= j < n and j % k == 0) else None


def forward(cfg, params: dict, image: np.ndarray) -> dict:
    """Run RED-Net ``cfg`` on ``image`` (C, H, W) with ``params[name] = (W, b)``.

    Mirror skips: ``ReLU(c_j + ReLU(d_i))`` (the released ``REDNet_ch1.prototxt``); He et al.'s
    sequential shortcuts: ``ReLU(d + x)``.
    Returns the blobs: ``c1..``, ``d1..`` (decoder outputs after skip sum and ReLU) and
    ``output`` (restored image; equals the last layer's output without input residual).
    """
    x0 = np.asarray(image, dtype=np.float64)
    n = cfg.depth // 2
    k = cfg.skip
    s = cfg.stride
    m = cfg.down if s > 1 else 0
    if cfg.depth % 2:
        # An odd depth only exists as a plain stack of 3x3 stride-1 convolutions (the paper's
        # 5-layer fully convolutional net, Sec. 2.1.1): no encoder/decoder halves to mirror.
        if cfg.decoder != "conv" or s > 1 or (cfg.shortcuts == "mirror" and k is not None):
            raise ValueError(f"depth {cfg.depth}: an odd depth is a convolution-only net "
                             f"without strides or mirrored skips")
    blobs = {"data": x0}
    outs = {0: x0}          # layer number (1..depth) -> output after its sum and ReLU
    h = x0

    def seq_source(t):
        """He-style block shortcut into layer t: from layer t-k when t-k = 1 + k*q."""
        if cfg.shortcuts != "sequential" or k is None or t == cfg.depth:
            return None
        a = t - k
        return a if (a >= 1 and (a - 1) % k == 0) else None

    for t in range(1, cfg.depth + 1):
        if cfg.depth % 2:
            name = f"conv{t}"                 # conv1 .. conv<depth>, one chain
            W, b = params[name]
            h = conv2d(h, W, b, stride=1, pad=1)
        elif t <= n:
            name = f"conv{t}"
            W, b = params[name]
            h = conv2d(h, W, b, stride=s if t <= m else 1, pad=1)
        else:
            i = t - n
            if cfg.decoder == "conv":
                name = f"conv{t}"
                W, b = params[name]
                h = conv2d(h, W, b, stride=1, pad=1)
            else:
                name = f"deconv{i}"
                W, b = params[name]
                h = deconv2d(h, W, b, stride=s if i > n - m else 1, pad=1)
        if t == cfg.depth:
            break
        j = mirror_source(cfg, t)
        if j is not None:
            # the released net: Deconvolution -> ReLU -> SUM with c_j -> ReLU
            h = relu(h) + outs[j]
        a = seq_source(t)
        if a is not None:
            h = h + outs[a]
        h = relu(h)
        outs[t] = h
        blobs[f"c{t}" if t <= n or cfg.decoder == "conv" else f"d{t - n}"] = h
    blobs["last"] = h
    blobs["output"] = h + x0 if cfg.input_residual else h
    return blobs


def random_params(cfg, rng: np.random.Generator, shapes: dict) -> dict:
    """Random weights and biases for the blob ``shapes`` (name -> (W shape, b shape)).

    Scale std sqrt(1 / fan_in) so activations stay of order one through 30
    layers; biases uniform in [-0.1, 0.1].
    """
    out = {}
    for name, (ws, bs) in shapes.items():
        fan_in = int(np.prod(ws[1:])) if name.startswith("conv") else ws[0] * ws[2] * ws[3]
        W = rng.standard_normal(ws) * np.sqrt(1.0 / fan_in)
        b = rng.uniform(-0.1, 0.1, bs)
        out[name] = (W.astype(np.float32), b.astype(np.float32))
    return out
