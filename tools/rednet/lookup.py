"""A small name -> function registry, after BasicSR's ``basicsr/utils/registry.py``.

A registry maps names to the functions that implement them; a module registers its
functions with a decorator, and callers look them up by name instead of an if-chain::

    METRIC_REGISTRY = Registry("metric")

    @METRIC_REGISTRY.register()
    def psnr(img, ref, ...): ...

    METRIC_REGISTRY.get("psnr")(img, ref)

Used for the image metrics and SR scoring protocols (:mod:`rednet.metrics`) and for the
methods that fill table cells (:mod:`rednet.tables`).
"""
from __future__ import annotations

from typing import Callable, Iterator


class Registry:
    """Names to objects. ``register()`` (or ``register("Name")``) decorates a function or
    class; ``register(obj=f, name=...)`` registers without decorating. A name is registered
    once; ``get`` of an unknown name raises ``KeyError`` naming the known ones."""

    def __init__(self, name: str):
        self._name = name
        self._obj_map: dict[str, object] = {}

    def _do_register(self, name: str, obj) -> None:
        if name in self._obj_map:
            raise KeyError(f"an object named {name!r} is already registered in the {self._name} registry")
        self._obj_map[name] = obj

    def register(self, name: str | None = None, obj=None) -> Callable | None:
        if obj is not None:
            self._do_register(name or obj.__name__, obj)
            return None

        def deco(func_or_class):
            self._do_register(name or func_or_class.__name__, func_or_class)
            return func_or_class
        return deco

    def get(self, name: str):
        try:
            return self._obj_map[name]
        except KeyError:
            raise KeyError(f"no {self._name} named {name!r}: expected one of {', '.join(self._obj_map)}") from None

    def __contains__(self, name) -> bool:
        return name in self._obj_map

    def __iter__(self) -> Iterator[str]:
        return iter(self._obj_map)

    def keys(self) -> tuple[str, ...]:
        return tuple(self._obj_map)

    def __len__(self) -> int:
        return len(self._obj_map)

    def __repr__(self) -> str:
        return f"Registry({self._name!r}: {', '.join(self._obj_map)})"
