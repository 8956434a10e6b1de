"""Tests of stemfuse_hs._warm_cache: the record that lets a command skip the numba warm-up."""

import json
import types

import pytest

from stemfuse_hs import _warm_cache as warm
from stemfuse_hs import cli


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("STEMFUSE_CACHE_DIR", str(folder))
    return folder


def fake_dispatcher(tmp_path, name, compiled=True):
    """What write_warm_record reads of a numba dispatcher with cache=True."""
    source = tmp_path / f"{name}.py"
    source.write_text("def f(): pass\n", encoding="utf-8")
    index = tmp_path / f"{name}.nbi"
    index.write_bytes(b"index")
    code = compile(source.read_text(), str(source), "exec")
    function = types.FunctionType(code.co_consts[0], {})
    cache = types.SimpleNamespace(_cache_file=types.SimpleNamespace(_index_path=str(index)))
    return types.SimpleNamespace(py_func=function, signatures=["sig"] if compiled else [], _cache=cache), source, index


def test_record_written_then_valid(tmp_path, cache_dir):
    d1, _, _ = fake_dispatcher(tmp_path, "a")
    d2, _, _ = fake_dispatcher(tmp_path, "b")
    assert not warm.warm_record_valid()
    path = warm.write_warm_record([d1, d2])
    assert path == warm.warm_record_path() and path.parent == cache_dir
    assert len(json.loads(path.read_text())["functions"]) == 2
    assert warm.warm_record_valid()
    assert not list(cache_dir.glob("*.tmp"))  # written through a renamed temporary file


def test_uncompiled_dispatchers_are_left_out(tmp_path, cache_dir):
    used, _, _ = fake_dispatcher(tmp_path, "used")
    unused, _, _ = fake_dispatcher(tmp_path, "unused", compiled=False)
    path = warm.write_warm_record([used, unused])
    assert [e["source"] for e in json.loads(path.read_text())["functions"]] == [str(tmp_path / "used.py")]
    assert warm.write_warm_record([unused]) is None


def test_deleted_index_or_changed_source_invalidates(tmp_path, cache_dir):
    dispatcher, source, index = fake_dispatcher(tmp_path, "a")
    warm.write_warm_record([dispatcher])
    source.write_text("def f(): return 1\n", encoding="utf-8")
    assert not warm.warm_record_valid()
    warm.write_warm_record([dispatcher])
    assert warm.warm_record_valid()
    index.unlink()
    assert not warm.warm_record_valid()
    assert warm.write_warm_record([dispatcher]) is None  # nothing cached: no record


def test_no_cache_file_no_record(tmp_path, cache_dir):
    dispatcher, _, _ = fake_dispatcher(tmp_path, "a")
    dispatcher._cache = types.SimpleNamespace()  # numba's NullCache: compiled in memory only
    assert warm.write_warm_record([dispatcher]) is None
    assert not warm.warm_record_valid()


@pytest.mark.parametrize("content", ["", "{not json", '{"format": 1}', '{"format": 99, "functions": [1]}', "[]"])
def test_corrupt_record_is_not_valid(cache_dir, content):
    path = warm.warm_record_path()
    path.parent.mkdir(parents=True)
    path.write_text(content, encoding="utf-8")
    assert not warm.warm_record_valid()


def test_unwritable_cache_folder_is_ignored(tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("", encoding="utf-8")
    monkeypatch.setenv("STEMFUSE_CACHE_DIR", str(blocker / "cache"))  # under a file: cannot be made
    dispatcher, _, _ = fake_dispatcher(tmp_path, "a")
    assert warm.write_warm_record([dispatcher]) is None
    assert not warm.warm_record_valid()


def test_record_is_per_numba_cache_dir(cache_dir, monkeypatch, tmp_path):
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    default = warm.warm_record_path()
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "empty"))
    assert warm.warm_record_path() != default


def test_cache_dir_choice(monkeypatch, tmp_path):
    monkeypatch.setenv("STEMFUSE_CACHE_DIR", "")
    assert warm.user_cache_dir() is None and warm.warm_record_path() is None
    assert not warm.warm_record_valid()
    monkeypatch.delenv("STEMFUSE_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    if warm.sys.platform.startswith("linux"):
        assert warm.user_cache_dir() == tmp_path / "stemfuse_hs"


def test_network_file_systems_are_never_used():
    mounts = {"/": "ext4", "/home": "nfs4", "/home/me/local": "ext4", "/mnt/share dir": "cifs"}
    assert warm.is_network_path("/home/you/.cache/stemfuse_hs", mounts)
    assert not warm.is_network_path("/home/me/local/.cache", mounts)
    assert warm.is_network_path("/mnt/share dir/x", mounts)
    assert not warm.is_network_path("/homework", mounts)
    assert not warm.is_network_path("/anything", {})


def test_warm_up_skipped_only_with_a_valid_record(tmp_path, cache_dir):
    with cli._numba_warm_up() as process:
        assert process is not None  # no record: the second process compiles
    dispatcher, _, _ = fake_dispatcher(tmp_path, "a")
    warm.write_warm_record([dispatcher])
    with cli._numba_warm_up() as process:
        assert process is None
