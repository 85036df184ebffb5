"""Atomic writes: complete files only, with the permissions a plain write would give."""

import os
import stat

import pytest

from aelab._files import _umask, atomic_path, write_bytes, write_text

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_umask_is_read_without_changing_it(umask_027):
    assert _umask() == 0o027
    assert _umask() == 0o027


def test_new_files_get_the_umask_mode_not_mkstemps_0600(tmp_path, umask_027):
    # mkstemp creates 0600; a plain open(path, "w") under umask 027 gives 0640
    path = write_text(tmp_path / "sub" / "report.html", "<p>hi</p>")
    with open(tmp_path / "plain.txt", "w") as f:
        f.write("x")
    assert _mode(path) == _mode(tmp_path / "plain.txt") == 0o640
    assert path.read_text() == "<p>hi</p>"
    assert _mode(write_bytes(tmp_path / "b.bin", b"\x00")) == 0o640


def test_overwriting_keeps_the_existing_files_mode(tmp_path, umask_027):
    path = tmp_path / "results.json"
    path.write_text("old")
    os.chmod(path, 0o604)
    write_text(path, "new")
    assert path.read_text() == "new" and _mode(path) == 0o604


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = write_text(tmp_path / "a.txt", "complete")
    with pytest.raises(RuntimeError, match="interrupted"):
        with atomic_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert path.read_text() == "complete"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]
