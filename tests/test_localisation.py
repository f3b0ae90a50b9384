"""Where maps land on expert regions (hub.explain.localisation), the shortcut check (hub.explain.shortcut) and the
lesion report over many images (hub.explain.lesion), down to the model card's table."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torchvision.transforms.functional import to_tensor

from hub.annotations import Region, read_annotations
from hub.card import localisation_tables
from hub.explain.lesion import (
    LesionRow,
    MapInfo,
    channels_last,
    interval,
    lesion_report,
    lesion_rows,
    report_lines,
    summarise,
    view_probabilities,
)
from hub.explain.localisation import Localisation, baseline_maps, localise, localise_all, random_grid
from hub.explain.place import features, place_predictions
from hub.explain.shortcut import margin, views
from hub.images import find_images
from train.synthetic import load_evidence

SIZE = (100, 120)                                    # H, W of the hand-made maps
BOX = Region("box.txt", ((40 / 120, 30 / 100, 60 / 120, 50 / 100),))   # x 40-60, y 30-50 px


def peaked_at(row: int, col: int, size=SIZE) -> np.ndarray:
    """A map whose single maximum is pixel (row, col), falling off smoothly."""
    rows, cols = np.mgrid[0:size[0], 0:size[1]]
    return np.exp(-((rows - row) ** 2 + (cols - col) ** 2) / 200.0)


# ---- one map against one region ------------------------------------------------------------------------------

def test_the_pointing_game_allows_15_pixels_around_the_box():
    assert localise(peaked_at(40, 50), BOX).hit                        # inside
    assert localise(peaked_at(40, 60 + 14), BOX).hit                  # 14 px right of the box: within 15
    assert not localise(peaked_at(40, 60 + 16), BOX).hit              # 16 px: a miss
    assert not localise(peaked_at(50 + 16, 50), BOX).hit              # 16 px below
    assert localise(peaked_at(50 + 16, 50), BOX, tolerance=17).hit    # unless the tolerance is wider
    assert not localise(peaked_at(40, 60 + 1), BOX, tolerance=0).hit  # 0: inside only


def test_energy_of_a_flat_map_is_the_area_share_and_a_map_inside_scores_one_over_it():
    flat = localise(np.ones(SIZE), BOX)
    assert flat.area == pytest.approx(20 * 20 / (100 * 120)) and flat.energy == pytest.approx(flat.area)
    assert flat.ratio == pytest.approx(1.0)
    inside = np.zeros(SIZE)
    inside[35:45, 45:55] = 1.0
    got = localise(inside, BOX)
    assert got.hit and got.energy == pytest.approx(1.0) and got.ratio == pytest.approx(1 / flat.area)
    half = np.zeros(SIZE)
    half[35:45, 45:55], half[80:90, 0:10] = 1.0, 1.0
    assert localise(half, BOX).energy == pytest.approx(0.5)
    assert localise(np.zeros(SIZE), BOX).ratio == pytest.approx(1.0)   # an empty map spreads like a flat one


def test_localise_all_scores_each_map_as_localise_does():
    maps = {"a": peaked_at(40, 50), "b": peaked_at(90, 5), "c": np.ones(SIZE)}
    together = localise_all(maps, BOX)
    assert together == {name: localise(m, BOX) for name, m in maps.items()}
    assert [together[n].hit for n in maps] == [True, False, True]   # a flat map's peak: the centre, in the box
    with pytest.raises(ValueError, match="tolerance must be >= 0"):
        localise_all(maps, BOX, tolerance=-1)


# ---- baselines ------------------------------------------------------------------------------------------------

def test_baselines_centre_flat_and_random():
    size, grid = (512, 512), (4, 4)
    maps = baseline_maps(size, grid, (128, 128), seed=(0, 1))
    assert set(maps) == {"centre", "flat", "random"} and all(m.shape == size for m in maps.values())
    central = Region("c.txt", ((0.45, 0.45, 0.55, 0.55),))
    corner = Region("k.txt", ((0.0, 0.0, 0.1, 0.1),))
    at_centre, in_corner = localise_all(maps, central), localise_all(maps, corner)
    assert at_centre["centre"].hit and not in_corner["centre"].hit
    assert at_centre["centre"].ratio > 2.5 and in_corner["centre"].ratio < 0.2   # 2.76 and 0.11 by hand
    assert at_centre["flat"].hit and not in_corner["flat"].hit              # a flat map's peak is the centre
    assert at_centre["flat"].ratio == pytest.approx(1.0) and in_corner["flat"].ratio == pytest.approx(1.0)
    # random: noise on the CAM's 4 x 4 grid, placed as a CAM is: reproducible per seed, new for another
    again = baseline_maps(size, grid, (128, 128), seed=(0, 1))["random"]
    other = baseline_maps(size, grid, (128, 128), seed=(0, 2))["random"]
    assert (again == maps["random"]).all() and not np.allclose(other, maps["random"])
    assert maps["random"].min() == 0.0 and maps["random"].max() == 1.0
    # its peak sits where the grid's largest cell is (cell i of a padded CNN centred on pixel i * 32 * 4)
    cells = random_grid(grid, (0, 1)).numpy()
    top = np.unravel_index(cells.argmax(), grid)
    peak = np.unravel_index(maps["random"].argmax(), size)
    assert abs(peak[0] - top[0] * 128) <= 64 and abs(peak[1] - top[1] * 128) <= 64


def test_random_baselines_hit_about_as_often_as_the_region_share_of_places():
    region = Region("r.txt", ((0.5, 0.5, 1.0, 1.0),))   # the bottom-right quarter
    hits = [localise_all(baseline_maps((64, 64), (4, 4), (128, 128), seed=(7, i)), region, 0)["random"].hit
            for i in range(100)]
    assert 0.1 < np.mean(hits) < 0.45, np.mean(hits)


# ---- the shortcut check ---------------------------------------------------------------------------------------

class ReadsTheCorner(nn.Module):
    """Class 1 when the top-left 16 x 16 block is bright, else class 0: its decision lives in a known place."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        brightness = x[:, :, :16, :16].mean(dim=(1, 2, 3))
        return torch.stack([torch.zeros_like(brightness), (brightness - 0.6) * 50], dim=1)


def bright_corner() -> Image.Image:
    """A 64 x 64 grey image with a bright 16 x 16 block at the top left."""
    arr = np.full((64, 64, 3), 100, np.uint8)
    arr[:16, :16] = 230
    return Image.fromarray(arr)


CORNER = Region("corner.txt", ((0.0, 0.0, 0.25, 0.25),))
ELSEWHERE = Region("elsewhere.txt", ((0.6, 0.6, 0.85, 0.85),))


def answers(image, region) -> dict[str, int]:
    v = views(image, region, (64, 64))
    probs = view_probabilities(ReadsTheCorner(), [to_tensor(i) for i in v.values()], torch.device("cpu"), None)
    return dict(zip(v, probs.argmax(axis=1).tolist()))


def test_hiding_the_region_the_model_reads_changes_its_answer_and_hiding_elsewhere_does_not():
    image = bright_corner()
    assert answers(image, CORNER) == {"as_is": 1, "hidden": 0, "only": 1}
    assert answers(image, ELSEWHERE) == {"as_is": 1, "hidden": 1, "only": 0}


def test_the_fill_continues_the_surroundings_and_draws_no_outline():
    arr = np.full((64, 64, 3), 100, np.uint8)
    arr[24:40, 24:40] = 230
    image = Image.fromarray(arr)
    region = Region("c.txt", ((24 / 64, 24 / 64, 40 / 64, 40 / 64),))
    v = views(image, region, (64, 64))
    assert all(i.size == image.size for i in v.values())          # hidden at the image's own size
    hidden, only = np.asarray(v["hidden"]), np.asarray(v["only"])
    assert hidden.min() == hidden.max() == 100                    # a flat background: the lesion gone, no box
    assert (only[24:40, 24:40] == 230).all()                      # the region itself untouched
    assert abs(int(only[0, 0, 0]) - 165) < 60                     # the outside: from the region and its margin
    grown = region.mask((64, 64), grow=margin(region, (64, 64), (64, 64)))
    assert (hidden[~grown] == arr[~grown]).all() and (only[grown] == arr[grown]).all()   # the rest as it was


def test_the_margin_is_a_tenth_of_the_region_and_at_least_a_model_pixel():
    big = Region("b.txt", ((0.0, 0.0, 0.5, 0.5),))                # 256 x 256 px of a 512 px image
    assert margin(big, (512, 512), (128, 128)) == pytest.approx(25.6)
    small = Region("s.txt", ((0.0, 0.0, 0.05, 0.05),))            # ~26 px: 2.6 px < one model pixel (4 px)
    assert margin(small, (512, 512), (128, 128)) == pytest.approx(4.0)


# ---- intervals, summary, card ---------------------------------------------------------------------------------

def test_intervals_resample_whole_patients_when_groups_are_given():
    per_patient = [1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 1.0]      # 8 patients
    values = np.repeat(per_patient, 10)                          # 10 slices each, all alike
    units = np.repeat(np.arange(8), 10)
    grouped, flat = interval(values, units), interval(values)
    assert grouped["mean"] == flat["mean"] == pytest.approx(np.mean(per_patient))
    patients = interval(per_patient)
    assert grouped["high"] - grouped["low"] == pytest.approx(patients["high"] - patients["low"], abs=0.1)
    assert grouped["high"] - grouped["low"] > 2 * (flat["high"] - flat["low"])
    assert interval([1.0, 1.0, 1.0]) == {"mean": 1.0, "low": 1.0, "high": 1.0}


def hand_rows() -> list[LesionRow]:
    """Four images: gradcam hits 3, the centre baseline 1; the shortcut: right as is on all, hidden on 1."""
    rows = []
    for i in range(4):
        loc = lambda hit: Localisation(hit, 0.4 if hit else 0.05, 0.05, 8.0 if hit else 1.0)  # noqa: E731
        maps = {"gradcam": loc(i < 3), "centre": loc(i == 0), "flat": loc(False), "random": loc(i == 1)}
        rows.append(LesionRow(f"img{i}.png", 1, 0.05, maps, {"as_is": 1, "hidden": 1 if i == 0 else 0, "only": 1},
                              {"as_is": 0.9, "hidden": 0.3, "only": 0.8},
                              {"gradcam": MapInfo("gradient", 0, "layer4", 0.1)}, 0.5))
    return rows + [LesionRow("broken.png", 0, error="corrupt or truncated")]


def test_summary_of_rows_and_its_lines():
    report = summarise(hand_rows(), skipped=2, tolerance=15.0)
    json.dumps(report, allow_nan=False)                                  # JSON-ready
    assert (report["images"], report["skipped"], report["unreadable"]) == (4, 2, 1)
    assert report["methods"]["gradcam"]["pointing_game"]["mean"] == 0.75
    assert report["baselines"]["centre"]["pointing_game"]["mean"] == 0.25
    assert report["methods"]["gradcam"]["energy"]["mean"] == pytest.approx((3 * 0.4 + 0.05) / 4)
    acc = report["shortcut"]["accuracy"]
    assert (acc["as_is"]["mean"], acc["hidden"]["mean"], acc["only"]["mean"]) == (1.0, 0.25, 1.0)
    assert report["methods"]["gradcam"]["mode"] == "gradient" and report["resampled"] == "images"
    lines = report_lines(report, "test")
    assert lines[0].startswith("test: 4 annotated image(s) (2 without an annotation, skipped)")
    assert any(line.startswith("Grad-CAM") and "0.750 [" in line for line in lines)
    assert "region hidden 0.250 [" in lines[-2]
    grouped = summarise(hand_rows(), groups={f"img{i}.png": i // 2 for i in range(4)})
    assert grouped["resampled"] == "groups" and grouped["units"] == 2
    with pytest.raises(ValueError, match=r"groups has no patient for img1.png \(3 image\(s\)\)"):
        summarise(hand_rows(), groups={"img0.png": "a"})
    with pytest.raises(ValueError, match="no annotated image to report on"):
        summarise(hand_rows()[-1:])


def box_at(cx: float, cy: float, side: float = 0.1) -> Region:
    return Region("b.txt", ((cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2),))


def test_the_place_floor_reads_class_from_where_the_region_is_and_nothing_else():
    rng = np.random.default_rng(0)
    # class 0 in the upper left or upper right (mirror images of each other), class 1 low in the middle
    spots = {0: [(0.2, 0.2), (0.8, 0.2)], 1: [(0.5, 0.8)]}
    def drawn(n):
        out = []
        for i in range(n):
            c = i % 2
            x, y = spots[c][rng.integers(len(spots[c]))]
            out.append((box_at(x + rng.normal(0, 0.03), y + rng.normal(0, 0.03)), c))
        return out
    reference, queries = drawn(60), drawn(30)
    got = place_predictions(reference, [r for r, _ in queries], mirror=True)
    assert (got == [c for _, c in queries]).all()
    # the same places with the classes drawn at random: the place says nothing, and the floor is near chance
    shuffled = [(r, int(rng.integers(2))) for r, _ in reference]
    blind = place_predictions(shuffled, [r for r, _ in queries])
    assert (blind == [c for _, c in queries]).mean() < 0.8
    # mirror: a box on the left and one on the right are one place; without it they are not
    left, right = box_at(0.2, 0.5), box_at(0.8, 0.5)
    assert (features(left, mirror=True) == pytest.approx(features(right, mirror=True)))
    assert features(left, mirror=False)[0] == pytest.approx(0.2)
    assert place_predictions([(left, 0), (right, 1)], [right], k=1).tolist() == [1]
    assert place_predictions([(left, 0), (right, 1)], [right], mirror=True, k=2).tolist() == [0]   # a tie: the lower
    # a mask region is measured by its extent, as a box would be
    mask = np.zeros((100, 100), bool)
    mask[10:30, 60:90] = True
    assert features(Region("m.png", pixels=mask), False) == pytest.approx([0.75, 0.2, 0.3, 0.2], abs=0.02)
    with pytest.raises(ValueError, match="needs reference regions"):
        place_predictions([], [left])


def test_the_place_floor_goes_into_the_report_its_lines_and_the_card():
    place = {f"img{i}.png": (1 if i < 2 else 0) for i in range(4)}    # right on the first two of four
    report = summarise(hand_rows(), place=place, reference_images=40)
    assert report["shortcut"]["place_only"]["accuracy"]["mean"] == 0.5
    assert any("place and size alone (15 nearest of 40 training regions): 0.500 [" in line
               for line in report_lines(report))
    table = localisation_tables({"test": report})[0]
    assert table["shortcut"][-1]["name"].startswith("the lesion's place and size alone (15 nearest of 40")
    assert table["shortcut"][-1]["accuracy"].startswith("0.500 [")
    assert "place_only" not in summarise(hand_rows())["shortcut"]


def test_card_tables_name_their_split_and_list_methods_baselines_and_the_check():
    report = summarise(hand_rows(), skipped=2)
    tables = localisation_tables({"test": report, "held": report, "validation": report})
    assert [t["split"] for t in tables] == ["validation", "test", "held"]
    t = tables[1]
    assert [r["name"] for r in t["maps"]] == ["Grad-CAM", "centre (baseline)", "flat (baseline)",
                                              "random (baseline)"]
    assert t["maps"][0]["pointing_game"].startswith("0.750 [") and t["skipped"] == 2
    assert [r["name"] for r in t["shortcut"]] == ["as is", "lesion hidden", "only the lesion"]
    assert localisation_tables(None) == []


def test_channels_last_puts_the_weights_back_as_they_were():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten())
    before = model[0].weight.data_ptr()
    with channels_last(model):
        assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
        assert not model[0].weight.is_contiguous()
    assert model[0].weight.data_ptr() == before and model[0].weight.is_contiguous()


# ---- the report on a trained model ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def annotated_test_set(trained_synthetic, tmp_path_factory):
    """The trained model's held-out images with their evidence boxes as YOLO files; 8 per class to explain."""
    root = trained_synthetic.data_dir / "test"
    boxes = tmp_path_factory.mktemp("boxes")
    for rel, (x0, y0, x1, y1) in load_evidence(root).items():
        n = 128.0
        path = boxes / rel.replace(".png", ".txt")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"0 {(x0 + x1) / 2 / n} {(y0 + y1) / 2 / n} {(x1 - x0) / n} {(y1 - y0) / n}\n")
    images = find_images(root)
    chosen = [p for label in ("ring", "cross", "checker") for p in sorted(root.glob(f"{label}/*.png"))[:8]]
    return chosen, read_annotations(boxes, images, root)


def test_lesion_report_on_a_trained_model_beats_the_centre(trained_synthetic, annotated_test_set):
    from hub.model import labels_of, load_local

    model = load_local(trained_synthetic.model_dir)
    labels = labels_of(model)                    # training's order (sorted folder names), not the data's
    chosen, annotations = annotated_test_set
    items = [(p, labels.index(p.parent.name)) for p in chosen]
    seen = []
    # the training images' boxes: the evidence sits anywhere, so its place alone says nothing of the class
    train_root = trained_synthetic.data_dir / "train"
    reference = [(Region("e", ((x0 / 128, y0 / 128, x1 / 128, y1 / 128),)), labels.index(rel.split("/")[0]))
                 for rel, (x0, y0, x1, y1) in load_evidence(train_root).items()]
    report = lesion_report(model, items + [("elsewhere/none.png", 0)], annotations, max_channels=8,
                           progress=lambda done, total: seen.append((done, total)), reference=reference, mirror=True)
    json.dumps(report, allow_nan=False)
    table = "\n".join(report_lines(report))
    assert report["images"] == 24 and report["skipped"] == 1 and seen[-1] == (24, 24)
    centre = report["baselines"]["centre"]["pointing_game"]["mean"]
    for method in ("gradcam", "scorecam"):
        m = report["methods"][method]
        # the evidence box is the only class evidence: the true-class maps point at it more often than the centre
        # does, and put more of their mass there than a flat map (1.0)
        assert m["pointing_game"]["mean"] >= centre + 0.4 and m["ratio"]["low"] > 1.5, table
    assert report["methods"]["scorecam"]["mode"] == "fast" and report["methods"]["scorecam"]["masked_passes"] == 8
    acc = report["shortcut"]["accuracy"]
    # the model reads the pattern: right as is and with only the box; hiding the box costs it most of its answers
    assert acc["as_is"]["mean"] >= 0.9 and acc["only"]["mean"] >= 0.75, table
    assert acc["hidden"]["mean"] <= acc["as_is"]["mean"] - 0.3, table
    place = report["shortcut"]["place_only"]
    assert place["reference_images"] == len(reference) and place["accuracy"]["mean"] <= 0.6, table   # chance 1/3
    rows = lesion_rows(model, items[:2], annotations, methods=("gradcam",), max_channels=8)
    assert [r.path for r in rows] == [p for p, _ in items[:2]] and set(rows[0].maps) == {"gradcam", "centre",
                                                                                        "flat", "random"}
    assert not math.isnan(rows[0].area) and rows[0].seconds > 0
    print(table)


def test_a_centred_head_keeps_the_softmax_and_centres_the_logits(trained_synthetic):
    from bench.localisation import centred_head
    from hub.model import load_local

    model = load_local(trained_synthetic.model_dir)
    twin = centred_head(model)
    x = torch.randn(2, 3, 128, 128)
    with torch.inference_mode():
        logits, centred = model(x), twin(x)
    assert torch.allclose(centred, logits - logits.mean(dim=1, keepdim=True), atol=1e-4)
    assert torch.allclose(centred.softmax(1), logits.softmax(1), atol=1e-5)
    assert not torch.allclose(centred, logits, atol=1e-2)      # the model's own logits were not centred
    assert torch.equal(model.get_classifier().weight, load_local(trained_synthetic.model_dir).get_classifier().weight)


def test_the_bench_prints_the_table_with_the_place_floor(trained_synthetic, capsys):
    """bench.localisation reproduces the card's table, the floor included, from the training images' regions."""
    from bench.localisation import main

    data = trained_synthetic.data_dir
    # the synthetic sets carry a YOLO file beside each image: the image folder is its own annotation folder
    main(["--model", str(trained_synthetic.model_dir), "--data", str(data / "test"), "--annotations",
          str(data / "test"), "--limit", "6", "--max-channels", "4", "--reference-data", str(data / "train"),
          "--reference-annotations", str(data / "train"), "--scorecam-fill", "constant", "blur", "--centred"])
    out = capsys.readouterr().out
    assert "6 of 60 annotated images" in out and "shortcut check, accuracy: as is" in out
    assert "Score-CAM fill (what a mask removes becomes), on the same 6 images:" in out
    assert "  constant pointing " in out and "  blur     pointing " in out
    assert "place and size alone (15 nearest of 180 training regions)" in out
    assert "Grad-CAM target, on the same 6 images" in out and "  the centred logit " in out
    with pytest.raises(SystemExit):
        main(["--model", "m", "--data", "d", "--annotations", "a", "--reference-data", "r"])
    assert "--reference-data and --reference-annotations go together" in capsys.readouterr().err
