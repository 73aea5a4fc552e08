"""Render RED-Net deploy/train/test nets and Adam solvers from the Jinja templates.

``bin/python -m rednet gen`` (``make nets``) renders every preset in :data:`PRESETS` into
``gen/<net>/deploy.prototxt``, ``gen/<net>/<task>/{train,test}.prototxt`` and
``solvers/<net>_<task>.prototxt`` for every task of :mod:`rednet.tasks`, rewriting only
files whose content changed.  ``gen --depth 20 --width 32 --skip 4 --name mynet`` renders
a custom net (and its solvers) instead; ``gen --check`` reports drift without writing.

The architecture (Mao, Shen, Yang, NIPS 2016, Sections 2.1-2.3, and the authors' released
deploy net): N/2 convolutions ``conv1..convK`` (tops ``c1..cK``) then N/2 deconvolutions
``deconv1..deconvK``, all 3x3 pad 1; ReLU after every layer but the last; the feature map
``c_j`` of every k-th convolution (j = k, 2k, ... < K) is added to the output of its mirror
``deconv_{K-j}`` after that output's own ReLU, and the sum is rectified again (the released
net: ``Deconvolution -> ReLU -> Eltwise SUM with c_j -> ReLU``, i.e. ``ReLU(c_j + ReLU(d))``);
the input image is added to the last deconvolution's output, so the net's ``output`` is the
restored image.  He et al.'s sequential shortcuts keep their own rule, ReLU after the sum
(``ReLU(F(x) + x)``).  See docs/nets.md.

The wiring is computed here (:meth:`NetConfig.layers`) and written out by the templates in
``prototxt_templates/``; ``rednet.refnet`` re-implements the forward pass independently
from the same configuration, and the tests compare the two in Caffe.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path

from . import paths
from .errors import UserError, atomic_write_text
from .tasks import TASKS, get_task

#: Training batch size (the authors' saved training net: HDF5Data, batch 16, shuffled).
TRAIN_BATCH = 16
#: the weights' filler and the biases' learning-rate multiplier of the authors' saved training
#: net (a recipe's INIT= and BIAS_LR= render others)
TRAIN_INIT = "xavier"
TRAIN_BIAS_LR = 0.1
#: Validation batch size (test phase of the solver; see docs/nets.md).
TEST_BATCH = 16
#: Validation batches per test in solvers/ (a run renders as many as its validation
#: database fills, see rednet.train).
TEST_ITER = 8
#: Spatial size written into the deploy net's Input layer (any size can be reshaped to).
DEPLOY_HW = 64
#: The repository solvers' iterations, snapshot interval and loss display interval (a run
#: renders its own values, see :func:`render_solver`).
MAX_ITER = 100000
SNAPSHOT = 500
TEST_INTERVAL = 500
DISPLAY = 20
#: Who wrote the files of gen/ and solvers/ (their first line).
GEN_BY = "`bin/python -m rednet gen` (make nets)"

SHORTCUTS = ("mirror", "sequential")
DECODERS = ("deconv", "conv")


@dataclass(frozen=True)
class NetConfig:
    """One RED-Net architecture.

    depth:     total number of weight layers N: N/2 conv + N/2 (de)conv, even and >= 4; a
               convolution-only net (decoder "conv") may have any depth >= 3 (Sec. 2.1.1
               compares 5- and 10-layer ones), mirrored skips then need an even depth.
    width:     feature maps of every hidden layer (paper text 64, released models 128).
    channels:  image channels in and out (1: grey/luminance, 3: colour).
    skip:      span k of the skip connections (every k-th layer), None for no skips.
    shortcuts: "mirror": encoder c_j -> mirrored decoder layer (RED-Net);
               "sequential": He et al. residual blocks, layer t -> layer t+k (Figure 3c).
    stride:    stride s of the down-sampling convolutions and up-sampling deconvolutions.
    down:      how many leading convolutions (and mirrored trailing deconvolutions) use it.
    decoder:   "deconv" (RED-Net) or "conv" (the convolution-only comparison, Sec. 2.1.1).
    input_residual: add the input image to the last layer's output (the net fits the residual).
    """

    name: str
    depth: int = 30
    width: int = 64
    channels: int = 1
    skip: int | None = 2
    shortcuts: str = "mirror"
    stride: int = 1
    down: int = 0
    decoder: str = "deconv"
    input_residual: bool = True

    def __post_init__(self):
        v = self.validate_errors()
        if v:
            raise UserError(v)

    # -- validation -------------------------------------------------------------------
    def validate_errors(self) -> str | None:
        """The first problem with this configuration as a one-line message, or None."""
        if not self.name or any(c in self.name for c in "/\\ \t\n") or self.name.startswith("."):
            return f"name={self.name!r}: expected a non-empty file name without '/' or spaces"
        conv_only = self.decoder == "conv"
        if not isinstance(self.depth, int) or isinstance(self.depth, bool) or \
                (self.depth < 3 if conv_only else (self.depth < 4 or self.depth % 2)):
            return (f"depth={self.depth!r}: expected an even number >= 4 (e.g. 10, 20, 30), or any "
                    f"number >= 3 with a convolution-only decoder (decoder=conv)")
        if not isinstance(self.width, int) or self.width < 1:
            return f"width={self.width!r}: expected a positive number of feature maps (e.g. 64, 128)"
        if self.channels not in (1, 3):
            return f"channels={self.channels!r}: expected 1 (grey/luminance) or 3 (colour)"
        if self.shortcuts not in SHORTCUTS:
            return f"shortcuts={self.shortcuts!r}: expected one of {', '.join(SHORTCUTS)}"
        if self.decoder not in DECODERS:
            return f"decoder={self.decoder!r}: expected one of {', '.join(DECODERS)}"
        n = self.depth // 2
        if self.skip is not None and self.shortcuts == "mirror" and self.depth % 2:
            return (f"skip={self.skip!r}: mirrored skips pair each encoder layer with a decoder layer "
                    f"and need an even depth (depth={self.depth}); expected skip=none, or "
                    f"shortcuts=sequential")
        if self.skip is not None:
            if self.shortcuts == "mirror" and not (isinstance(self.skip, int) and 1 <= self.skip <= n - 1):
                return (f"skip={self.skip!r}: expected a span from 1 to {n - 1} (depth/2 - 1, the encoder "
                        f"of depth {self.depth} has {n} layers) or none")
            if self.shortcuts == "sequential" and not (isinstance(self.skip, int) and 1 <= self.skip <= self.depth - 2):
                return (f"skip={self.skip!r}: expected a block length from 1 to {self.depth - 2} "
                        f"(depth - 2) or none")
        elif self.shortcuts == "sequential":
            return "shortcuts=sequential: needs a block length (skip=k)"
        if not isinstance(self.stride, int) or self.stride < 1:
            return f"stride={self.stride!r}: expected an integer >= 1"
        if self.stride == 1 and self.down != 0:
            return f"down={self.down!r}: expected 0 with stride=1 (no down-sampling layers)"
        if self.stride > 1:
            if not (isinstance(self.down, int) and 1 <= self.down <= n):
                return f"down={self.down!r}: expected 1 to {n} strided layers (depth/2) with stride={self.stride}"
            if self.decoder == "conv":
                return "decoder=conv: a convolution-only decoder cannot up-sample; expected stride=1"
            if self.shortcuts == "sequential":
                return ("shortcuts=sequential: blocks would join maps of different sizes; "
                        "expected stride=1")
        return None

    # -- derived ----------------------------------------------------------------------
    @property
    def n(self) -> int:
        """Number of encoder layers, depth/2 (rounded down: an odd convolution-only net has
        one more layer after the encoder than in it; only mirrored skips, refused there, and
        strides, refused with decoder=conv, depend on the split)."""
        return self.depth // 2

    @property
    def factor(self) -> int:
        """Total down-sampling factor stride**down; input sizes must be multiples of it."""
        return self.stride ** self.down if self.stride > 1 else 1

    def params(self) -> dict:
        """The parameters, for file headers."""
        d = dataclasses.asdict(self)
        d["skip"] = "none" if self.skip is None else self.skip
        return d

    def skip_pairs(self) -> list[tuple[int, int]]:
        """Mirror skips as (j, i): conv feature c_j is added to decoder layer i's output.

        j = k, 2k, ... < n (counted from the input, like the input residual which is
        j = 0), and i = n - j.  RED30 (k = 2): (14, 1), (12, 3), ..., (2, 13).
        """
        if self.skip is None or self.shortcuts != "mirror":
            return []
        return [(j, self.n - j) for j in range(self.n - 1, 0, -1) if j % self.skip == 0]

    def sequential_pairs(self) -> list[tuple[int, int]]:
        """He-style shortcuts as (a, b): the output of layer a is added to layer b = a + k.

        Layers are numbered 1..depth through encoder and decoder; blocks start at layer 1
        and follow each other (a = 1, 1+k, ...); the last layer (image channels) takes none.
        """
        if self.skip is None or self.shortcuts != "sequential":
            return []
        k = self.skip
        return [(a, a + k) for a in range(1, self.depth, k) if a + k <= self.depth - 1]

    def layers(self) -> list[dict]:
        """The weight layers in order, each with its wiring (what the templates render)."""
        n, s = self.n, self.stride
        out: list[dict] = []
        final_blob: dict[int, str] = {}    # layer index t (1..depth) -> its output blob after sum/ReLU
        add_to: dict[int, str] = {}        # layer index t -> blob added to its output
        for j, i in self.skip_pairs():
            add_to[n + i] = f"c{j}"
        seq = self.sequential_pairs()
        bottom = "data"
        for t in range(1, self.depth + 1):
            enc = t <= n
            i = t - n
            if enc:
                name, top, typ = f"conv{t}", f"c{t}", "Convolution"
                strided = s > 1 and t <= self.down
                kernel, pad = 3, 1
            elif self.decoder == "conv":
                name, top, typ = f"conv{t}", f"c{t}", "Convolution"
                strided, kernel, pad = False, 3, 1
            else:
                name, top, typ = f"deconv{i}", f"d{i}", "Deconvolution"
                strided = s > 1 and i > n - self.down
                # A 3x3/pad-1 conv with stride s maps H to ceil(H/s); the mirrored
                # deconvolution maps h back to s*h exactly with kernel s+2, pad 1.
                kernel, pad = (s + 2, 1) if strided else (3, 1)
            last = t == self.depth
            for a, b in seq:
                if b == t:
                    add_to[t] = final_blob[a]
            if last and not self.input_residual:
                top = "output"
            add = add_to.get(t)
            layer = dict(
                t=t, name=name, type=typ, bottom=bottom, top=top,
                num_output=self.channels if last else self.width,
                kernel=kernel, pad=pad, stride=s if strided else 1,
                add=add, sum_name=f"{name}_sum", sum_top=f"{top}_sum",
                relu=not last, relu_name=f"{name}_relu",
                # mirror skips follow the released net: the layer's own ReLU comes before the
                # sum (c + ReLU(d)), and the sum is rectified again; He et al.'s blocks rectify
                # only the sum.
                pre_relu=bool(add) and not last and self.shortcuts == "mirror",
                sum_relu_name=f"{name}_sum_relu",
            )
            out.append(layer)
            bottom = layer["sum_top"] if add else top
            final_blob[t] = bottom
        return out

    def output_bottom(self) -> str:
        """The blob holding the last layer's output (the residual when input_residual)."""
        return self.layers()[-1]["top"]


#: The named nets `make nets` renders.
PRESETS: dict[str, NetConfig] = {
    # RED10: no skip connections (paper Table 1/Fig. 4 "RED10"; skips only help deeper nets).
    "red10": NetConfig("red10", depth=10, width=64, skip=None),
    "red20": NetConfig("red20", depth=20, width=64, skip=2),
    # RED30 as the paper's text gives it: 64 feature maps, skips every two layers.
    "red30": NetConfig("red30", depth=30, width=64, skip=2),
    # RED30 as the authors released it: 128 feature maps (and the input residual added here).
    "red30-official": NetConfig("red30-official", depth=30, width=128, skip=2),
}


def get_preset(name: str) -> NetConfig:
    """The preset called ``name``, or a one-line UserError listing the presets."""
    if name not in PRESETS:
        raise UserError(f"preset {name!r}: expected one of {', '.join(PRESETS)}")
    return PRESETS[name]


def config_from_header(text: str) -> NetConfig | None:
    """The NetConfig a generated deploy/train/test file was rendered from (its ``# parameters:``
    header line), or None when the text has no such header (a hand-written net)."""
    lines = text.splitlines()[:2]
    if len(lines) < 2 or not lines[0].startswith("# Generated by") or not lines[1].startswith("# parameters: "):
        return None
    raw = dict(item.split("=", 1) for item in lines[1][len("# parameters: "):].split() if "=" in item)
    kw = {}
    for f in dataclasses.fields(NetConfig):
        if f.name not in raw:
            return None
        v = raw[f.name]
        if f.name == "skip":
            kw[f.name] = None if v == "none" else int(v)
        elif f.name == "input_residual":
            if v not in ("True", "False"):
                return None
            kw[f.name] = v == "True"
        elif f.name in ("name", "shortcuts", "decoder"):
            kw[f.name] = v
        elif v.lstrip("-").isdigit():
            kw[f.name] = int(v)
        else:
            return None
    return NetConfig(**kw)


def custom_nets(root: Path | str = paths.ROOT) -> list[str]:
    """Names of the nets in ``root``/gen/ that are not presets (made by ``gen --name``)."""
    gen = Path(root) / "gen"
    return sorted(p.name for p in gen.iterdir() if p.is_dir() and p.name not in PRESETS) if gen.is_dir() else []


@dataclass
class NetSource:
    """What `make train NET=...` trains: a net configuration rendered from the templates
    (``cfg``: a preset or a net of ``gen --name``), or a hand-written folder's files."""
    net: str
    cfg: NetConfig | None = None
    solver: Path | None = None          # a hand-written net's solver (it names the nets)
    deploy: Path | None = None          # a hand-written net's deploy net, when it has one


def resolve_net(net: str, task, root: Path | str = paths.ROOT) -> NetSource:
    """What training ``net`` on ``task`` is made from; writes nothing.

    ``net`` is a preset, or a net in ``gen/<net>/``: one made by ``gen --name`` (its files
    carry the parameters in their header) is rendered from the templates like a preset, for
    any task; a hand-written folder is used as it is and must hold ``<task>/train.prototxt``,
    ``<task>/test.prototxt`` and a solver ``solvers/<net>_<task>.prototxt`` (or
    ``gen/<net>/solvers/...``).  A rendered net's files in gen/ and solvers/ are what the
    user reads: where one exists and differs from the templates' rendering (edited by hand,
    or the templates changed without `make nets`), training refuses instead of training
    something else than the file shows.
    """
    root = Path(root)
    task = _task(task)
    if net in PRESETS:
        cfg = PRESETS[net]
        _check_drift(files_for(cfg, root, tasks=[task]))
        return NetSource(net, cfg)
    if not net or any(c in net for c in "/\\ \t\n") or net.startswith("."):
        raise UserError(f"NET={net!r}: expected a preset ({', '.join(PRESETS)}) or the name of a folder in gen/")
    folder = root / "gen" / net
    if not folder.is_dir():
        custom = custom_nets(root)
        raise UserError(f"preset {net!r}: expected one of {', '.join(PRESETS)}, or a net in gen/ "
                        f"({', '.join(custom) if custom else 'none there'}; make one with: "
                        f"bin/python -m rednet gen --name {net} ...)")
    deploy = folder / "deploy.prototxt"
    own_solvers = folder / "solvers"
    cfg = config_from_header(deploy.read_text()) if deploy.is_file() else None
    if cfg is not None:
        if cfg.name != net:
            raise UserError(f"gen/{net}/deploy.prototxt: was rendered for a net called {cfg.name!r}; "
                            f"render it again with: bin/python -m rednet gen --name {net} ...")
        solver_dir = own_solvers if own_solvers.is_dir() else root / "solvers"
        _check_drift(files_for(cfg, root, tasks=[task], out_dir=folder, solver_dir=solver_dir))
        return NetSource(net, cfg)
    for p in (folder / task / "train.prototxt", folder / task / "test.prototxt"):
        if not p.is_file():
            raise UserError(f"gen/{net}: has no {task}/{p.name} (and no header of `rednet gen` to render "
                            f"it from); render the net with: bin/python -m rednet gen --name {net} ...")
    for sd in (root / "solvers", own_solvers):
        if (sd / f"{net}_{task}.prototxt").is_file():
            return NetSource(net, None, sd / f"{net}_{task}.prototxt", deploy if deploy.is_file() else None)
    raise UserError(f"gen/{net}: no solver solvers/{net}_{task}.prototxt (nor gen/{net}/solvers/{net}_{task}.prototxt)")


def _check_drift(files: dict[Path, str]) -> None:
    """One-line UserError for the first existing file that differs from its rendering."""
    for p, text in files.items():
        if p.is_file() and p.read_text() != text:
            raise UserError(f"{paths.rel(p)}: differs from what prototxt_templates/ render (edited by hand, or "
                            f"the templates changed); training renders the net from the templates, so put the "
                            f"change there (or make a net with `rednet gen --name`) and run `make nets`")


def check_input_shape(cfg: NetConfig, h: int, w: int) -> None:
    """Raise UserError unless an ``h`` x ``w`` input comes out of ``cfg`` at the same size.

    Stride-1 nets take any size >= 1.  With ``stride`` s on ``down`` layers, every layer
    maps H to ceil(H/s) and back to s*ceil(H/s), so H and W must be multiples of s**down.
    """
    for what, v in (("height", h), ("width", w)):
        if not isinstance(v, int) or v < 1:
            raise UserError(f"input {what}={v!r}: expected a positive integer")
        f = cfg.factor
        if v % f:
            lo, hi = (v // f) * f, (v // f + 1) * f
            raise UserError(f"input {what}={v} for net {cfg.name} (stride={cfg.stride}, down={cfg.down}): "
                            f"expected a multiple of {f}, e.g. {lo or hi} or {hi}")


# -- rendering ----------------------------------------------------------------------------
_ENV = None


def _env():
    global _ENV
    if _ENV is None:
        import jinja2
        _ENV = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(paths.TEMPLATES)),
            undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
            keep_trailing_newline=True, autoescape=False)
    return _ENV


def _header(template: str, by: str, **params) -> str:
    items = " ".join(f"{k}={v}" for k, v in params.items())
    return (f"# Generated by {by} from prototxt_templates/{template}"
            f" -- do not edit.\n# parameters: {items}\n")


def _render(template: str, header_params: dict, by: str = GEN_BY, **ctx) -> str:
    body = _env().get_template(template).render(**ctx)
    return _header(template, by, **header_params) + body


def net_dir(cfg: NetConfig) -> str:
    """Where a net's files go, relative to the repo root: gen/<net>."""
    return f"gen/{cfg.name}"


def render_deploy(cfg: NetConfig, hw: tuple[int, int] | None = None) -> str:
    """The deploy net: Input ``data`` 1 x C x H x W, top ``output`` = restored image.

    ``hw`` defaults to 64 x 64 (rounded up to a multiple of the net's down-sampling factor).
    """
    if hw is None:
        side = -(-DEPLOY_HW // cfg.factor) * cfg.factor
        hw = (side, side)
    check_input_shape(cfg, *hw)
    return _render("deploy.prototxt.j2", cfg.params(), cfg=cfg, layers=cfg.layers(),
                   height=hw[0], width=hw[1])


def _task(task) -> str:
    name = task.name if hasattr(task, "name") else str(task)
    return get_task(name).name


def db_source(task, phase: str) -> str:
    """The list file a ``phase`` (train or test) net of ``task`` reads: data/db/<task>/{train,val}.txt."""
    return f"data/db/{_task(task)}/{'train' if phase == 'train' else 'val'}.txt"


def render_train(cfg: NetConfig, task, phase: str, *, source: str | None = None,
                 shuffle: bool | None = None, by: str = GEN_BY, batch: int = TRAIN_BATCH,
                 init: str = TRAIN_INIT, bias_lr: float = TRAIN_BIAS_LR) -> str:
    """The train (``phase='train'``) or test (``phase='test'``) net for ``task``.

    ``source`` (the HDF5 list file; default :func:`db_source`), ``shuffle`` (default: the
    train phase shuffles), ``by`` (the header's author), ``batch`` (the train phase's
    batch size; a recipe's ``BATCH=``), ``init`` (the weights' filler, ``xavier`` or ``msra``;
    ``INIT=``) and ``bias_lr`` (the biases' lr_mult; ``BIAS_LR=``) are what a run renders its
    own copies with (rednet.sources)."""
    task = _task(task)
    if phase not in ("train", "test"):
        raise UserError(f"phase={phase!r}: expected train or test")
    p = dict(cfg.params(), task=task, phase=phase)
    if init not in ("xavier", "msra"):
        raise UserError(f"init={init!r}: expected xavier or msra")
    return _render("train.prototxt.j2", p, by, cfg=cfg, layers=cfg.layers(), task=task, phase=phase,
                   train={"init": init, "bias_lr": float(bias_lr), "default_init": TRAIN_INIT,
                          "default_bias_lr": TRAIN_BIAS_LR},
                   source=source if source is not None else db_source(task, phase),
                   batch_size=int(batch) if phase == "train" else TEST_BATCH,
                   shuffle=phase == "train" if shuffle is None else shuffle)


def render_solver(cfg: NetConfig, task, net_root: str | None = None, *, train_net: str | None = None,
                  test_net: str | None = None, snapshot_prefix: str | None = None, max_iter: int = MAX_ITER,
                  snapshot: int = SNAPSHOT, display: int = DISPLAY, solver_mode: str = "CPU",
                  test_iter: int = TEST_ITER, by: str = GEN_BY, recipe=None,
                  test_interval: int = TEST_INTERVAL) -> str:
    """The Adam solver for ``cfg`` on ``task`` (nets under ``net_root``, default gen/<net>).

    The keyword arguments are a run's own values (rednet.sources renders a run's solver with
    its nets, snapshot prefix, iterations, intervals, validation batches per test and its
    learning-rate recipe, a resolved :class:`rednet.recipes.Recipe`); the defaults give
    solvers/ (the paper's constant 1e-4)."""
    task = _task(task)
    root = net_root or net_dir(cfg)
    run = f"{cfg.name}_{task}"
    if solver_mode not in ("CPU", "GPU"):
        raise UserError(f"solver_mode={solver_mode!r}: expected CPU or GPU")
    return _render("solver.prototxt.j2", dict(net=cfg.name, task=task), by, cfg=cfg, task=task,
                   train_net=train_net or f"{root}/{task}/train.prototxt",
                   test_net=test_net or f"{root}/{task}/test.prototxt",
                   snapshot_prefix=snapshot_prefix or f"runs/{run}/snapshots/{run}", test_batch=TEST_BATCH,
                   train_batch=recipe.batch if recipe is not None else TRAIN_BATCH, default_batch=TRAIN_BATCH,
                   max_iter=int(max_iter), snapshot=int(snapshot),
                   display=int(display), solver_mode=solver_mode, test_iter=int(test_iter), recipe=recipe,
                   test_interval=int(test_interval))


def files_for(cfg: NetConfig, root: Path, tasks=None, out_dir: Path | None = None,
              solver_dir: Path | None = None) -> dict[Path, str]:
    """Every file of one net: path -> content (nothing written)."""
    root = Path(root)
    out_dir = Path(out_dir) if out_dir else root / net_dir(cfg)
    solver_dir = Path(solver_dir) if solver_dir else root / "solvers"
    tasks = list(tasks) if tasks is not None else list(TASKS)
    rel_root = _rel_to(out_dir, root)
    files = {out_dir / "deploy.prototxt": render_deploy(cfg)}
    for t in tasks:
        for phase in ("train", "test"):
            files[out_dir / t / f"{phase}.prototxt"] = render_train(cfg, t, phase)
        files[solver_dir / f"{cfg.name}_{t}.prototxt"] = render_solver(cfg, t, net_root=rel_root)
    return files


def _rel_to(p: Path, root: Path) -> str:
    try:
        return Path(p).resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        return str(Path(p).resolve())


def all_files(root: Path | str = paths.ROOT) -> dict[Path, str]:
    """Every preset x task file `make nets` owns: path -> content."""
    files: dict[Path, str] = {}
    for cfg in PRESETS.values():
        files.update(files_for(cfg, Path(root)))
    return files


def _write_changed(files: dict[Path, str]) -> list[Path]:
    written = []
    for p, text in files.items():
        if p.is_file() and p.read_text() == text:
            continue
        atomic_write_text(p, text)
        written.append(p)
    return written


def generate_all(root: Path | str = paths.ROOT) -> list[Path]:
    """Render every preset into ``root``/gen and ``root``/solvers; return the files rewritten."""
    return _write_changed(all_files(root))


def write_net(cfg: NetConfig, out_dir: Path | str, tasks=None, solver_dir: Path | str | None = None) -> list[Path]:
    """Write one (custom) net: deploy, train/test per task, and solvers; return files rewritten.

    ``out_dir`` replaces gen/<net>; solvers go to ``solver_dir`` (default ``out_dir``/solvers,
    or solvers/ when ``out_dir`` is the net's own gen/<net>).  Paths inside the files are
    relative to the repo root when ``out_dir`` lies inside it.
    """
    out_dir = Path(out_dir)
    if solver_dir is None:
        default = (paths.ROOT / net_dir(cfg)).resolve()
        solver_dir = paths.SOLVERS if out_dir.resolve() == default else out_dir / "solvers"
    return _write_changed(files_for(cfg, paths.ROOT, tasks=tasks, out_dir=out_dir, solver_dir=Path(solver_dir)))


# -- command line -------------------------------------------------------------------------
def _skip_arg(v: str):
    if v.lower() == "none":
        return None
    try:
        return int(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'none', got {v!r}") from None


def config_from_args(args) -> NetConfig:
    """A NetConfig from the gen command's options (a preset, then overrides)."""
    base = get_preset(args.preset) if args.preset else PRESETS["red30"]
    over = {}
    for field in ("depth", "width", "channels", "stride", "down"):
        v = getattr(args, field)
        if v is not None:
            over[field] = v
    if args.skip is not ...:
        over["skip"] = args.skip
    if args.sequential:
        over["shortcuts"] = "sequential"
    if args.conv_decoder:
        over["decoder"] = "conv"
    if args.no_input_residual:
        over["input_residual"] = False
    if over.get("stride", base.stride) > 1 and "down" not in over:
        over["down"] = 1
    name = args.name or (base.name if not over else None)
    if name is None:
        raise UserError("--name: a custom net (depth/width/skip/... options) needs a name")
    cfg = dataclasses.replace(base, name=name, **over) if (over or name != base.name) else base
    if name in PRESETS and cfg != PRESETS[name]:
        raise UserError(f"--name {name}: is a preset's name (its files are committed); choose another name")
    return cfg


def cmd_gen(args) -> int:
    custom = any(getattr(args, f) is not None for f in ("depth", "width", "channels", "stride", "down", "name")) \
        or args.skip is not ... or args.sequential or args.conv_decoder or args.no_input_residual or args.out
    tasks = None
    if args.task:
        tasks = list(dict.fromkeys(get_task(t).name for t in args.task))
        if not (custom or args.preset):
            raise UserError("--task: renders one net for the tasks named; give --preset or a custom net (--name ...)")
    if custom:
        cfg = config_from_args(args)
        if args.out:
            out = Path(args.out)
            files = files_for(cfg, paths.ROOT, tasks=tasks, out_dir=out, solver_dir=out / "solvers")
        else:
            files = files_for(cfg, paths.ROOT, tasks=tasks)
    elif args.preset:
        files = files_for(get_preset(args.preset), paths.ROOT, tasks=tasks)
    else:
        files = all_files(paths.ROOT)
    if args.list:
        for p in files:
            print(paths.rel(p))
        return 0
    if args.check:
        drift = [p for p, t in files.items() if not (p.is_file() and p.read_text() == t)]
        for p in drift:
            print(f"out of date: {paths.rel(p)}", file=sys.stderr)
        if drift:
            print(f"{len(drift)} of {len(files)} files differ from the templates; run `make nets`",
                  file=sys.stderr)
            return 1
        print(f"{len(files)} files up to date")
        return 0
    written = _write_changed(files)
    print(f"{len(files)} files rendered, {len(written)} rewritten")
    for p in written:
        print(f"  wrote {paths.rel(p)}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "gen", help="render RED-Net prototxts and solvers from prototxt_templates/",
        description="Render nets and solvers.  Without options: every preset "
                    f"({', '.join(PRESETS)}) for every task; with --preset one; with "
                    "architecture options a custom net (needs --name).")
    p.add_argument("--preset", help=f"start from this preset ({', '.join(PRESETS)})")
    p.add_argument("--name", help="name of a custom net (gen/<name>/, solvers/<name>_<task>)")
    p.add_argument("--depth", type=int, help="total layers N, even >= 4 (N/2 conv + N/2 deconv); "
                                             "any N >= 3 with --conv-decoder")
    p.add_argument("--width", type=int, help="feature maps per hidden layer")
    p.add_argument("--channels", type=int, help="image channels (1 or 3)")
    p.add_argument("--skip", type=_skip_arg, default=..., metavar="K|none",
                   help="skip span k (every k-th layer), or none")
    p.add_argument("--sequential", action="store_true",
                   help="He et al. sequential residual blocks of --skip layers instead of mirrored skips")
    p.add_argument("--stride", type=int, help="stride of the down-sampling conv / up-sampling deconv layers")
    p.add_argument("--down", type=int, help="number of strided conv (and mirrored deconv) layers (default 1)")
    p.add_argument("--conv-decoder", action="store_true", help="convolutions instead of deconvolutions in the decoder")
    p.add_argument("--no-input-residual", action="store_true", help="do not add the input image to the output")
    p.add_argument("--task", action="append", metavar="TASK",
                   help="render the net for this task only (repeatable; default: every task of "
                        "rednet.tasks.TASKS); any task name, e.g. denoise-s70-p243 (243x243 patches)")
    p.add_argument("--out", help="folder for a custom net's files (default gen/<name>, solvers/)")
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 if any file differs")
    p.add_argument("--list", action="store_true", help="print the paths that would be written")
    p.set_defaults(func=cmd_gen)


def main(argv=None) -> int:
    """``python -m rednet.netgen`` = ``python -m rednet gen`` without loading the other commands."""
    parser = argparse.ArgumentParser(prog="python -m rednet.netgen")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["gen", *(sys.argv[1:] if argv is None else argv)])
    try:
        return int(args.func(args) or 0)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
