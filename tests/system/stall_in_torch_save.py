"""Test launcher: `python tests/system/stall_in_torch_save.py MARKER run CONFIG` runs `tlops` with the second torch.save
of the process stalled in the middle of its file writes (MARKER is created then), so a test can land a signal
exactly there (torch then reports it as `RuntimeError: unexpected pos`). Test-only; never imported by tlops."""

import runpy
import sys
import time
from pathlib import Path

import torch

marker = Path(sys.argv.pop(1))
_save, _calls = torch.save, [0]


class _StallingFile:
    def __init__(self, f):
        self.f, self.writes = f, 0

    def write(self, b):
        n = self.f.write(b)
        self.writes += 1
        if self.writes == 3:
            marker.touch()
            time.sleep(30)
        return n

    def flush(self):
        return self.f.flush()


def _stalling_save(obj, f, *args, **kwargs):
    _calls[0] += 1
    return _save(obj, _StallingFile(f) if _calls[0] == 2 else f, *args, **kwargs)


torch.save = _stalling_save
sys.argv[0] = "tlops"
runpy.run_module("flows.cli", run_name="__main__")
