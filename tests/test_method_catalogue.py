"""The torch-free method catalogue equals the registry of Method classes, is rebuilt when the methods'
source changes, and lets a process list and resolve methods without importing torch."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from autoft_core import method_catalogue
from autoft_core.errors import BadArgumentError
from autoft_core.methods import catalogue, method_names, registry, resolve_params

REPO = Path(__file__).resolve().parent.parent


def test_catalogue_equals_the_registered_classes():
    classes = registry()
    assert method_names() == sorted(classes, key=lambda n: (classes[n].order, n))
    for name, info in catalogue().items():
        cls = classes[name]
        assert (info.summary, info.order, info.one_hot) == (cls.summary, cls.order, cls.one_hot)
        assert list(info.params) == list(cls.params)
        for key, param in cls.params.items():
            got = info.params[key]
            assert (got.default, got.help, got.choices, got.minimum, got.maximum, got.grid, got.all_means) == (
                param.default, param.help, param.choices, param.minimum, param.maximum, param.grid, param.all_means)
            assert type(got.default) is type(param.default)
        assert info.resolve_params({}) == cls.resolve_params({})
        assert info.grid() == cls.grid()


def test_resolving_through_the_catalogue_checks_like_the_class():
    cls = registry()["auto-rgn"]
    given = {"batches": "2", "every": "step"}
    assert resolve_params("auto-rgn", given) == cls.resolve_params(given)
    for bad in ({"batches": "-3"}, {"no_such_param": 1}):
        with pytest.raises(BadArgumentError) as ours:
            resolve_params("auto-rgn", bad)
        with pytest.raises(BadArgumentError) as theirs:
            cls.resolve_params(bad)
        assert str(ours.value) == str(theirs.value)
    with pytest.raises(BadArgumentError, match="method"):
        resolve_params("no-such-method", {})


def test_a_stale_or_broken_file_is_rebuilt_from_the_classes(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOFT_CACHE", str(tmp_path))
    built = method_catalogue.from_classes(registry())
    calls = []

    def build():
        calls.append(1)
        return built

    path = tmp_path / method_catalogue.FILE_NAME
    assert method_catalogue.load_or_build(build) == built and len(calls) == 1  # no file yet: built, written
    assert method_catalogue.load_or_build(build) == built and len(calls) == 1  # read back, equal
    blob = json.loads(path.read_text())
    blob["source"] = "another-source"
    blob["methods"] = blob["methods"][:1]
    path.write_text(json.dumps(blob))
    assert method_catalogue.load_or_build(build) == built and len(calls) == 2  # stale tag: rebuilt
    path.write_text("{not json")
    assert method_catalogue.load_or_build(build) == built and len(calls) == 3


def test_listing_and_resolving_methods_imports_no_torch(tmp_path):
    catalogue()  # the suite's cache holds a current catalogue file
    code = ("import sys, autoft_core.methods as m; names = m.method_names(); m.resolve_params(names[-1], {}); "
            "m.method_info('auto-rgn').grid(); print(len(names), 'torch' in sys.modules)")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == [str(len(method_names())), "False"]
