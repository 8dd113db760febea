"""mlmyths.native: C files compiled on first use, cached by source, compiler, flags and CPU; a clear
reason instead of a library when it cannot be built."""
from __future__ import annotations

import ctypes
import os
import subprocess
import time

from pathlib import Path

import pytest

from mlmyths import native

needs_compiler = pytest.mark.skipif(native.compiler() is None, reason="no C compiler on this machine")

SOURCE = "int add(int a, int b) { return a + b; }\n"


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "adder.c"
    path.write_text(SOURCE)
    yield path
    native.forget(path)


def _built():
    """The compiled libraries (and failure notes) in the cache, without their digests."""
    from mlmyths.files import cache_dir

    return sorted(p for p in (cache_dir() / "native").glob("*") if p.suffix != ".sha256")


@needs_compiler
def test_compiles_loads_and_caches(source, monkeypatch):
    lib = native.load(source)
    assert lib is not None and lib.add(2, 3) == 5
    assert native.status(source).startswith("built with")
    assert native.load(source) is lib  # once per process
    files = _built()
    assert len(files) == 1 and files[0].name.startswith("adder-") and files[0].suffix == ".so"
    assert "-fopenmp" in native.status(source) or native.OPTIONS[0] != ("-march=native", "-fopenmp")
    # a new process (here: forgotten) finds the cached library and does not compile again
    native.forget(source)
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("compiled again"))
    again = native.load(source)
    assert again is not None and again.add(40, 2) == 42
    assert _built() == files


@needs_compiler
def test_cache_key_follows_source_and_cpu(source, monkeypatch):
    native.load(source)
    first = _built()
    native.forget(source)
    monkeypatch.setattr(native, "_cpu_identity", lambda: "some other CPU")
    native.load(source)  # another CPU must not reuse code built for this one
    native.forget(source)
    source.write_text(SOURCE.replace("a + b", "a + b + 1"))
    lib = native.load(source)
    assert lib.add(2, 3) == 6
    assert len(_built()) == 3 and set(first) <= set(_built())


@needs_compiler
def test_broken_source_gives_the_compiler_error_and_leaves_nothing(source):
    source.write_text("int add(int a, int b) { return a + ; }\n")
    assert native.load(source) is None
    why = native.status(source)
    assert "error" in why.lower() and native.compiler() in why
    # no library and no half-written or temporary files in the cache; the refusals are remembered
    assert _built() and all(path.suffix == ".failed" for path in _built())
    native.forget(source)
    assert native.load(source) is None and native.status(source) == why


def test_disabled_by_environment(source, monkeypatch):
    monkeypatch.setenv("MLMYTHS_NATIVE", "0")
    assert native.load(source) is None
    assert native.status(source) == "disabled by MLMYTHS_NATIVE=0"


def test_missing_compiler(source, monkeypatch):
    monkeypatch.setenv("CC", "/nonexistent/cc --flag")
    assert native.compiler() is None
    assert native.load(source) is None
    assert "no C compiler" in native.status(source)


@needs_compiler
def test_native_dynamic_conv_library_exports_its_kernels():
    from mlmyths.models.lightconv_ops import NATIVE_SOURCE, _native_library

    lib = _native_library()
    if lib is None:
        pytest.skip(native.status(NATIVE_SOURCE))
    for name in ("dynconv_forward", "dynconv_kernel_grad", "dynconv_input_grad"):
        fn = getattr(lib, name)
        assert fn.restype is ctypes.c_int and len(fn.argtypes) >= 11


@needs_compiler
def test_unwritable_cache_gives_a_reason_not_an_error(source, monkeypatch, tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker / "cache"))  # mkdir under a file fails
    assert native.load(source) is None
    assert native.status(source).startswith("no safe cache for compiled kernels") and "Not a directory" in native.status(source)


def _cache() -> Path:
    from mlmyths.files import cache_dir

    return cache_dir() / "native"


@needs_compiler
def test_a_planted_or_tampered_library_is_never_loaded(source):
    """19.5: a library whose bytes do not match the digest recorded at build time is rebuilt, not loaded;
    a link in its place is not followed."""
    lib = native.load(source)
    assert lib.add(2, 3) == 5
    (built,) = _built()
    native.forget(source)
    planted = built.read_bytes().replace(b"GCC", b"XYZ", 1)  # other bytes: someone else's library
    swap = built.with_name("planted.tmp")
    swap.write_bytes(planted)
    os.replace(swap, built)  # a new file: the copy this process already mapped stays as it was
    lib = native.load(source)
    assert lib is not None and lib.add(2, 3) == 5
    assert built.read_bytes() != planted  # rebuilt
    native.forget(source)
    elsewhere = built.with_name("elsewhere.so")
    os.replace(built, elsewhere)
    built.symlink_to(elsewhere)
    assert native.load(source).add(1, 1) == 2 and not built.is_symlink()


def test_a_cache_others_can_write_to_is_refused_with_the_reason(source, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "shared-cache"))
    directory = tmp_path / "shared-cache" / "mlmyths" / "native"
    directory.mkdir(parents=True)
    directory.chmod(0o777)
    assert native.load(source) is None
    why = native.status(source)
    assert why.startswith("no safe cache for compiled kernels") and "writable by others (mode 777)" in why


@needs_compiler
def test_a_failure_that_may_pass_is_not_remembered(source, monkeypatch):
    """A full disk (or no memory, a timeout) must not leave a note that blocks the fast path for good."""
    real_run = subprocess.run

    def disk_full(cmd, *args, **kwargs):
        return subprocess.CompletedProcess(cmd, 1, "", "cc1: fatal error: error writing to /tmp/x: No space left on device")

    monkeypatch.setattr(subprocess, "run", disk_full)
    assert native.load(source) is None and "No space left on device" in native.status(source)
    assert not [p for p in _built() if p.suffix == ".failed"]
    monkeypatch.setattr(subprocess, "run", real_run)
    native.forget(source)
    assert native.load(source).add(2, 2) == 4  # the fast path is back


@needs_compiler
def test_a_remembered_refusal_expires(source, monkeypatch):
    source.write_text("int add(int a, int b) { return a + ; }\n")
    assert native.load(source) is None
    notes = [p for p in _built() if p.suffix == ".failed"]
    assert notes
    old = time.time() - native.FAILURE_MEMORY_S - 60
    for note in notes:
        os.utime(note, (old, old))
    native.forget(source)
    calls = []
    real_run = subprocess.run
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: calls.append(1) or real_run(*a, **k))
    assert native.load(source) is None and calls  # tried again, not skipped


@needs_compiler
def test_cc_may_be_a_command_with_arguments(source, monkeypatch):
    monkeypatch.setenv("CC", f"{native.compiler()} -DOFFSET=1")
    source.write_text("int add(int a, int b) { return a + b + OFFSET; }\n")
    lib = native.load(source)
    assert lib is not None and lib.add(2, 3) == 6
    assert "-DOFFSET=1" in native.status(source)
