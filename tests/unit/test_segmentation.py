"""Semantic segmentation's parts without training: the mask CSV reader's messages (file, line, fix), the flip that
moves the mask with the image, mIoU / pixel accuracy on a hand-checked case, and the run-length encoding predict
returns."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from tests.helpers import make_segmentation_dataset
from tlops.data.dataset import _read_meta
from tlops.errors import DataError
from tlops.segmentation.files import check_segmentation_splits, read_segmentation_dataset
from tlops.segmentation.metrics import segmentation_scores
from tlops.segmentation.model import hflip_pair
from tlops.task_types.semantic_segmentation import decode_runs, encode_runs


def _problems(data):
    return check_segmentation_splits(data, _read_meta(data / "dataset.yaml"))[3]


def test_the_reader_gives_pairs_and_labels(tmp_path):
    data = make_segmentation_dataset(tmp_path / "d")
    splits, labels, carved = read_segmentation_dataset(data, _read_meta(data / "dataset.yaml"))
    assert labels == ["background", "square", "disc"] and not carved
    assert [len(splits[s]) for s in ("train", "val", "test")] == [8, 3, 4]
    assert splits["test"][0].path == "images/test-0.png" and splits["test"][0].mask == "masks/test-0.png" and splits["test"][0].line == 2


def test_bad_masks_are_named_by_file_and_line_with_a_fix(tmp_path):
    from PIL import Image

    data = make_segmentation_dataset(tmp_path / "d")
    Image.new("L", (64, 64), 7).save(data / "masks" / "train-1.png")  # a value that is no class index
    Image.new("L", (32, 64), 0).save(data / "masks" / "train-2.png")  # another size than its image
    Image.new("RGB", (64, 64)).save(data / "masks" / "val-0.png")  # three channels
    (data / "masks" / "test-1.png").write_bytes(b"not a png")
    with open(data / "test.csv", "a") as f:
        f.write("images/nope.png,masks/test-0.png\n")
    problems = _problems(data)
    expected = [r"train.csv line 3: mask 'masks/train-1.png' holds values \[7\] that are no class index",
                r"train.csv line 4: mask 'masks/train-2.png' is 32x64 but its image is 64x64",
                r"val.csv line 2: mask 'masks/val-0.png' is a RGB image; save it as an 8-bit single-channel PNG",
                r"test.csv line 3: mask file 'masks/test-1.png' could not be decoded",
                r"test.csv line 6: image file 'images/nope.png' not found"]
    for e in expected:
        assert any(re.search(e, p) for p in problems), (e, problems)
    with pytest.raises(DataError, match="5 problem"):
        read_segmentation_dataset(data, _read_meta(data / "dataset.yaml"))


def test_a_bad_labels_list_and_an_image_in_two_splits_are_refused(tmp_path):
    data = make_segmentation_dataset(tmp_path / "d")
    (data / "dataset.yaml").write_text("modality: image\ntask: semantic_segmentation\nlabels: [background]\n")
    assert any("`labels:` must list the class names in index order" in p and "at least two" in p for p in _problems(data))
    recognised = {"modality": "image", "task": "semantic_segmentation"}  # `tlops init` on a mask folder with no dataset.yaml
    assert any("got None; a mask folder's dataset.yaml holds three lines: `modality: image`, `task: semantic_segmentation` and "
               "`labels: [...]`" in p for p in check_segmentation_splits(data, recognised)[3])
    (data / "dataset.yaml").write_text("modality: image\ntask: semantic_segmentation\nlabels: [background, square, disc]\n")
    with open(data / "test.csv", "a") as f:
        f.write("images/train-0.png,masks/train-0.png\n")
    assert any("test.csv line 6: image 'images/train-0.png' is also in train.csv" in p for p in _problems(data))


def test_a_flip_moves_the_mask_with_the_image():
    x = torch.zeros(3, 4, 6)
    x[:, 1, 0] = 1.0
    y = torch.zeros(4, 6, dtype=torch.int64)
    y[1, 0] = 2
    fx, fy = hflip_pair(x, y)
    assert fx[0, 1, 5] == 1.0 and fy[1, 5] == 2 and int(fy.sum()) == 2
    assert torch.equal(torch.nonzero(fx[0] > 0), torch.nonzero(fy > 0))


def test_miou_and_pixel_accuracy_on_a_hand_checked_case():
    truth = np.array([[0, 0, 1, 1], [0, 0, 1, 255]])
    pred = np.array([[0, 1, 1, 1], [0, 0, 0, 2]])
    s = segmentation_scores([truth], [pred], 3)
    # pixels scored: 7 (one is ignore). class 0: TP 3, FP 1, FN 1 -> 3/5; class 1: TP 2, FP 1, FN 1 -> 2/4; class 2: nowhere
    # in truth, predicted only on the ignored pixel -> left out (nan)
    assert s["per_class"][0] == pytest.approx(0.6) and s["per_class"][1] == pytest.approx(0.5) and math.isnan(s["per_class"][2])
    assert s["miou"] == pytest.approx(0.55) and s["pixel_accuracy"] == pytest.approx(5 / 7)
    with pytest.raises(ValueError, match="shape"):
        segmentation_scores([truth], [pred[:, :3]], 3)


def test_run_length_encoding_round_trips():
    mask = np.array([[0, 0, 1], [1, 1, 2]], np.uint8)
    runs = encode_runs(mask)
    assert runs == [[0, 2], [1, 3], [2, 1]]
    assert np.array_equal(decode_runs(runs, [2, 3]), mask)


def test_a_predicted_mask_is_blended_into_its_image_where_it_is_not_background(tmp_path):
    from PIL import Image, ImageColor

    from tlops.segmentation.draw import PALETTE, draw_mask, overlay_sheet

    Image.new("RGB", (6, 4), (0, 0, 200)).save(tmp_path / "a.png")
    mask = np.zeros((4, 6), np.uint8)
    mask[1:3, 2:5] = 2
    drawn = draw_mask(tmp_path / "a.png", mask, ["background", "square", "disc"], alpha=0.5)
    want = (np.array([0, 0, 200]) * 0.5 + np.array(ImageColor.getrgb(PALETTE[2])) * 0.5).astype(np.uint8)
    assert drawn[:, 1, 2].tolist() == want.tolist()
    assert torch.equal(drawn[:, 0], torch.tensor([[0] * 6, [0] * 6, [200] * 6], dtype=torch.uint8))  # background: the image as is
    sheet = overlay_sheet([str(tmp_path / "a.png")], [mask], [mask], ["background", "square", "disc"], tmp_path / "s.png", size=16)
    with Image.open(sheet) as im:
        assert im.width == 2 * 16 + 3 * 4 and im.height > 16  # two tiles in a row (true | predicted), the legend below
