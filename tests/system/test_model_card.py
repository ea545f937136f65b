"""The model card (tlops/model_card.py): every section present, user strings escaped, plots embedded as real
PNGs, strategy-specific record parts shown; and (slow) what a person sees in headless Chromium."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.unit.test_model_card import card_records
from tlops.model_card import write_model_card


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail("headless Chromium is needed for this check and is not installed: `apt-get install chromium` "
                    "(it is in the Makefile's APT_PACKAGES, so `make setup` installs it)")
    return exe


def screenshot(url: str, out: Path, size=(1200, 2000), timeout_s: float = 60) -> Path:
    """`url` rendered by headless Chromium to a PNG of `size` (width, height)."""
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
           f"--user-data-dir={out.parent / 'chromium-profile'}", f"--screenshot={out}", f"--window-size={size[0]},{size[1]}", url]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    assert proc.returncode == 0 and out.exists(), f"chromium failed ({proc.returncode}): {proc.stderr[-2000:]}"
    return out


def test_card_in_headless_chromium(tmp_path):
    """What a person sees: the card rendered by a real browser is the right size and is not blank; its top band
    (title, headline) and its plots hold ink."""
    import numpy as np
    from PIL import Image

    card = write_model_card(tmp_path / "model_card.html", **card_records(tmp_path))
    img = Image.open(screenshot(card.as_uri(), tmp_path / "card.png")).convert("L")
    assert img.size == (1200, 2000)
    px = np.asarray(img, dtype=np.float32)
    assert px.std() > 20, f"the screenshot is nearly uniform (std {px.std():.1f}): the page did not render"
    dark = px < 128
    assert dark[:120].mean() > 0.005, "no text in the top band: the title did not render"
    # the embedded confusion matrix is drawn with a blue colormap: a real image shows saturated blue pixels
    rgb = np.asarray(Image.open(tmp_path / "card.png").convert("RGB"), dtype=np.int16)
    blue = (rgb[..., 2] - rgb[..., 0] > 80).sum()
    assert blue > 2000, f"only {blue} blue pixels: the embedded confusion matrix did not render"
