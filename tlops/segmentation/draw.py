"""Pictures of a segmenter's predictions: each image with its predicted mask blended in by torchvision
(`draw_segmentation_masks`), one colour per class; a class named "background" is left undrawn (the image shows
through). Used by `tlops predict --out DIR` and by the run's report (the first test images)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tlops.detection.draw import PALETTE, image_tensor


def draw_mask(path, mask: np.ndarray, classes: list[str], alpha: float = 0.5):
    """The image at `path` with `mask` ((H, W) class indices at the image's size) blended in; (3, H, W) uint8."""
    import torch
    from torchvision.utils import draw_segmentation_masks

    image = image_tensor(path)
    m = torch.as_tensor(np.asarray(mask, dtype=np.int64))
    drawn = [c for c in range(len(classes)) if classes[c].lower() != "background" and bool((m == c).any())]
    if not drawn or tuple(m.shape) != tuple(image.shape[1:]):
        return image
    return draw_segmentation_masks(image, torch.stack([m == c for c in drawn]), alpha=alpha,
                                   colors=[PALETTE[c % len(PALETTE)] for c in drawn])


def overlay_sheet(paths: list[str], masks: list[np.ndarray], truth: list[np.ndarray] | None, classes: list[str], path: Path,
                  size: int = 160) -> Path:
    """A PNG of the first images: per row the true mask blended in (when given) and the predicted one, each image resized
    to `size` px (nearest), a legend of the class colours under the rows (torchvision's `make_grid`)."""
    import torch
    from PIL import Image, ImageDraw
    from torch.nn.functional import interpolate
    from torchvision.utils import make_grid

    tiles = []
    for i, (p, m) in enumerate(zip(paths, masks)):
        pair = ([draw_mask(p, truth[i], classes)] if truth is not None else []) + [draw_mask(p, m, classes)]
        tiles += [interpolate(t[None].float(), size=(size, size), mode="nearest")[0].to(torch.uint8) for t in pair]
    grid = make_grid(tiles, nrow=2 if truth is not None else 4, padding=4, pad_value=255) if tiles else torch.full((3, 8, 8), 255, dtype=torch.uint8)
    sheet = Image.fromarray(grid.permute(1, 2, 0).numpy())
    legend = Image.new("RGB", (sheet.width, 20 * (1 + len(classes) // 6)), (255, 255, 255))
    d = ImageDraw.Draw(legend)
    text = ("left: true mask, right: predicted; " if truth is not None else "predicted masks; ") + "colours: "
    d.text((4, 4), text, fill=(0, 0, 0))
    x = 4 + int(d.textlength(text))
    for c, name in enumerate(classes):
        if name.lower() == "background":
            continue
        d.rectangle([x, 6, x + 9, 15], fill=PALETTE[c % len(PALETTE)])
        d.text((x + 12, 4), name, fill=(0, 0, 0))
        x += 20 + int(d.textlength(name))
    out = Image.new("RGB", (sheet.width, sheet.height + legend.height), (255, 255, 255))
    out.paste(sheet, (0, 0))
    out.paste(legend, (0, sheet.height))
    path.parent.mkdir(parents=True, exist_ok=True)
    out.save(path)
    return path
