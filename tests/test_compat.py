"""The project's Python must run where conda-forge's caffe exists (Python <= 3.10)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FILES = sorted((ROOT / "tools").rglob("*.py"))


def test_there_is_python_to_check():
    assert len(FILES) > 10


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_parses_as_python_3_8(path):
    # SyntaxError on syntax newer than 3.8 (match, except*, parenthesized context managers...)
    ast.parse(path.read_text(), filename=str(path), feature_version=(3, 8))


def test_the_check_catches_newer_syntax():
    with pytest.raises(SyntaxError):
        ast.parse("match x:\n    case 1:\n        pass\n", feature_version=(3, 8))
