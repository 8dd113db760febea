import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from mlmyths import files
from mlmyths.errors import UserError


# -- atomic writes -------------------------------------------------------------------------------


def test_atomic_write_failure_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    files.atomic_write_json(path, {"v": 1})

    def broken_fsync(fd):
        raise KeyboardInterrupt  # the writer dies after writing, before the rename

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(KeyboardInterrupt):
        files.atomic_write_json(path, {"v": 2, "big": list(range(1000))})
    assert json.loads(path.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_atomic_write_gives_files_the_usual_permissions_without_touching_the_umask(tmp_path):
    """The umask applies as for any file the user creates (not mkstemp's 0600), and importing or
    writing never changes the process umask."""
    for mask in (0o022, 0o077):
        before = os.umask(mask)
        try:
            files.atomic_write_text(tmp_path / "index.html", "<html></html>")
            assert os.umask(mask) == mask  # unchanged by the write
        finally:
            os.umask(before)
        assert stat.S_IMODE((tmp_path / "index.html").stat().st_mode) == 0o666 & ~mask


def test_concurrent_writers_use_their_own_temporary_files(tmp_path):
    """Two writers of one path never share a temporary file: each call has its own, and a writer
    that fails removes only its own."""
    target = tmp_path / "data.bin"
    with files.atomic_path(target) as first, files.atomic_path(target) as second:
        assert first != second and first.parent == second.parent == tmp_path
        first.write_bytes(b"one")
        second.write_bytes(b"two")
    assert target.read_bytes() == b"one"  # the outer block ends last: its rename wins
    with pytest.raises(RuntimeError), files.atomic_path(target) as tmp:
        tmp.write_bytes(b"broken")
        raise RuntimeError("writer died")
    assert target.read_bytes() == b"one" and sorted(p.name for p in tmp_path.iterdir()) == ["data.bin"]


def test_private_dir_refuses_directories_others_can_write_or_that_are_links(tmp_path):
    good = files.private_dir(tmp_path / "cache" / "native")
    assert stat.S_IMODE(good.stat().st_mode) == 0o700
    loose = tmp_path / "loose"
    loose.mkdir()
    loose.chmod(0o777)
    with pytest.raises(UserError, match=r"writable by others \(mode 777\); run `chmod go-w"):
        files.private_dir(loose)
    link = tmp_path / "link"
    link.symlink_to(good)
    with pytest.raises(UserError, match="must be a real directory, not a link"):
        files.private_dir(link)
    if os.getuid() == 0:  # root can hand a directory to another user: the check must notice
        theirs = tmp_path / "theirs"
        theirs.mkdir(mode=0o700)
        os.chown(theirs, 12345, -1)
        with pytest.raises(UserError, match="belongs to user id 12345"):
            files.private_dir(theirs)


def test_killed_writer_never_leaves_a_partial_file(tmp_path):
    """SIGKILL a process that rewrites a 20 MB JSON file in a loop: every read parses."""
    path = tmp_path / "results.json"
    files.atomic_write_json(path, {"n": -1})
    script = (
        "import sys; from pathlib import Path; from mlmyths.files import atomic_write_json\n"
        "payload = list(range(2_000_000))\n"
        "for n in range(10**6): atomic_write_json(Path(sys.argv[1]), {'n': n, 'payload': payload})\n"
    )
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1] / "src"))
    proc = subprocess.Popen([sys.executable, "-c", script, str(path)], env=env)
    try:
        deadline = time.time() + 180  # generous: the machine may be busy
        while time.time() < deadline and json.loads(path.read_text())["n"] < 1:
            time.sleep(0.05)
        time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    record = json.loads(path.read_text())  # complete JSON, old or new
    assert record["n"] >= 1 and len(record["payload"]) == 2_000_000


def test_jsonable_turns_nonfinite_into_null_and_numpy_into_python():
    out = files.jsonable({"a": float("nan"), "b": np.float32(1.5), "c": torch.tensor([1, 2]), "d": (1, np.inf)})
    assert out == {"a": None, "b": 1.5, "c": [1, 2], "d": [1, None]}
    json.dumps(out, allow_nan=False)


def test_state_round_trip_keeps_arrays_and_nesting(tmp_path):
    value = {"counts": np.arange(5, dtype=np.int64), "w": torch.ones(2, 3), "nested": [{"x": 1.5, "s": "a"}, None],
             "nan": float("nan"), "flag": True}
    files.save_state(tmp_path / "s.npz", value)
    back = files.load_state(tmp_path / "s.npz")
    np.testing.assert_array_equal(back["counts"], np.arange(5))
    assert back["counts"].dtype == np.int64
    np.testing.assert_array_equal(back["w"], np.ones((2, 3), dtype=np.float32))
    assert back["nested"] == [{"x": 1.5, "s": "a"}, None] and back["flag"] is True and np.isnan(back["nan"])
    with pytest.raises(TypeError, match="cannot store a value of type object"):
        files.save_state(tmp_path / "bad.npz", {"x": object()})


