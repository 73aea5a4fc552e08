"""The foundation is real: the stock caffe binary runs, pycaffe computes what numpy
computes, and Caffe's HDF5Data layer reads back what h5py wrote."""
from __future__ import annotations

import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_caffe_binary_version():
    out = subprocess.run([str(ROOT / "bin" / "caffe"), "--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "version" in (out.stdout + out.stderr)


def test_caffe_binary_is_cpu_build_with_hdf5():
    # `caffe device_query` is GPU-only; the CPU build must refuse `-gpu` usage politely,
    # and the binary must link the HDF5 library (HDF5Data is how training data arrives).
    env_file = (ROOT / ".caffe" / "env").read_text()
    caffe_bin = next(l.split("=", 1)[1].strip("'") for l in env_file.splitlines() if l.startswith("CAFFE_BIN="))
    # resolved: ldd takes $ORIGIN (the binary's rpath) from the path it is given, not from the
    # file a symlink points at (a bring-your-own caffe may be a link)
    caffe_bin = str(Path(caffe_bin).resolve())
    libs = subprocess.run(["ldd", caffe_bin], capture_output=True, text=True).stdout
    assert "libcaffe" in libs
    libcaffe = next(l.split("=>")[1].split()[0] for l in libs.splitlines() if "libcaffe" in l)
    deps = subprocess.run(["ldd", libcaffe], capture_output=True, text=True).stdout
    assert "libhdf5" in deps
    assert "libcudart" not in deps


TINY_NET = """
name: "tiny"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 6 dim: 5 } } }
layer { name: "target" type: "Input" top: "target" input_param { shape { dim: 2 dim: 4 dim: 6 dim: 5 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param { num_output: 4 kernel_size: 3 pad: 1 stride: 1
    weight_filler { type: "gaussian" std: 0.3 } bias_filler { type: "gaussian" std: 0.1 } } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "relu" }
layer { name: "loss" type: "EuclideanLoss" bottom: "relu" bottom: "target" top: "loss" }
"""


def _conv2d(x, w, b):
    """Plain numpy cross-correlation, pad 1, stride 1: x (N,C,H,W), w (O,C,3,3)."""
    n, c, h, wd = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros((n, w.shape[0], h, wd))
    for i in range(3):
        for j in range(3):
            out += np.einsum("nchw,oc->nohw", xp[:, :, i:i + h, j:j + wd], w[:, :, i, j])
    return out + b[None, :, None, None]


def test_pycaffe_forward_backward_matches_numpy(tmp_path, caffe):
    proto = tmp_path / "tiny.prototxt"
    proto.write_text(TINY_NET)
    net = caffe.Net(str(proto), caffe.TRAIN)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 6, 5)).astype(np.float32)
    t = rng.standard_normal((2, 4, 6, 5)).astype(np.float32)
    net.blobs["data"].data[...] = x
    net.blobs["target"].data[...] = t
    loss = float(net.forward()["loss"])
    net.backward()

    w = net.params["conv"][0].data.astype(np.float64)
    b = net.params["conv"][1].data.astype(np.float64)
    z = _conv2d(x.astype(np.float64), w, b)
    r = np.maximum(z, 0)
    diff = r - t
    expected_loss = (diff ** 2).sum() / (2 * x.shape[0])
    assert loss == pytest.approx(expected_loss, rel=1e-5)
    np.testing.assert_allclose(net.blobs["relu"].data, r, rtol=1e-5, atol=1e-5)

    # gradients: dL/dz = diff/N where z > 0
    gz = diff / x.shape[0] * (z > 0)
    gb = gz.sum(axis=(0, 2, 3))
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    gw = np.zeros_like(w)
    for i in range(3):
        for j in range(3):
            gw[:, :, i, j] = np.einsum("nohw,nchw->oc", gz, xp[:, :, i:i + 6, j:j + 5])
    np.testing.assert_allclose(net.params["conv"][1].diff, gb, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(net.params["conv"][0].diff, gw, rtol=1e-4, atol=1e-5)


def test_hdf5data_layer_reads_h5py_file(tmp_path, caffe):
    rng = np.random.default_rng(1)
    data = rng.standard_normal((6, 1, 5, 7)).astype(np.float32)
    label = rng.random((6, 1, 5, 7)).astype(np.float32)
    h5 = tmp_path / "tiny.h5"
    with h5py.File(h5, "w") as f:
        f["data"] = data
        f["label"] = label
    lst = tmp_path / "list.txt"
    lst.write_text(f"{h5}\n")
    proto = tmp_path / "h5net.prototxt"
    proto.write_text(f"""
layer {{ name: "d" type: "HDF5Data" top: "data" top: "label"
  hdf5_data_param {{ source: "{lst}" batch_size: 3 shuffle: false }} }}
""")
    net = caffe.Net(str(proto), caffe.TEST)
    for start in (0, 3, 0):  # two batches, then wrap around
        net.forward()
        np.testing.assert_array_equal(net.blobs["data"].data, data[start:start + 3])
        np.testing.assert_array_equal(net.blobs["label"].data, label[start:start + 3])


def test_eltwise_refuses_mismatched_shapes(tmp_path):
    """Stock BVLC Caffe checks Eltwise input shapes (brocolli-caffe had the check commented
    out; tools/caffe_build/patches restores it): a mismatched sum must stop the binary."""
    proto = tmp_path / "bad_sum.prototxt"
    proto.write_text("""
layer { name: "a" type: "Input" top: "a" input_param { shape { dim: 1 dim: 1 dim: 4 dim: 4 } } }
layer { name: "b" type: "Input" top: "b" input_param { shape { dim: 1 dim: 1 dim: 5 dim: 5 } } }
layer { name: "sum" type: "Eltwise" bottom: "a" bottom: "b" top: "sum" eltwise_param { operation: SUM } }
""")
    out = subprocess.run([str(ROOT / "bin" / "caffe"), "time", "-model", str(proto), "-iterations", "1"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "Check failed" in out.stderr and "eltwise_layer" in out.stderr
