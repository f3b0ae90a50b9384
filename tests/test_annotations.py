"""hub.annotations: YOLO boxes, COCO boxes and masks read into regions, matched by path; what it refuses."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from hub.annotations import Region, grow_mask, read_annotations
from hub.errors import AnnotationError

W, H = 80, 60   # image size (width, height): not square, so x and y mix-ups show


@pytest.fixture()
def images(tmp_path):
    """data/ring/a.png, data/ring/b.png, data/cross/c.png (80 x 60 grey); returns (root, paths)."""
    root = tmp_path / "data"
    paths = []
    for rel in ("ring/a.png", "ring/b.png", "cross/c.png"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("L", (W, H), 100).save(root / rel)
        paths.append(root / rel)
    return root, paths


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def save_mask(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def test_yolo_boxes_by_relative_path_and_images_without_one_counted(images, tmp_path):
    root, paths = images
    boxes = tmp_path / "boxes"
    write(boxes / "ring" / "a.txt", "3 0.25 0.5 0.2 0.4\n\n")     # class id ignored, blank line skipped
    write(boxes / "ring" / "b.txt", "")                            # empty: no region, counted as missing
    write(boxes / "classes.txt", "ring\ncross\n")                  # a YOLO export's class list: not a box file
    found = read_annotations(boxes, paths, root)
    assert set(found.regions) == {paths[0]} and found.missing == (paths[1], paths[2])
    assert "1 annotated image(s), 2 without an annotation" in found.summary()
    mask = found.get(paths[0]).mask((H, W))
    rows, cols = np.nonzero(mask)
    # cx 0.25 +- 0.1 of 80 px: x in [12, 28]; cy 0.5 +- 0.2 of 60 px: y in [18, 42] (pixel centres inside)
    assert (cols.min(), cols.max(), rows.min(), rows.max()) == (12, 27, 18, 41)
    assert found.get(paths[0]).area_share((H, W)) == pytest.approx(16 * 24 / (W * H))
    grown = found.get(paths[0]).mask((H, W), grow=3)
    assert grown[18, 9] and not grown[18, 8] and grown[15, 12] and not grown[14, 12]


def test_coco_boxes_by_relative_path_or_unique_file_name(images, tmp_path):
    root, paths = images
    coco = {"images": [{"id": 1, "file_name": "ring/a.png", "width": W, "height": H},
                       {"id": "2", "file_name": "c.jpg", "width": W, "height": H},   # unique name, other extension
                       {"id": 3, "file_name": "elsewhere/never.png", "width": W, "height": H}],  # no boxes: ignored
            "annotations": [{"id": 10, "image_id": 1, "bbox": [8, 6, 16, 12]},
                            {"id": 11, "image_id": 1, "bbox": [40, 30, 8, 8]},
                            {"id": 12, "image_id": "2", "bbox": [0, 0, 80, 60]}]}
    path = write(tmp_path / "ann" / "instances.json", json.dumps(coco))
    for source in (path, path.parent):   # the file, or a folder holding only it
        found = read_annotations(source, paths, root)
        assert set(found.regions) == {paths[0], paths[2]} and found.missing == (paths[1],)
        a = found.get(paths[0])
        assert a.boxes == ((0.1, 0.1, 0.3, 0.3), (0.5, 0.5, 0.6, 38 / 60))
        assert a.mask((H, W)).sum() == 16 * 12 + 8 * 8
        assert found.get(paths[2]).area_share((H, W)) == 1.0


def test_masks_with_the_same_stem_or_a_mask_suffix(images, tmp_path):
    root, paths = images
    masks = tmp_path / "masks"
    first = np.zeros((H, W), np.uint8)
    first[10:20, 30:50] = 255                          # 0/255 mask
    second = np.zeros((H, W), np.uint8)
    second[40:44, 5:9] = 1                             # 0/1 mask, the ultrasound sets' _mask naming
    save_mask(masks / "ring" / "a.png", first)
    save_mask(masks / "cross" / "c_mask.png", second)
    found = read_annotations(masks, paths, root)
    assert set(found.regions) == {paths[0], paths[2]} and found.missing == (paths[1],)
    assert (found.get(paths[0]).mask((H, W)) == (first > 0)).all()
    assert (found.get(paths[2]).mask((H, W)) == (second > 0)).all()
    assert found.get(paths[2]).mask((H // 2, W // 2)).sum() == 4    # resized with the map: 2 x 2 pixels
    grown = found.get(paths[0]).mask((H, W), grow=2.5)
    assert grown[8, 30] and not grown[7, 30] and grown[12, 28] and not grown[12, 27]


def test_boxes_beside_the_images_in_their_own_folder(images):
    root, paths = images
    write(root / "ring" / "a.txt", "0 0.5 0.5 0.5 0.5\n")
    (root / "evidence.json").write_text("{}")           # train.synthetic's own box list: not an annotation
    found = read_annotations(root, paths, root)         # the PNGs are the images, not masks
    assert set(found.regions) == {paths[0]} and len(found.missing) == 2


def test_grow_matches_the_euclidean_distance_transform():
    from scipy.ndimage import distance_transform_edt

    rng = np.random.default_rng(0)
    base = rng.random((57, 83)) > 0.995
    base[20:30, 40:47] = True
    for grow in (0.5, 1.0, 1.5, 4.2, 15.0):
        assert (grow_mask(base, grow) == (distance_transform_edt(~base) <= grow)).all(), grow


def test_a_box_thinner_than_a_pixel_still_covers_its_pixel():
    region = Region("thin.txt", ((0.501, 0.2, 0.504, 0.8),))   # 0.24 px wide at 80 px: no pixel centre inside
    mask = region.mask((H, W))
    assert mask.sum() == 1 and mask[30, 40]
    assert region.area_share((H, W)) > 0


@pytest.mark.parametrize("make, message", [
    (lambda d: write(d / "ring" / "gone.txt", "0 0.5 0.5 0.1 0.1\n"),
     "has no image ring/gone.* under the image folder"),
    (lambda d: write(d / "ring" / "a.txt", "0 0.5 0.5 0.1\n"), "line 1: not a YOLO box 'class cx cy w h'"),
    (lambda d: write(d / "ring" / "a.txt", "0 0.5 0.5 abc 0.1\n"), "line 1: not a YOLO box"),
    (lambda d: write(d / "ring" / "a.txt", "0 0.95 0.5 0.2 0.1\n"), "line 1: box outside the image"),
    (lambda d: write(d / "ring" / "a.txt", "0 0.5 0.5 0 0.1\n"), "line 1: box outside the image"),
    (lambda d: save_mask(d / "ring" / "a.png", np.ones((H // 2, W // 2), np.uint8)),
     f"is {W // 2}x{H // 2} but its image"),
    (lambda d: save_mask(d / "ring" / "a.png", np.zeros((H, W), np.uint8)), "is all zero (no region)"),
    (lambda d: write(d / "ring" / "a.png", "not a png"), "not a readable mask image"),
    (lambda d: write(d / "notes.docx", "x"), "neither a YOLO .txt box file nor a mask image"),
    (lambda d: (write(d / "ring" / "a.txt", "0 0.5 0.5 0.1 0.1\n"),
                save_mask(d / "ring" / "a_mask.png", np.ones((H, W), np.uint8))), "both annotate"),
    (lambda d: write(d / "c.json", json.dumps({"images": [{"id": 1, "file_name": "tumour/x.png", "width": W,
                                                           "height": H}],
                                               "annotations": [{"id": 5, "image_id": 1, "bbox": [1, 1, 5, 5]}]})),
     "names image 'tumour/x.png', which is not under the image folder"),
    (lambda d: write(d / "c.json", json.dumps({"images": [], "annotations": [{"id": 5, "image_id": None,
                                                                              "bbox": [1, 1, 5, 5]}]})),
     "annotation 5 names image_id None, which is not in its 'images'"),
    (lambda d: write(d / "c.json", json.dumps({"images": [], "annotations": ["box"]})),
     "an entry of 'annotations' is not an object"),
    (lambda d: write(d / "c.json", json.dumps({"images": [{"id": 1, "file_name": "ring/a.png", "width": W,
                                                           "height": H}],
                                               "annotations": [{"id": 5, "image_id": 1, "bbox": [70, 1, 20, 5]}]})),
     "bbox [70, 1, 20, 5] lies outside its 80x60 image"),
    (lambda d: write(d / "c.json", "{not json"), "not a COCO file with 'images' and 'annotations'"),
    (lambda d: write(d / "ring" / "zzz.txt", "0 0.5 0.5 0.1 0.1\n").parent.parent / "nowhere",
     "no such file or folder"),
    (lambda d: write(d / "ring" / "b.txt", "") and d, "matches none of the 3 image(s)"),
])
def test_what_the_reader_refuses_is_one_line_naming_the_file(images, tmp_path, make, message):
    root, paths = images
    folder = tmp_path / "ann"
    folder.mkdir()
    made = make(folder)
    source = made if isinstance(made, type(folder)) and made.name == "nowhere" else folder
    with pytest.raises(AnnotationError) as info:
        read_annotations(source, paths, root)
    text = str(info.value)
    assert message in text and "\n" not in text, text
    assert str(folder) in text or "nowhere" in text   # names the file or folder
