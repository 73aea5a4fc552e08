"""rednet.lookup.Registry: names to functions, after BasicSR's registry."""
from __future__ import annotations

import pytest

from rednet.lookup import Registry


def test_register_get_and_refuse():
    reg = Registry("thing")
    reg.register("a", obj=len)

    @reg.register()
    def b():
        return 2

    @reg.register("C")
    def c():
        return 3

    assert reg.keys() == ("a", "b", "C") and list(reg) == ["a", "b", "C"] and len(reg) == 3
    assert "a" in reg and "c" not in reg
    assert reg.get("a") is len and reg.get("b") is b and reg.get("C")() == 3
    with pytest.raises(KeyError, match="already registered"):
        reg.register("a")(abs)
    with pytest.raises(KeyError, match="no thing named 'z': expected one of a, b, C"):
        reg.get("z")
