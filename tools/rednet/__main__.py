"""``bin/python -m rednet <command> ...``: the project's command line (``rednet <command>`` once installed).

Each command lives in its own module, which defines ``register(subparsers)``; the
module's parser sets ``func`` to the function that runs it.  A :class:`UserError`
becomes a one-line ``error: ...`` on stderr and exit status 2.

``pip install -e .`` (done by ``make setup``) installs the console command ``rednet``
(:func:`cli`), which runs the same command line through ``bin/python``: the environment in
which the Caffe build's pycaffe and libraries are found.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from .errors import UserError

# command modules, in the order `--help` lists them
COMMAND_MODULES = [
    "rednet.netgen",     # gen: render prototxts and solvers
    "rednet.datasets",   # datasets: verify / download benchmark images
    "rednet.patches",    # data: build HDF5 patch databases
    "rednet.train",      # train: run the stock caffe binary
    "rednet.logparse",   # curves: logs to CSV and plots
    "rednet.figures",    # figures: Figure 3 (a, b, c) and Section 2.1.1, retrained and drawn
    "rednet.bench",      # bench: throughput vs compute bound
    "rednet.restore",    # restore: restore one's own images
    "rednet.tables",     # tables: regenerate Tables 1-7
    "rednet.demo",       # demo: the end-to-end demo
    "rednet.zoo",        # zoo: the shipped models in models/
    "rednet.zooresults", # zoo-results: Tables 1-7 of the shipped models -> docs/results/, the cards
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=os.environ.get("REDNET_PROG", "python -m rednet"),
                                     description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:  # module not written yet
                continue
            raise
        mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        rc = args.func(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)


def cli() -> None:
    """The ``rednet`` console command: ``main()`` in bin/python's environment. Outside it (no
    ``REDNET_CAFFE_BIN``, which bin/python sets) it runs itself again through the checkout's
    bin/python; where there is none, here."""
    from . import paths
    py = paths.ROOT / "bin" / "python"
    if "REDNET_CAFFE_BIN" not in os.environ and py.is_file():
        os.environ.setdefault("REDNET_PROG", "rednet")
        os.execv(str(py), [str(py), "-m", "rednet", *sys.argv[1:]])
    sys.exit(main())


if __name__ == "__main__":
    sys.exit(main())
