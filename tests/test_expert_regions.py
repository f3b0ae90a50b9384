"""Expert regions beside the examples: drawn on a picture (hub.explain.render), written by the synthetic data
beside each image, listed with the model's examples but never shown as one, found again from a copy of the
example's file, and scored in the app's text (space.handlers). No model here but one tiny Grad-CAM map.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from hub.annotations import Region
from hub.explain.render import draw_region, line_width
from space import handlers, samples
from train.synthetic import make_dataset


def grey(size=(120, 90)) -> Image.Image:
    return Image.new("RGB", size, (90, 120, 150))


def changed(before: Image.Image, after: Image.Image) -> np.ndarray:
    return (np.asarray(before) != np.asarray(after)).any(axis=-1)


def test_a_box_is_outlined_in_white_with_a_dark_edge_and_nothing_else_changes():
    image = grey()
    drawn = draw_region(image, Region("box.txt", boxes=((0.25, 0.2, 0.75, 0.6),)))
    pixels, diff = np.asarray(drawn), changed(image, drawn)
    assert drawn.size == image.size and image.getpixel((30, 18)) == (90, 120, 150)  # a copy: the input is kept
    assert (pixels[18, 30:90] == 255).all() and (pixels[18:54, 30] == 255).all()  # top and left edges: white
    assert (pixels[53, 30:90] == 255).all() and (pixels[18:54, 89] == 255).all()  # bottom and right edges
    assert (pixels[17, 30:90] == 0).all() and (pixels[19, 31:89] == 0).all()      # dark on both sides
    assert diff.sum() == diff[16:56, 28:92].sum()                                 # nothing far from it changed
    assert not diff[21:51, 33:87].any()                                           # nor inside it
    assert line_width((2048, 1536)) == 8 and line_width((96, 96)) == 1


def test_a_mask_is_outlined_along_its_contour_and_a_box_on_the_border_stays_visible():
    image = grey()
    yy, xx = np.mgrid[0:90, 0:120]
    disc = (yy - 45) ** 2 + (xx - 60) ** 2 <= 20 ** 2
    diff = changed(image, draw_region(image, Region("disc_mask.png", pixels=disc)))
    from scipy.ndimage import binary_dilation, binary_erosion

    contour = disc & ~binary_erosion(disc)
    assert diff[contour].all()                                                    # every contour pixel drawn
    assert not diff[~binary_dilation(disc, iterations=3) | binary_erosion(disc, iterations=3)].any()
    whole = draw_region(image, Region("all.txt", boxes=((0.0, 0.0, 1.0, 1.0),)))  # the box is the image
    assert (np.asarray(whole)[0] == 255).all() and (np.asarray(whole)[:, -1] == 255).all()


def test_the_synthetic_images_carry_their_evidence_box_as_yolo(tmp_path):
    data = make_dataset(tmp_path / "data", classes=2, per_class=3, size=48, seed=1)
    evidence = json.loads((data / "evidence.json").read_text())
    for rel, box in evidence.items():
        region = samples.example_region(data / rel)
        assert region is not None and len(region.boxes) == 1, rel
        assert region.boxes[0] == pytest.approx(tuple(v / 48 for v in box), abs=1e-6), rel
    assert sorted(p.name for p in (data / "cross").iterdir()) == [
        "cross_0000.png", "cross_0000.txt", "cross_0001.png", "cross_0001.txt", "cross_0002.png", "cross_0002.txt"]


@pytest.fixture
def examples_folder(tmp_path, sample_paths):
    """examples/ as a model publishes it: a.png with a YOLO box, b.png with a mask, c.png alone, d.png whose box
    file is broken."""
    folder = tmp_path / "examples"
    folder.mkdir()
    for name, src in zip("abcd", sample_paths):
        shutil.copy(src, folder / f"{name}.png")
    (folder / "a.txt").write_text("0 0.5 0.5 0.25 0.25\n")
    mask = np.zeros((96, 96), np.uint8)
    mask[10:40, 50:90] = 255
    Image.fromarray(mask).save(folder / "b_mask.png")
    (folder / "d.txt").write_text("0 0.5 0.5\n")
    return folder


def test_examples_list_images_not_their_annotations_and_regions_are_found_by_content(examples_folder, tmp_path,
                                                                                     sample_paths, caplog):
    examples = samples.folder_images(examples_folder)
    assert [caption for _, caption in examples] == ["a", "b", "c", "d"]  # b_mask.png is b's annotation
    regions = samples.ExpertRegions(examples)
    assert len(regions) == 2 and "d.txt line 1: not a YOLO box" in caplog.text  # a broken box file: logged, no box
    a = regions.of(str(examples_folder / "a.png"))
    assert a.boxes == ((0.375, 0.375, 0.625, 0.625),)
    copy = tmp_path / "gradio-cache" / "upload.png"  # the copy Gradio hands the endpoint
    copy.parent.mkdir()
    shutil.copy(examples_folder / "a.png", copy)
    assert regions.of(str(copy)) == a
    b = regions.of(str(examples_folder / "b.png"))
    assert b.pixels is not None and b.mask((96, 96)).sum() == 30 * 40
    for other in (examples_folder / "c.png", examples_folder / "d.png", sample_paths[4], tmp_path / "gone.png"):
        assert regions.of(str(other)) is None
    assert regions.of(None) is None and regions.of("") is None
    assert len(samples.ExpertRegions([])) == 0


def test_the_text_says_where_the_map_lands_against_a_mask(served, examples_folder):
    path = str(examples_folder / "b.png")
    region = samples.ExpertRegions(samples.folder_images(examples_folder)).of(path)
    r = handlers.explain(served, path, "gradcam", figures=False, region=region)
    loc = r.localisation
    assert r.details["localisation"]["region"] == "mask" and r.details["localisation"]["hit"] == loc.hit
    assert (f"Expert mask: pointing game: {'hit' if loc.hit else 'miss'}, energy in mask: {loc.energy:.2f} "
            f"({loc.ratio:.1f}x its area share)") in r.summary
    plain = handlers.explain(served, path, "gradcam", figures=False)
    assert plain.localisation is None and plain.details["localisation"] is None and "Expert" not in plain.summary
    assert changed(plain.overlay, r.overlay).any() and changed(plain.heatmap, r.heatmap).any()
