"""The engine's code version: what changes a result's key (code) and what does not (prose, layout)."""
from __future__ import annotations

import dis
import shutil

import pytest

from autoft_core import config
from autoft_core.config import ENGINE_ROOT, MEMO_NAME, code_digest, code_version

SOURCE = b'''"""A module."""
import math


def scale(x: float) -> float:
    """Scale x."""
    return x * math.pi * 0.5
'''

SAME_CODE = b'''"""A module, described at length
over two lines."""
import math  # the constant


def scale(x: float) -> float:
    """Scale x by half of pi."""
    "a lone string computes nothing either"

    # the factor
    return (x * math.pi
            * 0.5)
'''


@pytest.mark.parametrize("changed", [
    SOURCE.replace(b"0.5", b"0.25"),                      # a constant
    SOURCE.replace(b"x * math.pi", b"math.pi * x"),      # operand order (other rounding in general)
    SOURCE.replace(b"return x", b"y = 1\n    return x"),  # a statement
    SOURCE.replace(b'"""Scale x."""', b'print("Scale x.")'),  # a string that is used
])
def test_code_changes_the_digest_but_prose_and_layout_do_not(changed):
    assert code_digest(SAME_CODE) == code_digest(SOURCE)
    assert code_digest(changed) != code_digest(SOURCE)
    # independent of the hash: the two "same" sources compile to the same instructions
    assert _function_code(SAME_CODE) == _function_code(SOURCE)
    assert _function_code(changed) != _function_code(SOURCE)


def _function_code(source: bytes) -> list[tuple[str, object]]:
    """The instructions of the source's one function as Python compiles it, less the no-ops it leaves
    where a line or a lone string was."""
    (function,) = [c for c in compile(source, "m", "exec").co_consts if hasattr(c, "co_code")]
    return [(i.opname, i.argval) for i in dis.get_instructions(function) if i.opname != "NOP"]


@pytest.fixture
def engine_copy(tmp_path, monkeypatch):
    """A copy of the engine's sources as ENGINE_ROOT, a fresh cache folder, and no remembered version."""
    root = tmp_path / "autoft_core"
    shutil.copytree(ENGINE_ROOT, root, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(config, "ENGINE_ROOT", root)
    monkeypatch.setenv("AUTOFT_CACHE", str(tmp_path / "cache"))
    code_version.cache_clear()
    yield root
    code_version.cache_clear()


def _version() -> str:
    code_version.cache_clear()
    return code_version()


def _edit(path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_the_version_moves_with_the_engines_code_only(engine_copy):
    method = engine_copy / "methods" / "auto_rgn.py"
    start = _version()
    assert start == code_version.__wrapped__()  # the same without the cache of the function
    _edit(method, '"""', '"""Reworded: ')
    _edit(method, "\nimport", "\n# a new comment\n\nimport")
    assert _version() == start
    _edit(engine_copy / "store.py", "\nimport", "\nimport os as _unused\nimport")  # orchestration only
    assert _version() == start
    _edit(method, "import", "import os\nimport")
    assert _version() != start


def test_the_remembered_version_answers_without_parsing_and_a_damaged_memo_is_rebuilt(engine_copy, tmp_path,
                                                                                    monkeypatch):
    start = _version()
    memo = tmp_path / "cache" / MEMO_NAME
    assert memo.is_file()
    monkeypatch.setattr(config, "code_digest", lambda source: pytest.fail("parsed though remembered"))
    assert _version() == start
    monkeypatch.undo()
    monkeypatch.setattr(config, "ENGINE_ROOT", engine_copy)
    monkeypatch.setenv("AUTOFT_CACHE", str(tmp_path / "cache"))
    memo.write_text("{not json")
    assert _version() == start and "version" in memo.read_text()
    _edit(engine_copy / "finetune.py", "import", "import os\nimport")  # the files' bytes no longer match
    assert _version() != start
