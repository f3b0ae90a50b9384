"""Temperature scaling: fitted on held-out images, carried in config.json, applied wherever probabilities are shown."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from huggingface_hub import ModelCard

from hub import from_pretrained
from hub.__main__ import main as hub_main
from hub.calibration import (
    MIN_IMAGES,
    check_temperature,
    compare,
    expected_calibration_error,
    fit_temperature,
    log_probs,
    scale,
)
from hub.errors import ModelLoadError
from hub.publish import push
from train.__main__ import main as train_main
from train.config import build_config
from train.run import fit
from train.synthetic import make_dataset

FAST = dict(pretrained=False, unfreeze=("all",), img_size=48, batch_size=8, rotation=0.0, color_jitter=0.0,
            dropout=0.0, lr=1e-3, patience=0)


def _planted(n: int = 3000, classes: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels drawn from softmax(logits): these logits are calibrated (T = 1) by construction."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, classes)) * 2.5
    p = scale(z, 1.0)
    return z, np.array([rng.choice(classes, p=row) for row in p])


@pytest.mark.parametrize("planted", [0.2, 1.0, 4.0])
def test_a_planted_temperature_is_recovered_and_removes_the_miscalibration(planted):
    """A model whose logits are the calibrated ones times T0 is under- (T0 < 1) or overconfident (T0 > 1): the fit
    finds T0, and dividing by it brings the ECE down to sampling noise without changing one answer."""
    z, y = _planted()
    shown = z * planted
    t = fit_temperature(shown, y)
    assert t == pytest.approx(planted, rel=0.08)
    record = compare(y, scale(shown, 1.0), t)
    assert record["after"]["accuracy"] == record["before"]["accuracy"]
    assert record["after"]["auc_macro"] == pytest.approx(record["before"]["auc_macro"], abs=0.01)
    assert record["after"]["ece"] < 0.03
    assert record["after"]["log_loss"] <= record["before"]["log_loss"] + 1e-9
    if planted != 1.0:
        assert record["before"]["ece"] > 0.08
    # the underconfident case is the guided MRI models' one: the true class's probability rises
    if planted < 1:
        assert record["after"]["mean_p_true"] > record["before"]["mean_p_true"] + 0.1


def test_scaling_log_probabilities_equals_scaling_logits():
    z, _ = _planted(200)
    assert np.allclose(scale(log_probs(scale(z, 1.0)), 0.3), scale(z, 0.3), atol=1e-9)
    assert np.allclose(scale(z, 1.0), torch.from_numpy(z).softmax(1).numpy())


def test_a_temperature_is_not_fitted_on_too_few_or_error_free_images():
    z, y = _planted()
    with pytest.raises(ValueError, match=f"at least {MIN_IMAGES} held-out images"):
        fit_temperature(z[: MIN_IMAGES - 1], y[: MIN_IMAGES - 1])
    right = z.argmax(1)
    with pytest.raises(ValueError, match="all classified right"):
        fit_temperature(z, right)
    with pytest.raises(ValueError, match="finite"):
        fit_temperature(np.full((60, 3), np.nan), y[:60])


@pytest.mark.parametrize("bad", [0, -1.5, float("nan"), float("inf"), "hot", None, True])
def test_a_bad_temperature_is_refused_with_what_to_give(bad):
    with pytest.raises(ValueError, match="must be a positive number"):
        check_temperature(bad, "--temperature")


def test_ece_of_a_perfectly_calibrated_bin_is_zero_and_of_an_overconfident_one_is_the_gap():
    y = np.array([0, 0, 1, 0])  # 3 of 4 right at confidence 0.75: calibrated
    p = np.array([[0.75, 0.25]] * 4)
    assert expected_calibration_error(y, p) == pytest.approx(0.0)
    assert expected_calibration_error(y, np.array([[0.95, 0.05]] * 4)) == pytest.approx(0.20)


@pytest.fixture(scope="module")
def held_out(tmp_path_factory) -> Path:
    """60 images of the tiny models' classes and size, other seed: enough for a fit (MIN_IMAGES)."""
    return make_dataset(tmp_path_factory.mktemp("held-out") / "data", classes=3, per_class=20, size=64, seed=41)


def _copy(folder: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(folder, tmp_path / folder.name, ignore=shutil.ignore_patterns("checkpoints")))


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    """`python -m hub ARGS` in this process (its main() is the whole command line): exit code, stdout, stderr."""
    capsys.readouterr()
    code = hub_main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_calibrate_writes_the_fitted_temperature_that_every_loader_then_applies(tiny_models, held_out, tmp_path,
                                                                               capsys):
    """`python -m hub calibrate`: T into config.json, the record into metrics.json and the card; from_pretrained
    scales its probabilities and the explanation's by it, leaves the heatmap alone; timm still loads the folder."""
    folder = _copy(tiny_models[0], tmp_path)
    image = next((held_out / "ring").glob("*.png"))
    raw = from_pretrained(folder, device="cpu")
    assert raw.temperature == 1.0
    before_map = raw.explain(image, method="gradcam", faithfulness=False).heatmap
    code, out, err = _cli(capsys, "calibrate", str(folder), "--data", str(held_out), "--split-name", "check")
    assert code == 0, err
    t = json.loads((folder / "config.json").read_text())["temperature"]
    record = json.loads((folder / "metrics.json").read_text())["calibration"]
    assert record["temperature"] == t and record["fitted_on"] == "check" and record["splits"]["check"]["n"] == 60
    split = record["splits"]["check"]
    assert split["after"]["log_loss"] <= split["before"]["log_loss"] + 1e-9  # T = 1 was a candidate
    assert f"temperature {t:.4f}" in out and "ECE" in out and "macro AUC" in out
    card = ModelCard.load(folder / "README.md").text
    assert "### Calibration" in card and f"T = {t:.3f}" in card and "Results above are of the raw" in card
    assert f".div({t})" in card  # the timm snippet divides the logits by it
    clf = from_pretrained(folder, device="cpu")
    assert clf.temperature == pytest.approx(t) and f"temperature={t:g}" in repr(clf)
    logits = clf.logits(image)[0]
    expected = (logits / t).softmax(0)
    got = clf.predict(image)
    assert [got[label] for label in clf.labels] == pytest.approx(expected.tolist(), abs=1e-6)
    e = clf.explain(image, method="gradcam", faithfulness=False)
    assert e.probability == pytest.approx(float(expected[e.target]), abs=1e-6)
    assert np.array_equal(e.heatmap, before_map)  # the network is unchanged: so is its map
    model = timm.create_model(f"local-dir:{folder.resolve()}", pretrained=True).eval()
    assert model.pretrained_cfg["label_names"] == clf.labels  # the extra top-level key does not upset timm


def test_calibrate_refusals_write_nothing(tiny_models, held_out, tmp_path, capsys):
    folder = _copy(tiny_models[0], tmp_path)
    before = {name: (folder / name).read_bytes() for name in ("config.json", "metrics.json", "README.md")}
    few = make_dataset(tmp_path / "few", classes=3, per_class=5, size=64, seed=3)
    cases = [
        (("--data", str(few)), f"at least {MIN_IMAGES} held-out images"),
        (("--data", str(tmp_path / "nowhere")), "not a folder of class folders"),
        (("--data", str(held_out), "--temperature", "0"), "not a positive number and no such model folder"),
        (("--data", str(held_out), "--temperature", str(tiny_models[1])), "has no temperature; calibrate"),
    ]
    for args, message in cases:
        code, _, err = _cli(capsys, "calibrate", str(folder), *args)
        assert code == 2 and message in err and "Traceback" not in err, err
        assert err.count("error:") == 1 and err.splitlines()[-1].startswith("error: ")
    assert {name: (folder / name).read_bytes() for name in before} == before


@pytest.mark.parametrize("value", [0, -2, "hot", None])
def test_a_model_folder_with_a_bad_temperature_is_refused_by_name(tiny_models, tmp_path, value):
    folder = _copy(tiny_models[0], tmp_path)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "temperature": value}))
    with pytest.raises(ModelLoadError, match=r"config\.json temperature must be a positive number.*hub calibrate"):
        from_pretrained(folder, device="cpu")


def test_training_fits_on_validation_then_a_final_fit_carries_it(tmp_path):
    """auto: T fitted on the validation block, the figures published scaled with the raw ones beside them;
    --temperature MODEL: the final fit (no validation) carries that run's T; a number is taken as given."""
    data = make_dataset(tmp_path / "train", classes=3, per_class=40, size=48, seed=2)
    test = make_dataset(tmp_path / "test", classes=3, per_class=10, size=48, seed=8)
    log: list[str] = []
    validated = fit(build_config("her2", data=str(data), out=str(tmp_path / "val"), epochs=1, val_split=0.5,
                                 **FAST), log=log.append, progress=False)
    metrics = json.loads((validated / "metrics.json").read_text())
    record = metrics["calibration"]
    t = json.loads((validated / "config.json").read_text())["temperature"]
    assert record["temperature"] == t and record["fitted_on"] == "validation" and record["applied_by"] == "training"
    val = record["splits"]["validation"]
    assert val["n"] == metrics["validation"]["n"] >= MIN_IMAGES
    assert metrics["validation"]["ece"] == pytest.approx(val["after"]["ece"])  # what is published is scaled
    assert val["after"]["log_loss"] <= val["before"]["log_loss"] + 1e-9
    assert any("\ncalibration: temperature" in line and "ECE" in line for line in log)

    final = fit(build_config("her2", data=str(data), out=str(tmp_path / "final"), epochs=1, val_split=0.0,
                             test_data=str(test), temperature=str(validated), **FAST), log=lambda s: None,
                progress=False)
    assert json.loads((final / "config.json").read_text())["temperature"] == t
    carried = json.loads((final / "metrics.json").read_text())["calibration"]
    assert carried["fitted_on"] is None and "carried from" in carried["source"]
    assert list(carried["splits"]) == ["test"]
    assert from_pretrained(final, device="cpu").temperature == pytest.approx(t)
    card = ModelCard.load(final / "README.md").text
    assert "### Calibration" in card and "optimistic" not in card and "Results above are of the raw" not in card



def test_a_final_fit_without_a_temperature_says_it_is_not_calibrated(tmp_path):
    data = make_dataset(tmp_path / "train", classes=3, per_class=6, size=48, seed=2)
    test = make_dataset(tmp_path / "test", classes=3, per_class=2, size=48, seed=8)
    log: list[str] = []
    out = fit(build_config("her2", data=str(data), out=str(tmp_path / "m"), epochs=1, val_split=0.0,
                           test_data=str(test), **FAST), log=log.append, progress=False)
    assert "temperature" not in json.loads((out / "config.json").read_text())
    assert "calibration" not in json.loads((out / "metrics.json").read_text())
    assert any("not calibrated" in line and "--temperature" in line for line in log)


@pytest.mark.parametrize("value, message", [("0", "--temperature must be a positive number"),
                                            ("-1", "--temperature must be a positive number"),
                                            ("no/such/folder", "not a positive number and no such model folder")])
def test_train_refuses_a_bad_temperature_before_writing(tmp_path, capsys, value, message):
    data = make_dataset(tmp_path / "train", classes=2, per_class=3, size=48, seed=2)
    argv = ["--data", str(data), "--out", str(tmp_path / "m"), "--no-pretrained", "--temperature", value]
    try:
        code = train_main(argv)
    except SystemExit as exc:  # argparse's error(): a bad option is refused with usage and exit code 2
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err, err
    assert not (tmp_path / "m").exists()


def test_a_pushed_temperature_loads_back_from_the_hub(hub_server, hub_token, repo_id, tiny_models, held_out, tmp_path,
                                                      capsys):
    folder = _copy(tiny_models[0], tmp_path)
    assert _cli(capsys, "calibrate", str(folder), "--data", str(held_out), "--temperature", "0.25")[0] == 0
    push(folder, repo_id, tag="auto")
    clf = from_pretrained(f"{repo_id}@v1", device="cpu")
    assert clf.temperature == 0.25
    model = timm.create_model(f"hf-hub:{repo_id}@v1", pretrained=True).eval()
    assert model.pretrained_cfg["label_names"] == clf.labels


def test_a_number_is_carried_as_given_and_auto_or_none_carry_nothing(tmp_path):
    from train.run import carried_temperature

    def cfg(value):
        return build_config("her2", data=str(tmp_path), out=str(tmp_path / "m"), temperature=value, **FAST)

    assert carried_temperature(cfg("0.5")) == (0.5, "given (--temperature)")
    assert carried_temperature(cfg("auto")) is None and carried_temperature(cfg("none")) is None
