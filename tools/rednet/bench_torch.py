"""The same RED-Net training step in PyTorch, on the same CPU: the optional comparison of `make bench`.

`make bench` adds a PyTorch row when ``import torch`` works in the project's Python; the
project never needs PyTorch otherwise (install it into .venv by hand: a CPU build, e.g.
``bin/python -m pip install torch --index-url https://download.pytorch.org/whl/cpu``;
measured here with a local ``torch==2.13.0+cpu`` wheel).

What is compared: one training iteration as `caffe train` does it for the bench: a batch of
16 single-channel 50x50 patches, forward through the same net, Caffe's EuclideanLoss
(sum of squared differences / 2N), backward, and an Adam update (lr 1e-4, betas 0.9/0.999,
eps 1e-8) of every weight and bias. The net is built from the same preset
(:class:`rednet.netgen.NetConfig`) with the wiring of :func:`rednet.refnet.forward`: Conv2d
for the encoder, ConvTranspose2d for the decoder (its weight layout (C_in, C_out, k, k) and
scatter semantics are Caffe Deconvolution's, so Caffe weights copy over unchanged), the
mirrored skips added after the deconvolution's own ReLU and rectified again (the released
net's wiring), and the input added to the last layer. A test loads a
Caffe net's weights into it and checks that both compute the same output.

Only what the bench runs is supported: stride 1, deconvolution decoder, mirrored skips or
none. Other variants raise a UserError naming the field.
"""
from __future__ import annotations

import time

from .errors import UserError
from .refnet import mirror_source


def torch_version() -> str | None:
    """The installed PyTorch version, or None when it cannot be imported."""
    try:
        import torch
    except Exception:   # ImportError, or a broken install (missing shared libraries)
        return None
    return str(torch.__version__)


def build(cfg):
    """A ``torch.nn.Module`` computing RED-Net ``cfg`` (float32, CPU)."""
    import torch
    from torch import nn

    for field, ok, allowed in (("stride", cfg.stride == 1, "1"), ("decoder", cfg.decoder == "deconv", "deconv"),
                               ("shortcuts", cfg.shortcuts == "mirror" or cfg.skip is None, "mirror or no skips")):
        if not ok:
            raise UserError(f"{cfg.name}: {field}={getattr(cfg, field)!r} is not supported by the PyTorch "
                            f"comparison (expected {allowed})")
    n = cfg.depth // 2

    class RED(nn.Module):
        def __init__(self):
            super().__init__()
            self.convs = nn.ModuleList(
                nn.Conv2d(cfg.channels if t == 1 else cfg.width, cfg.width, 3, padding=1) for t in range(1, n + 1))
            self.deconvs = nn.ModuleList(
                nn.ConvTranspose2d(cfg.width, cfg.channels if i == n else cfg.width, 3, padding=1)
                for i in range(1, n + 1))

        def forward(self, x):
            outs = {}
            h = x
            for t in range(1, cfg.depth + 1):
                layer = self.convs[t - 1] if t <= n else self.deconvs[t - n - 1]
                h = layer(h)
                if t == cfg.depth:
                    break
                j = mirror_source(cfg, t)
                if j is not None:
                    # the released net: Deconvolution -> ReLU -> SUM with c_j -> ReLU
                    h = torch.relu(h) + outs[j]
                h = torch.relu(h)
                if t < n:
                    outs[t] = h
            return h + x if cfg.input_residual else h

    return RED()


def load_caffe_params(model, net) -> None:
    """Copy the weights of a pycaffe ``net`` (layers conv1..convK, deconv1..deconvK) into ``model``."""
    import torch
    n = len(model.convs)
    with torch.no_grad():
        for prefix, layers in (("conv", model.convs), ("deconv", model.deconvs)):
            for i in range(n):
                w, b = net.params[f"{prefix}{i + 1}"]
                layers[i].weight.copy_(torch.from_numpy(w.data.copy()))
                layers[i].bias.copy_(torch.from_numpy(b.data.reshape(-1).copy()))


#: the memory formats the bench times (its engines ``pytorch`` and ``pytorch-cl``)
MEMORY_FORMATS = {"pytorch": "contiguous", "pytorch-cl": "channels_last"}


def train_step_rate(cfg, batch: int = 16, patch: int = 50, iters: int = 10, warmup: int = 3,
                    threads: int | None = None, seed: int = 0, memory_format: str = "contiguous") -> dict:
    """Seconds per training iteration of ``cfg`` in PyTorch (mean over ``iters`` after ``warmup``).

    Adam with Caffe's defaults for this project (lr 1e-4, betas 0.9/0.999, eps 1e-8, the bias
    learning-rate multiplier 0.1 of the generated nets) and EuclideanLoss.  ``memory_format``:
    ``contiguous`` (NCHW) or ``channels_last`` (NHWC: the weights, the input and the target in
    that format, so oneDNN's convolutions in PyTorch take and give NHWC without reorders).
    """
    import os

    import torch
    if threads is None:
        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(threads)
    formats = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}
    if memory_format not in formats:
        raise UserError(f"memory_format={memory_format!r}: expected one of {', '.join(formats)}")
    fmt = formats[memory_format]
    torch.manual_seed(seed)
    model = build(cfg).to(memory_format=fmt)
    weights = [p for name, p in model.named_parameters() if name.endswith("weight")]
    biases = [p for name, p in model.named_parameters() if name.endswith("bias")]
    opt = torch.optim.Adam([{"params": weights, "lr": 1e-4}, {"params": biases, "lr": 1e-5}],
                           betas=(0.9, 0.999), eps=1e-8)
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, cfg.channels, patch, patch, generator=g)
    y = x + 0.1 * torch.randn(batch, cfg.channels, patch, patch, generator=g)
    x, y = x.contiguous(memory_format=fmt), y.contiguous(memory_format=fmt)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = ((model(x) - y) ** 2).sum() / (2 * batch)
        loss.backward()
        opt.step()
        return loss.detach().item()

    loss = None
    for _ in range(warmup):
        loss = step()
    t0 = time.perf_counter()
    for _ in range(iters):
        loss = step()
    spi = (time.perf_counter() - t0) / iters
    return {"framework": f"PyTorch {torch.__version__}", "threads": threads, "iterations": iters,
            "warmup": warmup, "s_per_iter": spi, "patches_per_s": batch / spi, "memory_format": memory_format,
            "last_loss": loss,
            "mkldnn": bool(torch.backends.mkldnn.is_available())}
