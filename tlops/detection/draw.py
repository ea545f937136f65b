"""Pictures of a detector's predictions: each image with its boxes drawn by torchvision (`draw_bounding_boxes`), the
class name and score written above each box, one colour per class. Used by `tlops predict --out DIR`."""

from __future__ import annotations

from pathlib import Path

# one colour per class index (cycled): distinct on dark and light canvases
PALETTE = ["#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6", "#bcf60c", "#fabebe"]


def image_tensor(path):
    """(3, H, W) uint8 of the file's own pixels, RGB (a file that does not decode: a DataError naming it)."""
    import numpy as np
    import torch
    from PIL import Image, UnidentifiedImageError

    from tlops.errors import DataError

    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DataError(f"image {path} could not be decoded ({e}); replace or remove that file") from None
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


def draw_detections(path, found: dict, classes: list[str], width: int = 2):
    """The image at `path` with `found`'s boxes ([x, y, w, h] in its pixels, as the pyfunc returns them), each labelled
    '<class> <score>'; (3, H, W) uint8."""
    import torch
    from torchvision.ops import box_convert
    from torchvision.utils import draw_bounding_boxes

    image = image_tensor(path)
    if not found.get("boxes"):
        return image
    index = {name: i for i, name in enumerate(classes)}
    colours = [PALETTE[index.get(label, 0) % len(PALETTE)] for label in found["labels"]]
    texts = [f"{label} {float(score):.2f}" for label, score in zip(found["labels"], found["scores"])]
    return draw_bounding_boxes(image, box_convert(torch.as_tensor(found["boxes"], dtype=torch.float32).reshape(-1, 4), "xywh", "xyxy"), labels=texts, colors=colours, width=width)


def save_png(image, path: Path) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(path)
    return path


def overlay_name(i: int, source) -> str:
    """`001-<file stem>.png`: in input order, and two inputs with one file name stay two files."""
    return f"{i + 1:03d}-{Path(str(source)).stem}.png"
