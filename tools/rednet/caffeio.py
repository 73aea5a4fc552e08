"""Caffe I/O: read prototxt and caffemodel files and the shapes of their parameter blobs.

The one place that imports ``caffe.proto`` / ``google.protobuf`` / pycaffe for reading files:

- :func:`read_prototxt` parses a text ``SolverParameter`` / ``NetParameter`` (train, netgen,
  bench); :func:`to_text` writes one back;
- :func:`read_netparam` parses a deploy prototxt or a binary ``.caffemodel`` (restore, zoo);
- :func:`caffemodel_shapes` (what a ``.caffemodel`` stores) and :func:`param_shapes` (what a
  deploy net wants, via pycaffe), :func:`blob_shape` / :func:`blob_len` of one ``BlobProto``
  (new ``shape`` and pre-2015 ``num/channels/height/width`` forms);
- :func:`hdf5_layers` of a net.

Every problem is a one-line :class:`~rednet.errors.UserError`.
"""
from __future__ import annotations

import os
from pathlib import Path

from . import paths
from .errors import UserError


def pb():
    """``(caffe_pb2, text_format)``; a one-line error when pycaffe is not set up."""
    os.environ.setdefault("GLOG_minloglevel", "2")
    try:
        from caffe.proto import caffe_pb2
        from google.protobuf import text_format
    except ImportError as e:  # pragma: no cover - set-up problem
        raise UserError(f"pycaffe: cannot import caffe.proto ({e}); run 'make setup' and use bin/python") from None
    return caffe_pb2, text_format


def pycaffe():
    """The ``caffe`` module in CPU mode, quiet."""
    os.environ.setdefault("GLOG_minloglevel", "2")
    try:
        import caffe
    except ImportError as e:  # pragma: no cover - set-up problem
        raise UserError(f"pycaffe: cannot import caffe ({e}); run 'make setup' and use bin/python") from e
    caffe.set_mode_cpu()
    return caffe


def parse_prototxt(text: str, kind: str = "NetParameter", where: str = "prototxt"):
    """Parse prototxt ``text`` into ``caffe_pb2.<kind>``; ``where`` names it in the error."""
    caffe_pb2, text_format = pb()
    msg = getattr(caffe_pb2, kind)()
    try:
        text_format.Merge(text, msg)
    except text_format.ParseError as e:
        raise UserError(f"{where}: not a valid {kind} prototxt ({e})") from None
    return msg


def read_prototxt(path: Path, kind: str = "NetParameter"):
    """Parse a text prototxt file into ``caffe_pb2.<kind>`` (SolverParameter or NetParameter)."""
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise UserError(f"{paths.rel(path)}: cannot read ({e.strerror})") from None
    return parse_prototxt(text, kind, paths.rel(path))


def to_text(msg) -> str:
    _, text_format = pb()
    return text_format.MessageToString(msg)


def read_netparam(path: Path, binary: bool):
    """A ``NetParameter`` from a binary ``.caffemodel`` (``binary``) or a text prototxt."""
    caffe_pb2, text_format = pb()
    msg = caffe_pb2.NetParameter()
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror})") from None
    try:
        if binary:
            msg.ParseFromString(data)
        else:
            text_format.Merge(data.decode(), msg)
    except Exception as e:  # protobuf raises DecodeError / ParseError
        kind = "a binary caffemodel (NetParameter)" if binary else "a prototxt (NetParameter)"
        raise UserError(f"{path}: not {kind}: {str(e).splitlines()[0][:120]}") from None
    return msg


def blob_shape(b) -> tuple[int, ...]:
    """The shape of a ``BlobProto``: its ``shape``, else the pre-2015 4-D num/channels/height/width."""
    if b.HasField("shape"):
        return tuple(int(d) for d in b.shape.dim)
    return (int(b.num), int(b.channels), int(b.height), int(b.width))


def blob_len(b) -> int:
    """How many values a ``BlobProto`` holds (float or double)."""
    return len(b.data) if len(b.data) else len(b.double_data)


def caffemodel_shapes(path: Path) -> dict[str, list[tuple]]:
    """Layer name -> list of parameter blob shapes stored in a ``.caffemodel``."""
    msg = read_netparam(path, binary=True)
    out: dict[str, list[tuple]] = {}
    for layer in list(msg.layer) + list(msg.layers):   # new and V1 layer fields
        if len(layer.blobs):
            out[layer.name] = [blob_shape(b) for b in layer.blobs]
    if not out:
        raise UserError(f"{path}: holds no trained layers (not a caffemodel?)")
    return out


def param_shapes(deploy: Path) -> list[tuple[str, list[tuple[int, ...]]]]:
    """Learnable layers of a net and their parameter blob shapes (via pycaffe)."""
    caffe = pycaffe()
    net = caffe.Net(str(deploy), caffe.TEST)
    return [(name, [tuple(b.data.shape) for b in blobs]) for name, blobs in net.params.items()]


def hdf5_layers(net) -> list:
    return [l for l in net.layer if l.type == "HDF5Data"]
