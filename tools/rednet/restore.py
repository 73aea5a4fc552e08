"""Restore images with a trained RED-Net in pycaffe: ``bin/python -m rednet restore``.

- :func:`find_model` turns ``--model`` (a ``.caffemodel``, a run folder ``runs/<name>/``, or
  nothing: the model :mod:`rednet.models` prefers for the task) into a deploy net and weights.
- :func:`check_weights` reads the caffemodel's ``NetParameter`` with ``caffe_pb2`` and
  compares every parameter blob with the deploy net's, so a mismatched file is a one-line
  error naming the layers instead of a Caffe ``CHECK`` abort.
- :class:`Restorer` runs the deploy net on an image of any size (the input blob is
  reshaped), in overlapping tiles when the whole image would need more memory than
  ``max_memory_mb``; the overlap is the net's receptive-field radius, so the tiled result
  equals the untiled one. :meth:`Restorer.restore` averages the 8 orientations (4 rotations
  of the image and of its mirror, each mapped back), as the authors' ``netforward.m``; the
  orientations of the same shape go through the net as one batch (as many as the memory
  budget allows, :meth:`Restorer.plan`), which the batch-parallel Caffe build runs in parallel.
- :func:`restore_file` is what the command does with one file: denoising or SR, gray or
  colour (SR: luminance through the net, chroma by bicubic).
"""
from __future__ import annotations

import errno
import math
import os
from pathlib import Path

import numpy as np

from . import matlab, models, zoo
from .caffeio import caffemodel_shapes, pycaffe, read_netparam
from .errors import UserError, atomic_path, check_writable
from .paths import rel
from .models import ModelSpec, from_caffemodel, from_run, from_zoo, mixed_task
from .tasks import TASKS, Task, get_task, task_name

IMAGE_SUFFIXES = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".ppm", ".pgm")
DEFAULT_MAX_MEMORY_MB = 2048


# --------------------------------------------------------------------------- caffe
def _same_shape(a: tuple, b: tuple) -> bool:
    if a == b:
        return True
    # legacy 4-D blobs (1, 1, 1, N) for a bias of shape (N,)
    strip = lambda s: tuple(d for d in s if d != 1)  # noqa: E731
    return strip(a) == strip(b) and np.prod(a) == np.prod(b)


def check_weights(net, deploy: Path, weights: Path) -> None:
    """Raise :class:`UserError` naming every missing, extra or mis-shaped layer."""
    stored = caffemodel_shapes(weights)
    missing, misshaped = [], []
    for name, blobs in net.params.items():
        want = [tuple(b.data.shape) for b in blobs]
        have = stored.get(name)
        if have is None:
            missing.append(name)
        elif len(have) != len(want) or not all(_same_shape(h, w) for h, w in zip(have, want)):
            fmt = lambda shapes: "+".join("x".join(map(str, s)) for s in shapes)  # noqa: E731
            misshaped.append(f"{name} (file {fmt(have)}, net {fmt(want)})")
    extra = [n for n in stored if n not in net.params]
    problems = []
    if missing:
        problems.append("missing layers " + ", ".join(missing))
    if misshaped:
        problems.append("mis-shaped " + ", ".join(misshaped))
    if extra:
        problems.append("layers not in the net " + ", ".join(extra))
    if problems:
        raise UserError(f"{rel(weights)}: does not match {rel(deploy)}: " + "; ".join(problems))


def receptive_radius(deploy: Path) -> int | None:
    """Pixels on each side that one output pixel depends on, or None when not tileable.

    The sum over the Convolution/Deconvolution layers of ``dilation * max(pad, k-1-pad)``:
    a 3x3 layer with pad 1 adds 1 pixel, so RED10/20/30 have a radius of 10/20/30 (every
    layer lies on the longest path, through the decoder). Nets with strides, pooling or
    crops return None: they are run on the whole image.
    """
    msg = read_netparam(deploy, binary=False)
    radius = 0
    for layer in msg.layer:
        if layer.type in ("Convolution", "Deconvolution"):
            p = layer.convolution_param
            ks = list(p.kernel_size) or [p.kernel_h or 1]
            pads = list(p.pad) or [p.pad_h or 0]
            strides = list(p.stride) or [p.stride_h or 1]
            dil = list(p.dilation) or [1]
            if any(s != 1 for s in strides):
                return None
            k, pad, d = max(ks), max(pads), max(dil)
            radius += d * max(pad, k - 1 - pad)
        elif layer.type in ("Pooling", "Crop", "InnerProduct", "Resize", "Interp"):
            return None
    return radius


def size_factor(deploy: Path) -> int:
    """The product of the strides of the net's Convolution and Pooling layers: input sides
    must be multiples of it (1 for the stride-1 RED-Nets)."""
    f = 1
    for layer in read_netparam(deploy, binary=False).layer:
        if layer.type == "Convolution":
            p = layer.convolution_param
            f *= max(list(p.stride) or [p.stride_h or 1, p.stride_w or 1])
        elif layer.type == "Pooling":
            p = layer.pooling_param
            f *= max(p.stride, p.stride_h, p.stride_w, 1)
    return f


# --------------------------------------------------------------------------- finding models
# (rednet.models finds models, with the one order of preference; the names stay here for
# the code that imports them from restore)


def covers(trained: Task, task: Task) -> bool:
    """A model trained for ``trained`` restores ``task``: the same kind, and the level one of
    its own, or for a model of several levels (the mixed ones) any level between its lowest
    and highest (a RED-Net is not told the level: sigma 15 lies within what sigma 10-70 taught)."""
    if trained.kind != task.kind:
        return False
    level = task.levels[0]
    if len(trained.levels) > 1:
        return min(trained.levels) <= level <= max(trained.levels)
    return level in trained.levels


def find_model(model: str | None, task: Task, net: str | None = None,
               deploy: str | None = None) -> ModelSpec:
    """Resolve ``--model`` (file, run folder, or None = search) for ``task``; refuse a model
    trained for another task."""
    if model is None:
        spec = models.pick_model(task.name, net)
        if spec is None:
            mixed = mixed_task(task.kind)
            spec = models.pick_model(mixed, net) if covers(TASKS[mixed], task) else None
        if spec is None:
            raise UserError(f"no model for task {task.name}" + (f" and net {net}" if net else "")
                            + f": none in {rel(models.MODELS)}/ (the zoo) or in "
                            f"{rel(models.RUNS)}/*/ (train one with 'make train', or give --model)")
        return spec
    p = Path(model)
    if p.is_dir() and (p / zoo.CARD).is_file():
        spec = from_zoo(p)
    elif p.is_dir():
        spec = from_run(p)
    elif p.is_file():
        spec = from_caffemodel(p, Path(deploy) if deploy else None)
    else:
        raise UserError(f"--model {model}: no such file or run folder")
    if deploy:
        spec.deploy = Path(deploy)
    if net and spec.net and spec.net != net:
        raise UserError(f"--net {net}: --model {model} was trained as {spec.net}; drop --net or give a {net} model")
    if not spec.deploy.is_file():
        raise UserError(f"{rel(spec.deploy)}: deploy net not found (run 'make nets')")
    if spec.task:
        trained = get_task(spec.task)
        if not covers(trained, task):
            span = (f" (its levels span {min(trained.levels):g} to {max(trained.levels):g})"
                    if trained.kind == task.kind and len(trained.levels) > 1 else "")
            raise UserError(f"--model {model}: trained for {spec.task}, not for {task.name}{span}")
    else:
        print(f"note: nothing says what {model} was trained for (no card or run.json beside it, and it is "
              f"no zoo model's copy): its output is right only if it was trained for {task.name}")
    return spec


# --------------------------------------------------------------------------- the forward pass
#: the 8 orientations: (mirror left-right first?, number of 90-degree rotations)
ORIENTATIONS = tuple((flip, k) for flip in (False, True) for k in range(4))


def orient(x: np.ndarray, flip: bool, k: int) -> np.ndarray:
    """Rotate the last two axes by k*90 degrees, after a left-right mirror if ``flip``."""
    if flip:
        x = x[..., ::-1]
    return np.rot90(x, k, axes=(-2, -1))


def unorient(y: np.ndarray, flip: bool, k: int) -> np.ndarray:
    """The inverse of :func:`orient`."""
    y = np.rot90(y, -k, axes=(-2, -1))
    if flip:
        y = y[..., ::-1]
    return y


def _is_fast_build(caffe) -> bool:
    """Whether the imported pycaffe is the batch-parallel build (``.caffe-fast``), not stock."""
    return ".caffe-fast" in Path(caffe.__file__).as_posix()


def _uses_dnnl(caffe) -> bool:
    """Whether the imported build runs Convolution and Deconvolution through oneDNN (the fast
    build, unless ``REDNET_DNNL=0``, as its patch 0003 reads it): oneDNN's direct
    convolutions need no im2col buffer, only shared scratch copies of one layer's input and
    output (Caffe allocates a blob's memory on first use, so the unused buffers cost none)."""
    return _is_fast_build(caffe) and os.environ.get("REDNET_DNNL") != "0"


def _batch_threads(caffe) -> int:
    """How many images of a batch the imported Caffe build runs in parallel: 1 for the stock
    build (image after image); for the batch-parallel build (``.caffe-fast``) its OpenMP
    threads (``OMP_NUM_THREADS``, else the CPUs this process may use), as its
    ``batch_threads()`` = min(OpenMP threads, batch)."""
    if not _is_fast_build(caffe):
        return 1
    first = (os.environ.get("OMP_NUM_THREADS") or "").split(",")[0].strip()
    if first.isdigit() and int(first) > 0:
        return int(first)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


class Restorer:
    """A deploy net with weights, run on images of any size.

    ``x`` is C x H x W (or H x W for one channel) float32 in [0, 1] (noise not clipped); the
    result is the net's ``output`` blob (the restored image: the residual is inside the net).
    ``tile``: core tile side in pixels (None: chosen from ``max_memory_mb``; 0: never tile).
    ``batch``: the most images in one forward pass of the ensemble (None: up to the 8
    orientations, as many as ``max_memory_mb`` allows; 1: one at a time).
    ``progress``: a tiled image shows a progress bar over its tiles (stderr).
    """

    def __init__(self, deploy: os.PathLike | str, weights: os.PathLike | str, tile: int | None = None,
                 max_memory_mb: float = DEFAULT_MAX_MEMORY_MB, check: bool = True, progress: bool = True,
                 batch: int | None = None):
        check_budget(tile, max_memory_mb)
        if batch is not None and (not isinstance(batch, (int, np.integer)) or batch < 1):
            raise UserError(f"batch {batch}: expected a number of images >= 1 (None: as many as fit)")
        caffe = pycaffe()
        self.deploy, self.weights = Path(deploy), Path(weights)
        if not self.deploy.is_file():
            raise UserError(f"{self.deploy}: deploy net not found")
        if not self.weights.is_file():
            raise UserError(f"{self.weights}: caffemodel not found")
        read_netparam(self.deploy, binary=False)       # a clear error before Caffe aborts
        self._load_net(check)
        self.input = self.net.inputs[0]
        self.output = self.net.outputs[0]
        self.channels = int(self.net.blobs[self.input].shape[1])
        self.radius = receptive_radius(self.deploy)
        self.factor = size_factor(self.deploy)
        if tile and self.radius and tile < self.radius:
            blowup = ((tile + 2 * self.radius) / tile) ** 2
            raise UserError(f"--tile {tile}: smaller than the net's receptive radius ({self.radius} px), so every "
                            f"tile computes {blowup:.0f}x its own pixels; expected 0 (never tile) or at least "
                            f"{self.radius}")
        self.tile = tile
        self.batch = None if batch is None else int(batch)
        self.max_memory_mb = max_memory_mb
        self.progress = progress
        self.threads = _batch_threads(caffe)
        self.dnnl = _uses_dnnl(caffe)
        self._floats = self._floats_per_pixel()
        self._bytes_per_pixel = self._estimate_bytes_per_pixel()
        #: (batch, C, H, W) of every forward pass run, in order (for tests and the bench)
        self.passes: list[tuple[int, ...]] = []

    def _load_net(self, check: bool = False) -> None:
        """(Re)create the net with its weights (Caffe frees the blobs of an old one); with
        ``check`` the weights file is compared with the net first (one error line, not a
        Caffe abort)."""
        caffe = pycaffe()
        self.net = None
        self.net = caffe.Net(str(self.deploy), caffe.TEST)
        if check:
            check_weights(self.net, self.deploy, self.weights)
        self.net.copy_from(str(self.weights))
        #: floats per pixel that Caffe holds allocated (a blob never shrinks): see _make_room
        self._held = {"blobs": 0, "col": 0, "thread_cols": 0, "dnnl": 0}

    def _floats_per_pixel(self) -> tuple[int, int, int]:
        """float32 values per input pixel of one image: (every blob, every layer's im2col
        buffer, the widest layer's input plus output channels). Stock Caffe keeps one im2col
        buffer per convolution (input channels x kh x kw floats a pixel) for one image at a
        time, whatever the batch; oneDNN copies one layer's input and output at a time."""
        blobs = cols = io = 0
        for name, blob in self.net.blobs.items():
            blobs += int(np.prod(blob.data.shape[1:2] or (1,)))
        for name, params in self.net.params.items():
            shp = params[0].data.shape
            if len(shp) == 4:
                cols += int(shp[1] * shp[2] * shp[3])
                io = max(io, int(shp[0] + shp[1]))
        return blobs, cols, io

    def _held_floats(self, n: int) -> dict[str, int]:
        """Floats per pixel of one image that a forward pass of ``n`` images allocates: the
        blobs n times; with oneDNN (:func:`_uses_dnnl`) its scratch copies, n times, and no
        im2col buffer; else the im2col buffers once (stock), or in the batch-parallel GEMM
        path, when it splits the batch over p = min(n, threads) > 1 threads, p per-thread
        buffers per layer."""
        blobs, cols, io = self._floats
        if self.dnnl:
            return {"blobs": n * blobs, "col": 0, "thread_cols": 0, "dnnl": n * io}
        p = min(n, self.threads)
        return {"blobs": n * blobs, "col": cols if p == 1 else 0, "thread_cols": p * cols if p > 1 else 0,
                "dnnl": 0}

    def bytes_per_pixel(self, n: int = 1) -> float:
        """float32 bytes per pixel of one image for a forward pass of a batch of ``n``."""
        return 4.0 * sum(self._held_floats(n).values())

    def _estimate_bytes_per_pixel(self) -> float:
        """float32 bytes per input pixel of a one-image pass: every blob plus every layer's
        im2col buffer."""
        return self.bytes_per_pixel(1)

    @property
    def _budget_bytes(self) -> float:
        return self.max_memory_mb * 2 ** 20

    def _fits(self, n: int, pixels: int) -> bool:
        return pixels * self.bytes_per_pixel(n) <= self._budget_bytes

    def tile_size(self, h: int, w: int, batch: int = 1) -> int:
        """Core tile side for an h x w image run ``batch`` at a time (>= h and w means: one piece)."""
        if self.tile == 0 or self.radius is None:
            return max(h, w)
        if self.tile:
            return int(self.tile)
        budget = self._budget_bytes / self.bytes_per_pixel(batch)
        if h * w <= budget:
            return max(h, w)
        side = int(math.sqrt(budget)) - 2 * self.radius
        return max(side, 16)

    def check_size(self, h: int, w: int, name: str = "input") -> None:
        """Raise UserError unless an ``h`` x ``w`` input passes the net's strided layers
        (which need multiples of :attr:`factor`; other sizes make Caffe abort on a shape check)."""
        f = self.factor
        if h % f or w % f:
            raise UserError(f"{name}: the net input is {w}x{h} pixels, but {rel(self.deploy)} down-samples "
                            f"by {f} (strided layers) and needs a width and height that are multiples of "
                            f"{f} (e.g. crop to {max(f, w // f * f)}x{max(f, h // f * f)})")

    def plan(self, h: int, w: int, count: int = 1) -> tuple[int, int]:
        """(batch, core tile side) for ``count`` images of h x w (the orientations of one shape).

        - The whole image, in batches as large as the memory budget allows (at most ``count``
          and ``batch``): the largest n with h x w x :meth:`bytes_per_pixel` (n) <= budget.
        - If not even one image fits: tiles as large as the budget allows for one image, one
          at a time (as before batching: a batch would need smaller tiles, and their larger
          share of overlap would be extra work).
        - A fixed ``tile``: tiles of that side, batched as far as a batch of the largest
          piece (the tile plus its margins) fits; ``tile`` 0 (or a net that is not tiled):
          the whole image, batched as far as it fits.
        Batches that do not fit at all are not run: at least one image goes through at a time.
        """
        cap = max(1, min(count, self.batch or count))

        def largest(pixels: int) -> int:
            return next((n for n in range(cap, 0, -1) if self._fits(n, pixels)), 1)
        if self.tile == 0 or self.radius is None:
            return largest(h * w), max(h, w)
        if self.tile:
            t = int(self.tile)
            if t >= h and t >= w:
                return largest(h * w), t
            side = t + 2 * self.radius
            return largest(min(h, side) * min(w, side)), t
        if self._fits(1, h * w):
            return largest(h * w), max(h, w)
        return 1, self.tile_size(h, w, 1)

    def _make_room(self, n: int, pixels: int) -> None:
        """Before a pass of ``n`` images of ``pixels``: Caffe keeps each blob at the largest size
        it has had, so a pass after a larger batch (or a larger image) holds the maximum of both;
        when that maximum would exceed the budget and the pass alone would not, the net is
        recreated (its old blobs freed)."""
        new = {k: v * pixels for k, v in self._held_floats(n).items()}
        after = {k: max(self._held[k], new[k]) for k in new}
        if after != new and 4.0 * sum(after.values()) > self._budget_bytes:
            self._load_net()
            after = new
        self._held = after

    def _forward_batch(self, xs: np.ndarray) -> np.ndarray:
        """One forward pass of the N x C x H x W batch ``xs``; N x C x H x W out."""
        n, _, h, w = xs.shape
        self.check_size(h, w)
        self._make_room(n, h * w)
        blob = self.net.blobs[self.input]
        blob.reshape(*xs.shape)
        self.net.reshape()
        blob.data[...] = xs
        self.net.forward()
        self.passes.append(tuple(int(d) for d in xs.shape))
        return np.array(self.net.blobs[self.output].data, dtype=np.float32, copy=True)

    def n_tiles(self, h: int, w: int, batch: int = 1) -> int:
        """How many pieces an h x w image is run in (1: whole), ``batch`` images at a time."""
        return self._n_pieces(h, w, self.tile_size(h, w, batch))

    @staticmethod
    def _n_pieces(h: int, w: int, t: int) -> int:
        return 1 if t >= h and t >= w else math.ceil(h / t) * math.ceil(w / t)

    def _bar(self, total: int, h: int, w: int):
        from tqdm import tqdm
        return tqdm(total=total, desc=f"restore {w}x{h}", unit="tile", disable=not self.progress)

    def _run(self, xs: np.ndarray, t: int, bar=None) -> np.ndarray:
        """The N x C x h x w batch ``xs`` through the net, whole or in tiles of core side ``t``
        (each with the receptive radius as margin; the bar advances by N per tile)."""
        _, _, h, w = xs.shape
        if t >= h and t >= w:
            return self._forward_batch(xs)
        r = self.radius
        y = np.empty_like(xs)
        for y0 in range(0, h, t):
            for x0 in range(0, w, t):
                y1, x1 = min(y0 + t, h), min(x0 + t, w)
                a0, b0 = max(y0 - r, 0), max(x0 - r, 0)
                a1, b1 = min(y1 + r, h), min(x1 + r, w)
                piece = self._forward_batch(np.ascontiguousarray(xs[:, :, a0:a1, b0:b1]))
                y[:, :, y0:y1, x0:x1] = piece[:, :, y0 - a0:y1 - a0, x0 - b0:x1 - b0]
                if bar is not None:
                    bar.update(len(xs))
        return y

    def _as_chw(self, x: np.ndarray) -> tuple[np.ndarray, bool]:
        x = np.asarray(x, dtype=np.float32)
        squeeze = x.ndim == 2
        if squeeze:
            x = x[None]
        if x.shape[0] != self.channels:
            raise UserError(f"input has {x.shape[0]} channel(s), the net expects {self.channels}")
        return x, squeeze

    def forward(self, x: np.ndarray, bar=None) -> np.ndarray:
        """One forward pass (tiled when needed, with a progress bar over the tiles, or
        ``bar``); same shape out as in."""
        x, squeeze = self._as_chw(x)
        c, h, w = x.shape
        t = self.tile_size(h, w)
        own = bar is None and self._n_pieces(h, w, t) > 1
        if own:
            bar = self._bar(self._n_pieces(h, w, t), h, w)
        try:
            y = self._run(np.ascontiguousarray(x[None]), t, bar)[0]
        finally:
            if own:
                bar.close()
        return y[0] if squeeze else y

    def restore(self, x: np.ndarray, ensemble: bool = True) -> np.ndarray:
        """The restored image; with ``ensemble`` the mean of the 8 orientations mapped back.

        The orientations of the same shape (the 4 of h x w, the 4 of w x h; all 8 of a square
        image) go through the net together, in batches of :meth:`plan`; the 8 results are
        summed in the order of :data:`ORIENTATIONS` (float64), as one at a time."""
        if not ensemble:
            return self.forward(x)
        x, squeeze = self._as_chw(x)
        groups: dict[tuple[int, int], list[tuple[bool, int]]] = {}
        for o in ORIENTATIONS:
            groups.setdefault(orient(x, *o).shape[-2:], []).append(o)
        plans = {shape: self.plan(*shape, count=len(os_)) for shape, os_ in groups.items()}
        pieces = sum(len(os_) * self._n_pieces(*shape, plans[shape][1]) for shape, os_ in groups.items())
        h, w = x.shape[-2:]
        bar = self._bar(pieces, h, w) if pieces > len(ORIENTATIONS) else None
        out: dict[tuple[bool, int], np.ndarray] = {}
        try:
            for shape, os_ in groups.items():
                n, t = plans[shape]
                for chunk in np.array_split(np.arange(len(os_)), math.ceil(len(os_) / n)):
                    batch = [os_[i] for i in chunk]
                    xs = np.stack([orient(x, *o) for o in batch])
                    ys = self._run(xs, t, bar)
                    for o, y in zip(batch, ys):
                        out[o] = unorient(y, *o)
        finally:
            if bar is not None:
                bar.close()
        acc = None
        for o in ORIENTATIONS:
            yo = out[o].astype(np.float64)
            acc = yo if acc is None else acc + yo
        y = (acc / len(ORIENTATIONS)).astype(np.float32)
        return y[0] if squeeze else y


# --------------------------------------------------------------------------- image files
def read_image(path: os.PathLike | str) -> np.ndarray:
    """uint8 H x W (gray) or H x W x 3 (RGB), as :func:`rednet.imageio_ml.load_image` reads
    every file of the project (MATLAB's imread; palette applied, 16-bit by im2uint8)."""
    from .imageio_ml import load_image
    return load_image(path)


def read_user_image(path: os.PathLike | str) -> tuple[np.ndarray, np.ndarray | None]:
    """(pixels, alpha or None) of one's own image as ``restore`` keeps it: a 16-bit file stays
    uint16 (restored at 16 bits), any other is :func:`read_image`'s uint8; the alpha channel
    at its own depth, passed through."""
    from .imageio_ml import alpha_of, imread
    raw = imread(path)
    img = np.ascontiguousarray(raw) if raw.dtype == np.uint16 else read_image(path)
    return img, alpha_of(path)


def unit(img: np.ndarray) -> np.ndarray:
    """uint8 or uint16 pixels as float64 in [0, 1]."""
    return img.astype(np.float64) / (65535.0 if img.dtype == np.uint16 else 255.0)


def quantize(x: np.ndarray, dtype) -> np.ndarray:
    """[0, 1] floats back to ``dtype``: MATLAB ``im2uint8`` or ``im2uint16`` (clipped, rounded)."""
    if np.dtype(dtype) == np.uint16:
        return np.floor(np.clip(np.asarray(x, dtype=np.float64), 0.0, 1.0) * 65535.0 + 0.5).astype(np.uint16)
    return matlab.im2uint8(np.clip(x, 0.0, 1.0))


def is_gray(img: np.ndarray) -> bool:
    """2-D, or RGB with three equal channels."""
    return img.ndim == 2 or (img.ndim == 3 and np.array_equal(img[..., 0], img[..., 1])
                             and np.array_equal(img[..., 0], img[..., 2]))


#: formats that keep 16 bits and an alpha channel (written by OpenCV); others get 8 bits, no alpha
DEEP_SUFFIXES = (".png", ".tif", ".tiff")


def write_image(path: os.PathLike | str, img: np.ndarray, alpha: np.ndarray | None = None) -> list[str]:
    """Write ``img`` (uint8 or uint16, gray or RGB) and its ``alpha`` atomically (format from
    the suffix); returns what the format could not keep (said by the command)."""
    from PIL import Image
    path = Path(path)
    lost = []
    deep = path.suffix.lower() in DEEP_SUFFIXES
    if img.dtype == np.uint16 and not deep:
        img, lost = matlab.im2uint8(img), lost + [f"16 bits ({path.suffix} holds 8)"]
    if alpha is not None and not deep:
        alpha, lost = None, lost + [f"the alpha channel ({path.suffix} has none)"]
    try:
        with atomic_path(path) as tmp:
            if img.dtype == np.uint8 and alpha is None:
                Image.fromarray(img).save(tmp, format=Image.registered_extensions().get(path.suffix.lower(), "PNG"))
            else:
                import cv2
                a = img if img.ndim == 2 else img[..., ::-1]            # OpenCV's order: BGR
                if alpha is not None:
                    if alpha.dtype != img.dtype:                           # alpha at the image's depth
                        alpha = quantize(unit(alpha), img.dtype)
                    a = np.dstack([np.dstack([a] * 3) if a.ndim == 2 else a, alpha])
                if not cv2.imwrite(str(tmp), np.ascontiguousarray(a)):
                    raise OSError(errno.EIO, "OpenCV could not write the image", str(path))
    except OSError as e:             # the temporary file is removed: nothing is left there
        full = e.errno in (errno.ENOSPC, errno.EDQUOT)
        raise UserError(f"{path}: {'disk full' if full else 'cannot write there'} ({e.strerror or e}); nothing "
                        f"written there: {'free space and run again' if full else 'choose another OUT='}") from None
    return lost


def restore_array(restorer: Restorer, img: np.ndarray, task: Task, level: float,
                  ensemble: bool = True, per_channel: bool = False, name: str = "image") -> np.ndarray:
    """Restore one uint8 (or uint16) image as the command does; returns the same type.

    - denoise: the image (the noisy one) / 255 through the net. A gray net refuses an RGB
      image unless ``per_channel`` (each of R, G, B through the gray net); an RGB file with
      three equal channels is treated as gray.
    - sr: ``level`` = scale. The image is the low-resolution one; it is upscaled by MATLAB
      bicubic and the net restores detail. RGB: YCbCr (MATLAB), Y through the net, Cb and Cr
      bicubic only, back to RGB.
    Output: clipped to [0, 1] and rounded like MATLAB's ``im2uint8``.
    """
    gray_in = is_gray(img)
    if img.ndim == 3 and gray_in:
        img = img[..., 0]
    if restorer.channels == 3 and img.ndim == 2:
        raise UserError(f"{name}: grayscale image, but the model expects colour (3 channels)")

    def run(a):
        restorer.check_size(*a.shape[-2:], name=name)      # before Caffe sees a size it cannot take
        return restorer.restore(a, ensemble)
    if task.kind == "denoise":
        x = unit(img).astype(np.float32)
        if restorer.channels == 3:
            out = run(np.transpose(x, (2, 0, 1))).transpose(1, 2, 0)
        elif img.ndim == 2:
            out = run(x)
        elif per_channel:
            out = np.stack([run(x[..., c]) for c in range(3)], axis=2)
        else:
            raise UserError(f"{name}: colour image, but the model denoises gray images "
                            "(convert it to gray, or pass --per-channel to denoise R, G, B separately)")
        return quantize(out, img.dtype)
    scale = float(level)
    if restorer.channels == 3:
        up = matlab.imresize(unit(img), scale)
        out = run(np.transpose(up, (2, 0, 1)).astype(np.float32)).transpose(1, 2, 0)
        return quantize(out, img.dtype)
    if img.ndim == 2:
        up = matlab.imresize(unit(img), scale)
        return quantize(run(up.astype(np.float32)), img.dtype)
    ycc = matlab.imresize(matlab.rgb2ycbcr(unit(img)), scale)
    ycc[..., 0] = run(ycc[..., 0].astype(np.float32))
    return quantize(matlab.ycbcr2rgb(ycc), img.dtype)


# --------------------------------------------------------------------------- command line
def _task_from_args(args) -> tuple[Task, float]:
    if args.task == "denoise":
        if args.scale is not None:
            raise UserError("--scale: only for --task sr")
        if args.sigma is None:
            raise UserError("--sigma: required for --task denoise (the noise level of the images, e.g. 30)")
        t = get_task(task_name("denoise", args.sigma))
        return t, float(args.sigma)
    if args.sigma is not None:
        raise UserError("--sigma: only for --task denoise")
    if args.scale is None:
        raise UserError("--scale: required for --task sr (2, 3 or 4)")
    return get_task(task_name("sr", args.scale)), float(args.scale)


def _pairs(inputs: list[str], output: str) -> list[tuple[Path, Path]]:
    """(input, output) file pairs.  Rules: OUT with an image suffix is a file, for exactly one
    input file; otherwise OUT is a folder (made if needed) receiving ``<stem>.png`` per input.
    An output never replaces an input, and two inputs never write the same output."""
    ins = [Path(p) for p in inputs]
    out = Path(output)
    out_is_file = out.suffix.lower() in IMAGE_SUFFIXES and not out.is_dir()
    if len(ins) == 1 and ins[0].is_dir():
        files = sorted(p for p in ins[0].iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise UserError(f"{ins[0]}: folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
        if out_is_file or (out.exists() and not out.is_dir()):
            raise UserError(f"OUT={out}: a folder input needs an output folder (a name without an image suffix)")
        pairs = [(p, out / (p.stem + ".png")) for p in files]
    else:
        for p in ins:
            if not p.is_file():
                raise UserError(f"{p}: no such image file")
        if len(ins) == 1 and out_is_file:
            pairs = [(ins[0], out)]
        elif out.suffix and not out.is_dir() and out.suffix.lower() not in IMAGE_SUFFIXES and len(ins) == 1:
            raise UserError(f"OUT={out}: output suffix must be one of {', '.join(IMAGE_SUFFIXES)}")
        elif out_is_file:
            raise UserError(f"OUT={out}: several inputs ({len(ins)}) need an output folder (a name without an image suffix)")
        elif out.exists() and not out.is_dir():
            raise UserError(f"OUT={out}: several inputs need an output folder")
        else:
            pairs = [(p, out / (p.stem + ".png")) for p in ins]
    srcs = {p.resolve() for p, _ in pairs}
    seen: dict[Path, Path] = {}
    for src, dst in pairs:
        d = dst.resolve()
        if d in srcs:
            raise UserError(f"OUT={out}: would overwrite the input {src}; choose another output name")
        if d in seen:
            raise UserError(f"OUT={out}: {seen[d]} and {src} would both be written to {dst}")
        seen[d] = src
    return pairs


def check_budget(tile, max_memory_mb) -> None:
    """``--tile`` >= 0 (0: never tile) and ``--max-memory`` > 0, as one-line errors."""
    if tile is not None and (not isinstance(tile, (int, np.integer)) or tile < 0):
        raise UserError(f"--tile {tile}: expected a tile side in pixels >= 0 (0: never tile)")
    if not (isinstance(max_memory_mb, (int, float, np.integer, np.floating))
            and 0 < max_memory_mb < math.inf):
        raise UserError(f"--max-memory {max_memory_mb}: expected a positive number of MB")


def cmd_restore(args) -> int:
    from tqdm import tqdm
    check_budget(args.tile, args.max_memory)
    task, level = _task_from_args(args)
    pairs = _pairs(args.inputs, args.output)
    for folder in sorted({dst.parent for _, dst in pairs}):
        check_writable(folder, f"OUT={args.output}")
    spec = find_model(args.model, task, args.net, args.deploy)
    restorer = Restorer(spec.deploy, spec.weights, tile=args.tile, max_memory_mb=args.max_memory)
    # decode everything first: a bad file stops the command before anything is written
    images = [(src, dst, *read_user_image(src)) for src, dst in pairs]
    for src, dst, img, alpha in tqdm(images, desc=f"restore {task.name}", unit="img", disable=len(images) < 2):
        out = restore_array(restorer, img, task, level, ensemble=not args.no_ensemble,
                            per_channel=args.per_channel, name=str(src))
        if alpha is not None and task.kind == "sr":          # the alpha channel upscaled with the image
            alpha = quantize(matlab.imresize(unit(alpha), float(level)), alpha.dtype)
        lost = write_image(dst, out, alpha)
        if lost:
            print(f"note: {dst}: written without {' and '.join(lost)} of {src}; give OUT= a .png to keep them")
    print(f"restored {len(images)} image(s) with {spec.describe()}"
          f"{'' if args.no_ensemble else ', 8-orientation ensemble'}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "restore", help="restore one's own images with a trained model (denoise or SR)",
        description="Restore images with a trained RED-Net in pycaffe. Denoising: the input is the "
                    "noisy image. SR: the input is the low-resolution image; it is upscaled by "
                    "--scale (MATLAB bicubic) and restored (colour: Y through the net, CbCr bicubic).")
    p.add_argument("inputs", nargs="+", help="image file(s), or one folder of images")
    p.add_argument("output", help="output file (one input) or folder")
    p.add_argument("--task", choices=("denoise", "sr"), required=True)
    p.add_argument("--sigma", type=float, help="noise level (denoise), e.g. 30")
    p.add_argument("--scale", type=int, help="upscaling factor (sr): 2, 3 or 4")
    p.add_argument("--model", help="a .caffemodel, or a run folder runs/<name>/ (default: search "
                                   "the zoo models/<name>/, then runs/)")
    p.add_argument("--net", help="preset to use when searching (red10, red20, red30, red30-official)")
    p.add_argument("--deploy", help="deploy prototxt for a bare .caffemodel (default: beside it)")
    p.add_argument("--no-ensemble", action="store_true",
                   help="one forward pass instead of the mean over 8 orientations (an eighth of the computation)")
    p.add_argument("--per-channel", action="store_true",
                   help="denoise a colour image with a gray model, channel by channel")
    p.add_argument("--tile", type=int, default=None,
                   help="core tile side in pixels (default: from --max-memory; 0: never tile)")
    p.add_argument("--max-memory", type=float, default=DEFAULT_MAX_MEMORY_MB,
                   help=f"memory budget of one forward pass in MB (default {DEFAULT_MAX_MEMORY_MB})")
    p.set_defaults(func=cmd_restore)
