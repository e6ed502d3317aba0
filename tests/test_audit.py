"""Dataset audit: inputs, network specs, the index and summary (fast, no Ray), and end-to-end local Ray runs
(``slow``): maps equal to single-machine ``sensitivity_map``, idempotent reruns, crash and resume, error rows,
mean maps equal to the mean of the per-image maps."""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import WEIGHTS, build_random_cnn, shared_photo, shortcut_scenes
from PIL import Image

from sensmap import audit
from sensmap.errors import ModelError, ParameterError
from sensmap.result import SensitivityResult

MOBILENET_025 = WEIGHTS / "mobilenet_v1_0.25_128.weights.h5"
MOBILENET_DIR = "MobileNet_a0.25_128px"
SETTINGS = dict(sizes=(0.5, 0.25), stride=0.5, fill="blur", fit="crop")  # 58 passes; crop and blur test the fit


# --------------------------------------------------------------------------- builders


def write_scenes(folder: Path, count: int, seed: int = 5) -> list[dict]:
    """``count`` synthetic scenes of various sizes as PNG files; manifest rows with label and object box."""
    images, labels, boxes = shortcut_scenes(count, size=64, seed=seed)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (pixels, label, box) in enumerate(zip(images, labels, boxes, strict=True)):
        size = (64 + 12 * (i % 4), 64 + 8 * (i % 3))  # (width, height): not the networks' grids
        Image.fromarray(pixels.astype(np.uint8)).resize(size).save(folder / f"s{i:02d}.png")
        y0, x0, y1, x1 = (float(v) / 64 for v in box)
        rows.append(dict(image_id=f"scene/{i:02d}", path=f"{folder.name}/s{i:02d}.png",
                         label=("warm", "cool")[label], x0=x0, y0=y0, x1=x1, y1=y1))  # fmt: skip
    return rows


def write_csv(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["image_id", "path", "label", "x0", "y0", "x1", "y1"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def save_cnn(path: Path) -> Path:
    build_random_cnn(40, 48, classes=3, seed=2).save(path)
    return path


class StubNetwork:
    """Enough of a Network for audit.index._index_fields: class names by index or name."""

    def __init__(self, labels):
        self.labels = labels

    def class_index(self, target):
        if target in self.labels:
            return self.labels.index(target)
        raise ParameterError(f"unknown class {target!r}")


def synthetic_result(seed: int, grid=(16, 16), classes=("cat", "dog", "fox"), name="toy") -> SensitivityResult:
    rng = np.random.default_rng(seed)
    from sensmap.windows import count_passes

    passes = count_passes(grid[0], grid[1], (0.5, 0.25), 0.5)
    outputs = rng.dirichlet(np.ones(len(classes)), size=passes).astype(np.float32)
    reference = rng.dirichlet(np.ones(len(classes))).astype(np.float32)
    return SensitivityResult(
        model_name=name, labels=classes, input_size=grid, photo_size=(40, 60), fit="squash", sizes=(0.5, 0.25),
        stride=0.5, fill="gray", score_kind="probability", target=int(np.argmax(reference)),
        reference_probabilities=reference, outputs=outputs, metadata={},
    )  # fmt: skip


TOY_NETWORKS = {
    "toy": ((16, 16), ("cat", "dog", "fox")),
    "toy2": ((12, 20), ("cat", "dog", "owl")),  # another grid; "fox" is no class of it, "owl" none of toy
}


def fake_audit(root: Path, count: int = 9, models: tuple[str, ...] = ("toy",), unlabelled: int = 0) -> Path:
    """An audit folder written without Ray or TensorFlow: what the workers write, from synthetic results (one
    network, or several of :data:`TOY_NETWORKS`; the last ``unlabelled`` images without a label); no index
    (``rebuild_index`` writes it) and no pair table."""
    settings = {"sizes": [0.5, 0.25], "stride": 0.5, "fill": "gray", "score": "probability", "fit": "squash",
                "target": None}  # fmt: skip
    state = {"settings": settings, "models": {model: {"network": model} for model in models}}
    (root / audit.MAPS_DIR).mkdir(parents=True)
    (root / audit.AUDIT_JSON).write_text(json.dumps(state))
    photo = root / "photo.png"
    Image.fromarray(np.full((40, 60, 3), 120, np.uint8)).save(photo)
    for number, model in enumerate(models):
        folder = root / audit.MAPS_DIR / f"model={model}"
        folder.mkdir()
        grid, classes = TOY_NETWORKS[model]
        network = StubNetwork(classes)
        for i in range(count):
            result = synthetic_result(i + 1000 * number, grid, classes, model)
            label = ("cat", "dog", "zebra")[i % 3] if i < count - unlabelled else None  # "zebra": no class of it
            box = [0.1, 0.2, 0.6, 0.7] if i % 2 == 0 else None
            record = {"image_id": f"img/{i}", "path": str(photo), "label": label, "box": box, "model": model,
                      "network": model}  # fmt: skip
            fields = audit.index._index_fields(result, label, box, network)
            result.metadata["audit"] = {**record, **fields, "seconds": 0.1}
            result.save(folder / f"{audit.image_key(record['image_id'])}.npz")
        error = {"image_id": "broken", "path": "/nowhere.png", "label": "cat", "box": None, "model": model,
                 "stage": "input", "error": "no such file: /nowhere.png"}  # fmt: skip
        (folder / f"broken{audit.ERROR_SUFFIX}").write_text(json.dumps(error))
    return root


def support_for(result: SensitivityResult, class_index: int) -> np.ndarray:
    return result.maps_for(class_index)[1].astype(np.float64)


# --------------------------------------------------------------------------- fast: inputs and specs


def test_image_keys_are_safe_file_names():
    assert audit.image_key("wolves/a b.jpg") == "wolves%2Fa%20b.jpg"
    assert audit.image_key("..") == "%2E." and audit.image_key(".hidden") == "%2Ehidden"
    long_a, long_b = audit.image_key("x" * 500 + "a"), audit.image_key("x" * 500 + "b")
    assert long_a != long_b and len(long_a) <= audit.MAX_KEY_LENGTH and "/" not in long_a
    with pytest.raises(ParameterError):
        audit.image_key("")


def test_collect_folder_is_recursive_with_folder_labels(tmp_path):
    for name in ("wolf/a.jpg", "wolf/deep/b.PNG", "husky/c.webp", "top.png", "notes.txt", ".hidden/d.png",
                 "wolf/.e.png", "out/summary.png"):  # fmt: skip
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    items = audit.collect_inputs(tmp_path, exclude=tmp_path / "out")
    assert [(i.image_id, i.label) for i in items] == [
        ("top.png", None), ("husky/c.webp", "husky"), ("wolf/a.jpg", "wolf"), ("wolf/deep/b.PNG", "deep"),
    ]  # fmt: skip
    assert all(Path(i.path).is_absolute() for i in items)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ParameterError, match="no images"):
        audit.collect_inputs(tmp_path / "empty")


def test_collect_manifest_csv_and_parquet(tmp_path):
    rows = [
        dict(image_id="a", path="imgs/a.png", label="wolf", x0=0.1, y0=0.2, x1=0.5, y1=0.9),
        dict(image_id="", path="/abs/b.png", label="", x0="", y0="", x1="", y1=""),
        dict(image_id="c", path="c.png", label="3", x0=0.5, y0=0.2, x1=0.4, y1=0.9),  # x1 < x0
        dict(image_id="d", path="d.png", label="wolf", x0=0.1, y0="", x1=0.5, y1=0.9),
    ]
    items = audit.collect_inputs(write_csv(tmp_path / "m.csv", rows))
    assert [i.image_id for i in items] == ["a", "/abs/b.png", "c", "d"]
    assert items[0].path == str(tmp_path / "imgs" / "a.png") and items[0].box == (0.1, 0.2, 0.5, 0.9)
    assert items[1].label is None and items[1].box is None and items[1].problem is None
    assert items[2].label == "3" and "invalid box" in items[2].problem
    assert "incomplete box" in items[3].problem

    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"image_id": ["x", "y"], "path": ["x.png", "y.png"]}), tmp_path / "m.parquet")
    assert [i.path for i in audit.collect_inputs(tmp_path / "m.parquet")] == [str(tmp_path / "x.png"),
                                                                              str(tmp_path / "y.png")]  # fmt: skip
    write_csv(tmp_path / "dup.csv", [rows[0], rows[0]])
    with pytest.raises(ParameterError, match="repeats image ids"):
        audit.collect_inputs(tmp_path / "dup.csv")
    (tmp_path / "nopath.csv").write_text("image_id,file\na,a.png\n")
    with pytest.raises(ParameterError, match="'path' column"):
        audit.collect_inputs(tmp_path / "nopath.csv")
    (tmp_path / "halfbox.csv").write_text("path,x0,y0\na.png,0.1,0.2\n")
    with pytest.raises(ParameterError, match="box columns"):
        audit.collect_inputs(tmp_path / "halfbox.csv")
    with pytest.raises(ParameterError, match="no such folder"):
        audit.collect_inputs(tmp_path / "missing.csv")


def test_resolve_model_names_folders_without_building_networks(tmp_path, shared_weights_dir, monkeypatch):
    monkeypatch.delenv("SENSMAP_WEIGHTS_DIR", raising=False)
    spec = audit.resolve_model("MobileNet", weights=MOBILENET_025)
    assert (spec.name, spec.network, spec.input_size) == (MOBILENET_DIR, "MobileNet α0.25 128px", (128, 128))
    assert spec.weights == str(MOBILENET_025.resolve())
    folder = audit.resolve_model("MobileNet", weights=shared_weights_dir, options={"alpha": 0.25})
    assert folder.name == MOBILENET_DIR and folder.fingerprint == spec.fingerprint
    monkeypatch.setenv("SENSMAP_WEIGHTS_DIR", str(shared_weights_dir))
    assert audit.resolve_model("MobileNetV2").weights.endswith("mobilenet_v2_1.0_224.weights.h5")
    assert audit.resolve_model("MobileNetV2", weights="none").name == "MobileNetV2-random"
    assert audit.resolve_model("mine=MobileNetV2").name == "mine"
    cnn = audit.resolve_model(save_cnn(tmp_path / "tiny cnn.keras"))
    assert (cnn.name, cnn.input_size, cnn.weights) == ("tiny_cnn", (40, 48), None)
    network = cnn.load()
    assert network.input_size == (40, 48)
    with pytest.raises(ModelError, match="unknown network"):
        audit.resolve_model("NoSuchNet")
    with pytest.raises(ModelError, match="no such model file"):
        audit.resolve_model(tmp_path / "absent.keras")


def test_an_audit_folder_refuses_other_settings_or_other_networks(tmp_path):
    cnn = audit.resolve_model(save_cnn(tmp_path / "cnn.keras"))
    settings = audit.AuditSettings.make(**SETTINGS)
    audit.folder._prepare_folder(tmp_path / "out", settings, [cnn], "src")
    audit.folder._prepare_folder(tmp_path / "out", settings, [cnn], "src")  # same: fine
    with pytest.raises(ParameterError, match="other map settings"):
        audit.folder._prepare_folder(tmp_path / "out", audit.AuditSettings.make(sizes=(0.5,)), [cnn], "src")
    build_random_cnn(40, 48, classes=3, seed=9).save(tmp_path / "cnn.keras")  # retrained: other file
    with pytest.raises(ParameterError, match="another network or of other files"):
        audit.folder._prepare_folder(tmp_path / "out", settings, [audit.resolve_model(tmp_path / "cnn.keras")], "src")


def test_boxes_on_the_grid_and_support_outside_them():
    assert audit.grid_box((0.1, 0.2, 0.5, 0.8), (100, 200), (10, 10), "squash") == (0.2, 0.1, 0.8, 0.5)
    # crop of a 100×200 photo to a square grid: the middle 100×100 (x 50..150) is seen
    y0, x0, y1, x1 = audit.grid_box((0.25, 0.0, 0.5, 1.0), (100, 200), (10, 10), "crop")
    assert (y0, y1) == (0.0, 1.0) and x0 == pytest.approx(0.0) and x1 == pytest.approx(0.5)
    assert audit.grid_box((0.0, 0.0, 0.2, 1.0), (100, 200), (10, 10), "crop") is None  # left of the crop
    support = np.zeros((10, 10))
    support[0:2, 0:2] = 1.0  # all the support in the top-left corner
    support[5, 5] = -1.0
    inside = audit.box_support(support, (0.0, 0.0, 0.5, 0.5))
    assert inside["outside_share"] == 0.0 and inside["peak_inside"] and inside["outside_area"] == 0.75
    outside = audit.box_support(support, (0.5, 0.5, 1.0, 1.0))
    assert outside["outside_share"] == 1.0 and not outside["peak_inside"]
    assert outside["support_inside"] == pytest.approx(-1 / 25) and outside["support_outside"] == pytest.approx(4 / 75)
    assert audit.box_support(np.zeros((4, 4)), (0, 0, 0.5, 0.5))["outside_share"] is None
    assert audit.box_support(support, None)["outside_share"] is None


# --------------------------------------------------------------------------- fast: index, filters, means, summary


def test_index_filters_means_and_summary_from_files(tmp_path):
    root = fake_audit(tmp_path / "audit")
    (root / audit.MAPS_DIR / "model=toy" / "junk.npz").write_bytes(b"not a zip")
    index = audit.rebuild_index(root)
    assert (root / "maps/model=toy/junk.npz.corrupt").exists()  # moved aside: the next run recomputes it
    frame = index.frame
    assert len(frame) == 11 and set(frame["status"]) == {"ok", "error"}
    assert frame.loc[frame["image_id"] == "broken", "error"].item() == "no such file: /nowhere.png"
    assert "unreadable map file" in frame.loc[frame["image_id"] == "junk", "error"].item()
    opened = audit.open_audit(root)
    assert opened.index_id == index.index_id and len(opened.frame) == 11 and opened.model_names == ["toy"]

    ok = audit.filter_index(opened, status="ok")
    assert len(ok) == 9 and ok["predicted"].dtype.name == "Int64"
    assert len(audit.filter_index(opened, label=["cat", "dog"], status="ok")) == 6
    assert len(audit.filter_index(opened, has_box=True)) == 5
    assert set(audit.filter_index(opened, text="IMG/1")["image_id"]) == {"img/1"}
    correct = audit.filter_index(opened, correct=True)
    assert all(row.label_index == row.predicted for row in correct.itertuples())
    assert len(correct) + len(audit.filter_index(opened, correct=False)) == 6  # "zebra" is no class: neither
    suspects = audit.shortcut_suspects(opened, "toy", top=None)
    assert len(suspects) == 5 and suspects["outside_share"].is_monotonic_decreasing

    results = {row.image_id: audit.load_image_result(opened, row.image_id, "toy") for row in ok.itertuples()}
    for by, column in (("predicted", "predicted_name"), ("label", "label")):
        counts = audit.class_counts(opened, "toy", by)
        assert sum(c for _, c in counts) == 9
        for value, count in counts:
            mean = audit.class_mean_map(opened, "toy", value, by=by)
            rows = ok[ok[column] == value]
            maps = []
            for row in rows.itertuples():
                result = results[row.image_id]
                wanted = row.predicted if by == "predicted" else (row.label_index if row.label_index >= 0
                                                                  else row.target)  # fmt: skip
                maps.append(support_for(result, int(wanted)))
            assert mean.count == count == len(rows)
            np.testing.assert_allclose(mean.mean, np.mean(maps, axis=0), atol=1e-6)

    paths = audit.write_summary(opened)
    assert Image.open(paths["summary.png"]).size[0] == 1280
    html = Path(paths["summary.html"]).read_text("utf-8")
    assert "Shortcut suspects" in html and "no such file: /nowhere.png" in html and "plotly" in html
    cached = audit.index._cached_means(opened)
    assert ("toy", "label", "cat") in cached
    np.testing.assert_array_equal(audit.class_mean_map(opened, "toy", "cat", by="label").mean,
                                  cached[("toy", "label", "cat")].mean)  # fmt: skip
    figure = audit.class_means_figure(audit.class_means(opened, "toy", "predicted"))
    assert len(figure.data) == len(audit.class_counts(opened, "toy", "predicted"))
    with pytest.raises(ParameterError):
        audit.class_mean_map(opened, "toy", "no such class")
    with pytest.raises(ParameterError, match="not a sensmap audit"):
        audit.open_audit(tmp_path)


def compared_maps(index, image_id: str, model_a: str, model_b: str) -> tuple[np.ndarray, np.ndarray]:
    """What the Compare page compares, worked out here from the two maps: A's map, and B's map of A's class when B
    has a class of that name (else B's own), both on the photo grid."""
    from sensmap.render import map_on_photo

    result_a = audit.load_image_result(index, image_id, model_a)
    result_b = audit.load_image_result(index, image_id, model_b)
    own = result_a.target_name not in result_b.labels
    support_b = result_b.support if own else support_for(result_b, result_b.labels.index(result_a.target_name))
    shape = result_a.photo_size
    return map_on_photo(result_a, result_a.support, shape), map_on_photo(result_b, support_b, shape)


def assert_pairs_agree(index, pairs, rows=None) -> None:
    import sensmap

    frame = index.frame
    for row in (pairs if rows is None else pairs.head(rows)).itertuples():
        numbers = sensmap.agreement(*compared_maps(index, row.image_id, row.model_a, row.model_b))
        assert (row.spearman, row.top_iou, row.q) == (numbers["spearman"], numbers["top_iou"], numbers["q"])
        top = {m: frame[(frame["image_id"] == row.image_id) & (frame["model"] == m)]["predicted_name"].item()
               for m in (row.model_a, row.model_b)}  # fmt: skip
        assert (row.predicted_name_a, row.predicted_name_b) == (top[row.model_a], top[row.model_b])
        assert row.same_top1 == (top[row.model_a] == top[row.model_b])
        assert row.same_class == (row.class_name == row.class_b)


def test_two_networks_pair_table_equals_agreement_of_the_compared_maps(tmp_path):
    """A folder as the previous version wrote it (index, no pair table): the pair table is computed from the maps,
    written beside the index, reused while the index is the same, recomputed when it changes."""
    root = fake_audit(tmp_path / "audit", count=14, models=("toy", "toy2"), unlabelled=2)
    index = audit.rebuild_index(root)
    assert not (root / audit.PAIRS_FILE).exists()
    assert audit.model_pairs(index) == [("toy", "toy2")]
    pairs = audit.pair_table(index)
    assert (root / audit.PAIRS_FILE).is_file() and list(pairs.columns) == [c for c, _ in audit.PAIR_COLUMNS]
    assert sorted(pairs["image_id"]) == sorted(audit.filter_index(index, model="toy", status="ok")["image_id"])
    assert_pairs_agree(index, pairs)
    assert not pairs["same_class"].all() and pairs["same_class"].any()  # toy2 has no "fox": its own map then
    assert pairs["same_top1"].any() and not pairs["same_top1"].all()

    written = (root / audit.PAIRS_FILE).stat().st_mtime_ns
    again = audit.pair_table(audit.open_audit(root))
    assert (root / audit.PAIRS_FILE).stat().st_mtime_ns == written
    assert again.equals(pairs)
    audit.pair_table(audit.rebuild_index(root))  # a new index: the table is computed again
    assert (root / audit.PAIRS_FILE).stat().st_mtime_ns != written

    assert pairs["label"].isna().sum() == 2
    rows = audit.pairs_of(pairs, "toy", "toy2")
    assert rows["spearman"].is_monotonic_increasing and len(rows) == 14
    numbers = audit.pair_numbers(rows)
    assert numbers["mean_spearman"] == pytest.approx(pairs["spearman"].mean())
    assert numbers["same_top1"] == int(pairs["same_top1"].sum()) and numbers["images"] == 14
    assert "14 images mapped by both" in audit.pair_text(index, "toy", "toy2", rows)
    result_a, result_b = audit.pair_results(index, rows["image_id"].iloc[0], "toy", "toy2")
    assert result_b.target_name == rows["class_b"].iloc[0]

    means = audit.paired_class_means(index, "toy", "toy2", "label")
    assert [m.model for m in means] == ["toy", "toy2"] * (len(means) // 2) and len(means) == 6
    for mean in means:
        np.testing.assert_allclose(mean.mean, audit.class_mean_map(index, mean.model, mean.value, by="label").mean)
    figure = audit.agreement_figure(rows, "label", "top_iou")
    assert sorted(len(trace.y) for trace in figure.data) == [2, 4, 4, 4]  # the 2 unlabelled: "–"


def test_summary_compares_two_networks(tmp_path, monkeypatch):
    from sensmap import figures

    root = fake_audit(tmp_path / "audit", count=6, models=("toy", "toy2"))
    drawn = []
    original = figures.Sheet.text
    monkeypatch.setattr(figures.Sheet, "text", lambda self, x, y, text, *a, **k: drawn.append(str(text))
                        or original(self, x, y, text, *a, **k))  # fmt: skip
    paths = audit.write_summary(audit.rebuild_index(root))
    assert "Two networks compared: toy vs toy2" in drawn
    html = Path(paths["summary.html"]).read_text("utf-8")
    assert "Two networks compared: toy vs toy2" in html and "Where the two networks look most differently" in html
    assert (root / audit.PAIRS_FILE).is_file()


def test_summary_png_prints_names_as_the_dashboard_shows_them(tmp_path, monkeypatch):
    """The summary PNG is drawn with sensmap.figures (DejaVu Sans): network names keep their α and ×."""
    from sensmap import figures

    root = fake_audit(tmp_path / "audit α")
    state = json.loads((root / audit.AUDIT_JSON).read_text())
    state["models"]["toy"]["network"] = "MobileNet α0.25 128×128"
    (root / audit.AUDIT_JSON).write_text(json.dumps(state))
    drawn = []
    original = figures.Sheet.text
    monkeypatch.setattr(figures.Sheet, "text", lambda self, x, y, text, *a, **k: drawn.append(str(text))
                        or original(self, x, y, text, *a, **k))  # fmt: skip
    png = audit.summary._summary_png(audit.rebuild_index(root), [("toy", {"predicted": [], "label": []}, [])])
    assert "sensmap dataset audit: audit α" in drawn
    assert any(line.startswith("MobileNet α0.25 128×128: 9 images mapped") for line in drawn)
    assert Image.open(io.BytesIO(png)).size[0] == 1280


def test_cli_audit_user_errors_exit_2_without_ray(tmp_path, capsys):
    from sensmap.cli import main

    code = main(["audit", str(tmp_path / "nothing"), "-m", "MobileNet", "--weights", str(MOBILENET_025),
                 "--out", str(tmp_path / "out")])  # fmt: skip
    assert code == 2 and "no such folder or manifest" in capsys.readouterr().err
    code = main(["audit", str(tmp_path), "-m", "MobileNet", "-m", "MobileNetV2", "--weights", str(MOBILENET_025),
                 "--weights", "none", "--weights", "none", "--out", str(tmp_path / "out")])  # fmt: skip
    assert code == 2 and "one per --model" in capsys.readouterr().err


def test_a_workers_own_error_is_read_out_of_rays_text():
    """Ray reports a worker's exception by its module path: the injected crash's message must still be found."""
    import traceback

    from sensmap.audit.failures import _first_line, _InjectedCrash

    for error in (_InjectedCrash("injected crash after 3 maps"), ParameterError("injected crash after 3 maps")):
        last = traceback.format_exception_only(type(error), error)[-1]
        assert last.startswith(("sensmap.audit.failures._InjectedCrash: ", "sensmap.errors.ParameterError: "))
        ray_text = f"ray.exceptions.RayTaskError(Whatever): Traceback (most recent call last):\n  File x\n{last}"
        assert _first_line(RuntimeError(ray_text)) == "injected crash after 3 maps"
    assert _first_line(RuntimeError("first line\nsecond")) == "first line"


def test_the_audit_package_imports_neither_ray_nor_tensorflow():
    """The dashboard's Audit page imports sensmap.audit: Ray, TensorFlow and Arrow load only when used."""
    import subprocess
    import sys

    heavy = ("ray", "tensorflow", "keras", "pyarrow")
    code = f"import sys, sensmap.audit; print([m for m in {heavy!r} if m in sys.modules])"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(audit.__file__).parents[2]),
                                                                     os.environ.get("PYTHONPATH")]))}  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert done.stdout.strip() == "[]"


# --------------------------------------------------------------------------- slow: local Ray runs


@pytest.fixture(scope="module")
def ray_session():
    """One local Ray (4 logical CPUs: 2 actors plus the decode tasks) for the module; audits reuse it."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """24 rows: 20 scenes (one with an invalid box), 2 real photos, a corrupt file and a missing one."""
    root = tmp_path_factory.mktemp("dataset")
    rows = write_scenes(root / "scenes", 20)
    rows[19].update(x0=0.9, x1=0.1)
    for image_id, name, label in (("wolf", "wolf_snow.webp", "timber_wolf"), ("coffee", "coffee.png", "espresso")):
        target = root / "photos" / name
        target.parent.mkdir(exist_ok=True)
        target.write_bytes(shared_photo(name).read_bytes())
        rows.append(dict(image_id=image_id, path=f"photos/{name}", label=label, x0=0.2, y0=0.2, x1=0.8, y1=0.8))
    (root / "photos" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"not a jpeg" * 20)
    rows.append(dict(image_id="broken", path="photos/broken.jpg", label="warm", x0="", y0="", x1="", y1=""))
    rows.append(dict(image_id="gone", path="photos/gone.png", label="cool", x0="", y0="", x1="", y1=""))
    return write_csv(root / "manifest.csv", rows), save_cnn(root / "cnn.keras")


def mtimes(folder: Path) -> dict[str, int]:
    return {p.relative_to(folder).as_posix(): p.stat().st_mtime_ns for p in (folder / "maps").rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def first_run(ray_session, dataset, tmp_path_factory):
    manifest, cnn = dataset
    out = tmp_path_factory.mktemp("audit")
    seen = []
    specs = [audit.resolve_model("MobileNet", weights=MOBILENET_025), audit.resolve_model(cnn)]
    stats = audit.run_audit(manifest, specs, out, workers=2, progress=seen.append, **SETTINGS)
    return out, stats, specs, seen


@pytest.mark.slow
def test_audit_maps_equal_single_machine_maps(first_run):
    import sensmap

    out, stats, specs, seen = first_run
    assert (stats.images, stats.processed, stats.skipped, stats.workers) == (24, 24, 0, 2)
    assert stats.maps == 2 * 21 and stats.errors == 2 * 3 and stats.failed_images == 3
    assert seen[0].done == 0 and seen[-1].done == seen[-1].total == 24 and seen[-1].images_per_s > 0
    assert [p.done for p in seen] == sorted(p.done for p in seen)
    index = audit.open_audit(out)
    ok = audit.filter_index(index, status="ok")
    assert len(ok) == 42
    for spec in specs:
        network = spec.load()
        for row in ok[ok["model"] == spec.name].itertuples():
            mapped = audit.load_image_result(index, row.image_id, spec.name)
            alone = sensmap.sensitivity_map(network, sensmap.load_image(row.path), **SETTINGS)
            assert (mapped.target, mapped.photo_size, mapped.passes) == (alone.target, alone.photo_size, alone.passes)
            assert mapped.metadata["photo"] == alone.metadata["photo"]
            np.testing.assert_allclose(mapped.outputs, alone.outputs, atol=1e-5)
            np.testing.assert_allclose(mapped.reference_probabilities, alone.reference_probabilities, atol=1e-5)
            np.testing.assert_allclose(mapped.support, alone.support, atol=1e-5)
            np.testing.assert_allclose(mapped.support_photo, alone.support_photo, atol=1e-5, equal_nan=True)
    wolf = index.row("wolf", MOBILENET_DIR)
    assert wolf["label_index"] == 269 and wolf["top_k_names"][0] == wolf["predicted_name"]  # timber_wolf


@pytest.mark.slow
def test_audit_of_two_networks_writes_their_pair_table(first_run):
    out, _, specs, _ = first_run
    index = audit.open_audit(out)
    pairs = audit.pair_table(index, write=False)
    assert (out / audit.PAIRS_FILE).is_file() and audit.model_pairs(index) == [(specs[0].name, specs[1].name)]
    both = set(audit.filter_index(index, model=specs[0].name, status="ok")["image_id"])
    assert set(pairs["image_id"]) == both and len(pairs) == 21
    assert not pairs["same_class"].any()  # the small CNN has none of ImageNet's classes: its own map
    assert_pairs_agree(index, pairs, rows=6)


@pytest.mark.slow
def test_audit_error_rows_never_stop_the_run(first_run):
    out, stats, specs, _ = first_run
    index = audit.open_audit(out)
    errors = audit.filter_index(index, status="error")
    assert sorted(set(errors["image_id"])) == ["broken", "gone", "scene/19"]
    assert len(errors) == 6 and set(errors["model"]) == {spec.name for spec in specs}
    messages = dict(zip(errors["image_id"], errors["error"], strict=False))
    assert "not an image" in messages["broken"] and "no such file" in messages["gone"]
    assert "invalid box" in messages["scene/19"]


@pytest.mark.slow
def test_audit_rerun_is_a_no_op(first_run, dataset):
    out, _, specs, _ = first_run
    before = mtimes(out)
    stats = audit.run_audit(dataset[0], specs, out, workers=2, **SETTINGS)
    assert (stats.processed, stats.maps, stats.errors, stats.skipped, stats.attempts) == (0, 0, 0, 24, 0)
    assert stats.cluster.startswith("none") and mtimes(out) == before
    assert len(audit.open_audit(out).frame) == 48


@pytest.mark.slow
def test_cli_audit_resumes_the_same_folder(first_run, dataset, capsys):
    from sensmap.cli import main

    out, _, _, _ = first_run
    manifest, cnn = dataset
    code = main(["audit", str(manifest), "-m", "MobileNet", "--weights", str(MOBILENET_025), "-m", str(cnn),
                 "--out", str(out), "--sizes", "0.5", "0.25", "--fill", "blur", "--fit", "crop", "--json"])  # fmt: skip
    captured = capsys.readouterr()
    numbers = json.loads(captured.out)
    assert code == 0 and (numbers["processed"], numbers["skipped"], numbers["failed_images"]) == (0, 24, 3)
    assert "maps/model=MobileNet_a0.25_128px" in captured.err
    code = main(["audit", str(manifest), "-m", str(cnn), "--out", str(out), "--sizes", "0.5"])
    assert code == 2 and "other map settings" in capsys.readouterr().err


@pytest.mark.slow
def test_audit_summary_means_are_means_of_the_image_maps(first_run):
    out, _, specs, _ = first_run
    index = audit.open_audit(out)
    assert {"summary.png", "summary.html", "class_means.npz"} <= {p.name for p in out.iterdir()}
    ok = audit.filter_index(index, status="ok")
    for spec in specs:
        rows = ok[ok["model"] == spec.name]
        results = {r.image_id: audit.load_image_result(index, r.image_id, spec.name) for r in rows.itertuples()}
        for by, column in (("predicted", "predicted_name"), ("label", "label")):
            for mean in audit.class_means(index, spec.name, by, top=None):
                group = rows[rows[column] == mean.value]
                maps = []
                for row in group.itertuples():
                    label_class = row.label_index if row.label_index >= 0 else row.target
                    maps.append(support_for(results[row.image_id], int(row.predicted if by == "predicted"
                                                                        else label_class)))  # fmt: skip
                assert mean.count == len(group) > 0
                np.testing.assert_allclose(mean.mean, np.mean(maps, axis=0), atol=1e-6)
        for row in rows[rows["x0"].notna()].head(3).itertuples():
            result = results[row.image_id]
            box = audit.grid_box((row.x0, row.y0, row.x1, row.y1), result.photo_size, result.input_size, "crop")
            assert audit.box_support(result.support, box)["outside_share"] == pytest.approx(row.outside_share)
    suspects = audit.shortcut_suspects(index, specs[1].name, top=None)
    assert len(suspects) >= 15 and suspects["outside_share"].is_monotonic_decreasing


@pytest.mark.slow
def test_decoding_runs_in_cpu_tasks_before_the_model_actors(ray_session, dataset, tmp_path, capsys):
    manifest, cnn = dataset
    spec = audit.resolve_model(cnn)
    rows = audit.pipeline._pending(audit.collect_inputs(manifest), [spec], tmp_path, retry_errors=False)
    settings = audit.AuditSettings.make(**SETTINGS)
    dataset = audit.pipeline._build_dataset(rows, [spec], settings, tmp_path, 2, 0, 1, None, tmp_path / ".run-x")
    dataset.explain()
    physical = capsys.readouterr().out.split("Physical Plan (Optimized)")[1]
    assert "TaskPoolMapOperator[MapBatches(_decode_rows)]" in physical  # not fused into the actors
    assert "ActorPoolMapOperator[MapBatches(AuditWorker)]" in physical


@pytest.mark.slow
def test_audit_resumes_after_a_crash_computing_only_the_missing_images(ray_session, tmp_path):
    rows = write_scenes(tmp_path / "scenes", 12, seed=8)
    manifest = write_csv(tmp_path / "m.csv", rows)
    spec = audit.resolve_model(save_cnn(tmp_path / "cnn.keras"))
    out = tmp_path / "out"
    with pytest.raises(audit.AuditError, match="run the same command again"):
        audit.run_audit(manifest, [spec], out, workers=2, retries=0, fail_after=("exit", 3), **SETTINGS)
    survived = mtimes(out)
    maps = [name for name in survived if name.endswith(".npz")]
    assert 3 <= len(maps) < 12 and not [n for n in survived if n.rsplit("/", 1)[-1].startswith(".")]
    assert len(audit.open_audit(out).frame) == len(maps)  # the index was rebuilt after the crash

    stats = audit.run_audit(manifest, [spec], out, workers=2, **SETTINGS)
    assert (stats.skipped, stats.processed, stats.maps) == (len(maps), 12 - len(maps), 12 - len(maps))
    after = mtimes(out)
    assert {name: after[name] for name in survived} == survived  # what survived the crash was not redone
    assert len(audit.filter_index(audit.open_audit(out), status="ok")) == 12


@pytest.mark.slow
def test_audit_resumes_by_itself_when_a_worker_dies(ray_session, tmp_path):
    manifest = write_csv(tmp_path / "m.csv", write_scenes(tmp_path / "scenes", 6, seed=9))
    spec = audit.resolve_model(save_cnn(tmp_path / "cnn.keras"))
    stats = audit.run_audit(manifest, [spec], tmp_path / "out", workers=2, retries=1, fail_after=("exit", 1),
                            summary=False, **SETTINGS)  # fmt: skip
    assert stats.attempts == 2 and stats.processed == 6 and stats.maps == 6
    assert not (tmp_path / "out" / "summary.png").exists()
    assert len(audit.filter_index(audit.open_audit(tmp_path / "out"), status="ok")) == 6


def test_npz_files_keep_the_index_row(tmp_path):
    root = fake_audit(tmp_path / "audit", count=1)
    path = next((root / "maps" / "model=toy").glob("*.npz"))
    result = SensitivityResult.load(path)
    assert result.metadata["audit"]["image_id"] == "img/0" and "top_k" in result.metadata["audit"]
    with np.load(io.BytesIO(path.read_bytes())) as data:
        assert "support" in data.files
    assert os.path.basename(path) == "img%2F0.npz"


def test_audit_settings_carry_the_mode_and_the_engine():
    exact, incremental, fast = (audit.AuditSettings.make(**SETTINGS, mode=m) for m in ("exact", "incremental", "fast"))
    assert (incremental.mode, incremental.engine) == ("exact", "incremental") and fast.mode == "fast"
    auto, fast_incremental = (audit.AuditSettings.make(**SETTINGS, mode=m, engine="auto") for m in ("exact", "fast"))
    assert (exact.engine, auto.engine, fast_incremental.engine) == ("dense", "auto", "auto")
    # every engine gives exact's maps: an audit folder may be resumed with any engine, not in fast mode
    assert exact.identity() == incremental.identity() == auto.identity() != fast.identity()
    assert fast.identity() == fast_incremental.identity()
    with pytest.raises(ParameterError, match="exact mode with the incremental engine"):
        audit.AuditSettings.make(mode="incremental", engine="dense")
    with pytest.raises(ParameterError, match="unknown mode"):
        audit.AuditSettings.make(mode="turbo")


@pytest.mark.slow
def test_incremental_audit_equals_exact_maps(ray_session, dataset, tmp_path):
    import sensmap

    manifest, cnn = dataset
    spec = audit.resolve_model("MobileNet", weights=MOBILENET_025)
    stats = audit.run_audit(manifest, [spec], tmp_path / "out", workers=2, mode="incremental", **SETTINGS)
    assert stats.maps == 21
    index = audit.open_audit(tmp_path / "out")
    network = spec.load()
    for row in list(audit.filter_index(index, status="ok").itertuples())[:6]:
        mapped = audit.load_image_result(index, row.image_id, spec.name)
        alone = sensmap.sensitivity_map(network, sensmap.load_image(row.path), **SETTINGS)
        assert mapped.mode == "exact" and mapped.engine_requested == "incremental"
        np.testing.assert_allclose(mapped.outputs, alone.outputs, atol=1e-4)
