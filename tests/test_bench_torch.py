"""The optional PyTorch comparison of `make bench` trains the same network as Caffe.

Skipped where PyTorch is not installed (it is not a dependency of the project)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from rednet import bench_torch, netgen, refnet
from rednet.errors import UserError
from rednet.netgen import NetConfig, PRESETS

torch = pytest.importorskip("torch")


def _caffe_net(caffe, tmp_path, cfg, h, w, seed):
    p = tmp_path / f"{cfg.name}.prototxt"
    p.write_text(netgen.render_deploy(cfg, (h, w)))
    net = caffe.Net(str(p), caffe.TEST)
    shapes = {k: (v[0].data.shape, v[1].data.shape) for k, v in net.params.items()}
    for k, (wt, b) in refnet.random_params(cfg, np.random.default_rng(seed), shapes).items():
        net.params[k][0].data[...] = wt
        net.params[k][1].data[...] = b
    return net


@pytest.mark.parametrize("cfg", [NetConfig("r10", depth=10, width=8, skip=None),
                                 NetConfig("r30", depth=30, width=8),
                                 NetConfig("r12k4", depth=12, width=6, skip=4)], ids=lambda c: c.name)
def test_same_function_as_caffe(caffe, tmp_path, cfg):
    h, w = 23, 31
    net = _caffe_net(caffe, tmp_path, cfg, h, w, seed=3)
    x = np.random.default_rng(4).random((2, 1, h, w)).astype(np.float32)
    net.blobs["data"].reshape(*x.shape)
    net.blobs["data"].data[...] = x
    want = net.forward()["output"].copy()
    model = bench_torch.build(cfg)
    bench_torch.load_caffe_params(model, net)
    with torch.no_grad():
        got = model(torch.from_numpy(x)).numpy()
    assert np.abs(want - x).max() > 0.01                      # the net does something
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    # and the comparison can fail: other wiring, other output
    other = bench_torch.build(dataclasses.replace(cfg, skip=2 if cfg.skip != 2 else None))
    bench_torch.load_caffe_params(other, net)
    with torch.no_grad():
        assert np.abs(other(torch.from_numpy(x)).numpy() - want).max() > 1e-2


def test_parameter_count_equals_the_presets():
    for name in ("red10", "red30", "red30-official"):
        cfg = PRESETS[name]
        n = cfg.depth // 2
        expect = (cfg.channels * cfg.width * 9 + cfg.width) + (n - 1) * (cfg.width ** 2 * 9 + cfg.width) * 2 \
            + (cfg.width * cfg.channels * 9 + cfg.channels)
        assert sum(p.numel() for p in bench_torch.build(cfg).parameters()) == expect


def test_train_step_rate_runs_and_learns_nothing_odd():
    r = bench_torch.train_step_rate(NetConfig("t", depth=6, width=8), batch=4, patch=20, iters=2, warmup=1)
    assert r["s_per_iter"] > 0 and r["patches_per_s"] == pytest.approx(4 / r["s_per_iter"])
    assert r["framework"].startswith("PyTorch")


def test_channels_last_trains_the_same_net_in_nhwc():
    """The ``pytorch-cl`` engine: the same step with weights and activations in channels_last
    (NHWC strides), the same loss as NCHW from the same seed, and a bad format is named."""
    cfg = NetConfig("t", depth=6, width=8)
    m = bench_torch.build(cfg).to(memory_format=torch.channels_last)
    assert m.convs[1].weight.is_contiguous(memory_format=torch.channels_last)
    assert not m.convs[1].weight.is_contiguous()
    r = bench_torch.train_step_rate(cfg, batch=4, patch=20, iters=2, warmup=1, memory_format="channels_last")
    assert r["memory_format"] == "channels_last" and r["s_per_iter"] > 0
    nchw = bench_torch.train_step_rate(cfg, batch=4, patch=20, iters=2, warmup=1)
    assert nchw["memory_format"] == "contiguous" and r["last_loss"] > 0
    assert r["last_loss"] == pytest.approx(nchw["last_loss"], rel=1e-4)
    assert bench_torch.MEMORY_FORMATS == {"pytorch": "contiguous", "pytorch-cl": "channels_last"}
    with pytest.raises(UserError, match="memory_format='nhwc'"):
        bench_torch.train_step_rate(cfg, batch=4, patch=20, iters=1, warmup=0, memory_format="nhwc")


def test_unsupported_variants_are_named():
    with pytest.raises(UserError, match="stride"):
        bench_torch.build(NetConfig("s", depth=10, width=8, stride=2, down=1))
    with pytest.raises(UserError, match="decoder"):
        bench_torch.build(NetConfig("c", depth=10, width=8, decoder="conv"))
