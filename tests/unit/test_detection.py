"""Object detection's parts without training: the COCO reader's messages (file, record, fix), the flip that moves boxes
with the image, COCO mAP on hand-checked tiny cases, and the demo builder's scenes (exact boxes, deterministic)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from tests.helpers import make_detection_dataset
from tlops.detection.files import check_coco_splits, read_coco_dataset
from tlops.detection.metrics import detection_scores
from tlops.detection.model import hflip, xywh_to_xyxy, xyxy_to_xywh
from tlops.errors import DataError


def _edit(path, change):
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def test_the_reader_gives_images_boxes_and_categories(tmp_path):
    data = make_detection_dataset(tmp_path / "d")
    splits, categories, carved = read_coco_dataset(data)
    assert categories == [(1, "square"), (2, "disc")] and not carved
    assert [len(splits[s]) for s in ("train", "val", "test")] == [8, 3, 4]
    im = splits["train"][1]
    assert im.width == im.height == 64 and len(im.boxes) == 2 and im.categories == [2, 1]


@pytest.mark.parametrize(("split", "change", "expected"), [
    ("test", lambda d: d["annotations"][0].update(bbox=[60, 2, 20, 20]),
     r"test.json annotation id 1 \(annotations\[0\]\): bbox \[60, 2, 20, 20\] reaches outside image id 1 \(64x64\)"),
    ("train", lambda d: d["annotations"][1].update(bbox=[3, 3, 0, 5]), r"train.json annotation id 2 .*: bbox .* has no area"),
    ("train", lambda d: d["annotations"][0].update(category_id=9), r"train.json annotation id 1 .*: category_id 9 is not a listed category"),
    ("val", lambda d: d["images"][0].update(width=65), r"val.json image id 1 \(images\[0\]\): image file 'images/val-0.png' is 64x64 but the JSON says 65x64"),
    ("test", lambda d: d["images"][0].update(file_name="images/nope.png"), r"test.json image id 1 .*: image file 'images/nope.png' not found"),
    ("test", lambda d: d["images"][0].update(file_name="../x.png"), r"file_name '../x.png' is outside the dataset folder"),
    ("test", lambda d: d["images"][0].update(file_name="images/train-0.png"), r"test.json image id 1: file 'images/train-0.png' is also in train.json"),
    ("val", lambda d: d["categories"].pop(), r"val.json: its categories \[\(1, 'square'\)\] differ from train.json's"),
    ("train", lambda d: d["annotations"][0].update(image_id=99), r"train.json annotation id 1 .*: image_id 99 is not an image of this file"),
])
def test_bad_records_are_named_by_file_and_record_with_a_fix(tmp_path, split, change, expected):
    data = make_detection_dataset(tmp_path / "d")
    _edit(data / f"{split}.json", change)
    _, _, _, problems = check_coco_splits(data)
    assert any(__import__("re").search(expected, p) for p in problems), problems
    with pytest.raises(DataError, match="problem"):
        read_coco_dataset(data)


def test_a_json_syntax_error_names_its_line_and_an_undecodable_image_its_file(tmp_path):
    data = make_detection_dataset(tmp_path / "d")
    text = (data / "train.json").read_text().splitlines()
    text[3] = text[3].rstrip(",")  # a missing comma
    (data / "train.json").write_text("\n".join(text))
    (data / "images" / "test-1.png").write_bytes(b"not a png")
    _, _, _, problems = check_coco_splits(data)
    assert any("train.json line 5 column" in p and "not valid JSON" in p for p in problems), problems
    assert any("test.json image id 2" in p and "could not be decoded" in p for p in problems), problems


def test_too_few_objects_of_a_category_in_train_is_refused(tmp_path):
    data = make_detection_dataset(tmp_path / "d")
    _, _, _, problems = check_coco_splits(data, min_per_category=100)
    assert any("category 'square' (id 1) has" in p and "fewer than 100" in p for p in problems), problems


def test_a_flip_moves_the_boxes_with_the_image():
    image = torch.zeros(3, 20, 30)
    image[:, 5:9, 2:7] = 1.0  # an object at x 2..7, y 5..9
    boxes = xywh_to_xyxy([[2, 5, 5, 4]])
    flipped, moved = hflip(image, boxes)
    ys, xs = torch.nonzero(flipped[0], as_tuple=True)
    assert moved.tolist() == [[float(xs.min()), float(ys.min()), float(xs.max()) + 1, float(ys.max()) + 1]]
    assert xyxy_to_xywh(moved).tolist() == [[23.0, 5.0, 5.0, 4.0]]
    back, again = hflip(flipped, moved)
    assert torch.equal(back, image) and torch.equal(again, boxes)


def test_map_on_hand_checked_cases():
    truth = [{"boxes": [[10, 10, 20, 20], [50, 50, 10, 10]], "labels": [0, 1]}, {"boxes": [[0, 0, 30, 30]], "labels": [0]}]
    perfect = [{"boxes": t["boxes"], "labels": t["labels"], "scores": [0.9] * len(t["labels"])} for t in truth]
    s = detection_scores(truth, perfect, 2)
    assert s["map"] == pytest.approx(1.0) and s["map_50"] == pytest.approx(1.0) and s["per_class"] == pytest.approx({0: 1.0, 1: 1.0})
    recall, precision = s["pr_50"][0]
    assert len(recall) == len(precision) == 101 and min(precision) == pytest.approx(1.0)
    # class 0: a false positive scored above both true ones -> precision 1/2 at recall 1/2, 2/3 at recall 1: the
    # interpolated precision is 2/3 everywhere, AP 2/3 at every IoU threshold. Class 1: its box is twice as tall as the
    # truth (IoU 0.5): a hit at IoU 0.5 only, AP 1 there and 0 at the nine stricter thresholds -> 0.1.
    pred = [{"boxes": [[10, 10, 20, 20], [50, 50, 10, 20]], "scores": [0.9, 0.8], "labels": [0, 1]},
            {"boxes": [[0, 0, 30, 30], [60, 60, 5, 5]], "scores": [0.7, 0.95], "labels": [0, 0]}]
    s = detection_scores(truth, pred, 3)
    assert s["per_class"][0] == pytest.approx(2 / 3) and s["per_class"][1] == pytest.approx(0.1) and math.isnan(s["per_class"][2])
    assert s["map"] == pytest.approx((2 / 3 + 0.1) / 2) and s["map_50"] == pytest.approx((2 / 3 + 1) / 2)
    assert s["pr_50"][0][1] == pytest.approx([2 / 3] * 101)  # interpolated: 2/3 at every recall point
    nothing = detection_scores(truth, [{"boxes": [], "labels": [], "scores": []}] * 2, 2)
    assert nothing["map"] == 0.0 and nothing["per_class"] == {0: 0.0, 1: 0.0}


def test_the_demo_builder_pastes_exact_boxes_and_repeats_itself():
    pytest.importorskip("PIL")
    from tlops.data import build_detect_fashion as b

    rng = np.random.default_rng(0)
    items = np.zeros((3, 28, 28), np.uint8)
    items[:, 6:20, 9:15] = 255  # a bright 6x14 bar
    labels = np.array([8, 1, 0])  # Fashion-MNIST ids: bag, trouser, t-shirt
    first = b.compose(rng, items, labels, np.arange(3))
    again = b.compose(np.random.default_rng(0), items, labels, np.arange(3))
    assert np.array_equal(first[0], again[0]) and first[1] == again[1] and np.array_equal(first[2], again[2])
    image, objects, mask = first
    assert image.shape == (b.SIZE, b.SIZE, 3) and 1 <= len(objects) <= 3
    for cls, (x, y, w, h) in objects:  # each box is the tight extent of its object's mask pixels (objects never touch)
        ys, xs = np.nonzero(mask[max(0, y - 1):y + h + 1, max(0, x - 1):x + w + 1] == cls + 1)
        assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x - max(0, x - 1), y - max(0, y - 1), x - max(0, x - 1) + w,
                                                                    y - max(0, y - 1) + h), (cls, (x, y, w, h))
    assert (mask > 0).sum() == sum(int((mask[y:y + h, x:x + w] == c + 1).sum()) for c, (x, y, w, h) in objects)


def test_predicted_boxes_are_drawn_on_the_image_in_their_class_colour(tmp_path):
    from PIL import Image, ImageColor

    from tlops.detection.draw import PALETTE, draw_detections

    Image.new("RGB", (60, 50), (10, 10, 10)).save(tmp_path / "a.png")
    found = {"boxes": [[5.0, 4.0, 35.0, 26.0]], "labels": ["disc"], "scores": [0.87]}
    drawn = draw_detections(tmp_path / "a.png", found, ["square", "disc"], width=1)
    assert drawn.shape == (3, 50, 60) and drawn.dtype == torch.uint8
    colour = list(ImageColor.getrgb(PALETTE[1]))
    assert drawn[:, 25, 5].tolist() == colour and drawn[:, 25, 40].tolist() == colour and drawn[:, 30, 20].tolist() == colour  # edges
    assert drawn[:, 24, 20].tolist() == [10, 10, 10] and drawn[:, 45, 55].tolist() == [10, 10, 10]  # inside and outside: the image
    nothing = draw_detections(tmp_path / "a.png", {"boxes": [], "labels": [], "scores": []}, ["square", "disc"])
    assert torch.all(nothing == 10)
