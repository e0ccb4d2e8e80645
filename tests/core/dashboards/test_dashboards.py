"""The PNG dashboards on a real tiny dataset and tokenizer: sizes, non-blank content, panels that
equal a direct computation, render_all's choice of dashboards, the CLI and the thumbnail."""

from __future__ import annotations

import base64
import io
import subprocess
import sys
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
from PIL import Image

from spinlock_core.config.tokenizer import TokenizerConfig
from spinlock_core.dashboards import (
    DASHBOARDS,
    DashboardData,
    DashboardInputError,
    engineering,
    render_all,
    render_one,
    semantic,
    thumbnail_data_uri,
    tokens,
    topological,
)
from spinlock_core.dashboards import dataset as dataset_dash
from spinlock_core.dashboards.semantic import category_correlation
from spinlock_core.dashboards.topological import centroid_cosine, codebook_vectors
from spinlock_core.tokenizer.api import Tokenizer
from spinlock_core.tokenizer.train import train_tokenizer
from tests.conftest import ROOT, TINY_TOKENIZER, build_dataset

N = 96
DPI = 60
MODULES = {"engineering": engineering, "topological": topological, "semantic": semantic, "tokens": tokens,
           "dataset": dataset_dash}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("dash")
    paths = build_dataset(root, **{"sampling.total_samples": N, "dataset.storage.shard_size": 32,
                                   "sampling.batch_size": 32})
    tok, metrics = train_tokenizer(paths.dataset, TokenizerConfig.model_validate(TINY_TOKENIZER), root / "ckpt")
    return SimpleNamespace(root=root, paths=paths, dataset=paths.dataset, ckpt=root / "ckpt", tok=tok, metrics=metrics)


@pytest.fixture(scope="module")
def data(built):
    return DashboardData.from_checkpoint(built.ckpt, dataset=built.dataset)


@pytest.fixture(scope="module")
def rendered(data, tmp_path_factory):
    return render_all(data, tmp_path_factory.mktemp("png"), dpi=DPI)


def _pixels(path) -> np.ndarray:
    with Image.open(path) as img:
        assert img.format == "PNG"
        return np.asarray(img.convert("RGB"))


def test_every_dashboard_renders_a_nonblank_png_of_its_size(rendered):
    assert list(rendered) == list(DASHBOARDS)  # checkpoint + dataset: all five
    for name, r in rendered.items():
        w, h = MODULES[name].FIGSIZE
        assert r.size == (round(w * DPI), round(h * DPI)), name
        px = _pixels(r.path)
        assert px.shape == (r.size[1], r.size[0], 3), name
        assert px.std() > 20, name  # not a blank page
        assert len(np.unique(px.reshape(-1, 3), axis=0)) > 500, name  # images, colour maps, text
        assert r.numbers and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in r.numbers.values())


def test_dpi_sets_the_pixel_size_and_is_validated(data, tmp_path):
    r = semantic.render(data, tmp_path / "s.png", dpi=50)
    assert r.size == (1000, 600) and _pixels(r.path).shape == (600, 1000, 3)
    with pytest.raises(ValueError, match="dpi must be a number in"):
        semantic.render(data, tmp_path / "s.png", dpi=0)


def test_engineering_recomputes_the_validation_error_from_the_checkpoint(rendered, built):
    r, m = rendered["engineering"], built.metrics
    assert r.numbers["val_rows"] == m["n_val"]
    # the validation split rebuilt from the dataset gives metrics.json's reconstruction error
    assert r.numbers["val_mse_recomputed"] == pytest.approx(m["reconstruction_error"], rel=1e-5)
    err = r.arrays["category_mse"]  # [levels, categories]
    sizes = np.asarray(built.tok.categories.sizes)
    assert err.shape == (3, len(sizes))
    assert (err[-1] * sizes).sum() / sizes.sum() == pytest.approx(m["reconstruction_error"], rel=1e-5)
    for lv, q in enumerate(m["per_level_quality"]):
        assert 1 - (err[lv] * sizes).sum() / sizes.sum() == pytest.approx(q, rel=1e-5, abs=1e-6)
    np.testing.assert_array_equal(r.arrays["utilization"].ravel(), [b["utilization_val"] for b in m["codebooks"]])
    assert r.numbers["quality"] == m["quality"] and r.numbers["total_codes"] == sum(built.tok.codebook_sizes)


def test_without_a_dataset_only_checkpoint_numbers_are_drawn(built, tmp_path):
    data = DashboardData.from_checkpoint(built.ckpt)
    assert data.available() == ["engineering", "topological", "semantic"]
    eng = engineering.render(data, tmp_path / "e.png")
    assert "category_mse" not in eng.arrays and "val_rows" not in eng.numbers
    sem = semantic.render(data, tmp_path / "s.png")
    assert "category_correlation" not in sem.arrays and "mean_abs_correlation" not in sem.numbers
    with pytest.raises(ValueError, match="needs other inputs"):
        render_one("tokens", data, tmp_path)


def test_semantic_correlation_is_measured_on_the_data(rendered, built):
    r = rendered["semantic"]
    x = Tokenizer.load(built.ckpt).features(built.dataset).astype(np.float64)
    with h5py.File(built.dataset) as f:
        x = x[~f["metadata/diverged"][()]]
    z = (x - x.mean(0)) / x.std(0)
    a = built.tok.categories.assignment

    def aligned_mean(zc):  # signs of the leading eigenvector of the correlations, first column +
        if zc.shape[1] == 1:
            return zc[:, 0]
        _, v = np.linalg.eigh(np.corrcoef(zc, rowvar=False))
        signs = np.sign(v[:, -1]) * np.sign(v[0, -1])
        return (zc * signs).mean(1)

    direct = np.corrcoef(np.stack([aligned_mean(z[:, a == c]) for c in range(a.max() + 1)]))
    np.testing.assert_allclose(r.arrays["category_correlation"], direct, rtol=1e-10, atol=1e-12)
    off = np.abs(direct[~np.eye(len(direct), dtype=bool)])
    assert r.numbers["mean_abs_correlation"] == pytest.approx(off.mean())
    assert r.numbers["correlation_rows"] == x.shape[0]
    comp = r.arrays["family_composition"]
    assert comp.sum(1).tolist() == list(built.tok.categories.sizes)


def test_category_correlation_known_answers():
    rng = np.random.default_rng(0)
    u, v = rng.standard_normal((2, 500))
    w = 0.6 * u + 0.8 * v
    x = np.stack([u, 3 * u + 1, w, -2 * -w, v * 0 + 7.0], axis=1)  # the constant column is left out
    r = category_correlation(x, [0, 0, 1, 1, 1])
    assert r.shape == (2, 2) and abs(r[0, 1]) == pytest.approx(np.corrcoef(u, w)[0, 1])
    # anti-correlated columns are sign-aligned, not averaged away: [u, -u] still carries u
    r = category_correlation(np.stack([u, -u, w, 2 * w], axis=1), [0, 0, 1, 1])
    assert abs(r[0, 1]) == pytest.approx(np.corrcoef(u, w)[0, 1])
    with pytest.raises(ValueError, match="entries but x has"):
        category_correlation(x, [0, 1])
    with pytest.raises(ValueError, match=r"x must be \[N >= 2, F\]"):
        category_correlation(x[:1], [0, 0, 1, 1, 1])


def test_topological_cosine_matches_the_model_codebooks(rendered, built):
    r = rendered["topological"]
    model = Tokenizer.load(built.ckpt).model
    cent = np.stack([cat.rvq.layers[lv].codebook.detach().double().numpy().mean(0)
                     for cat in model.categories for lv in range(3)])
    cent /= np.linalg.norm(cent, axis=1, keepdims=True)
    np.testing.assert_allclose(r.arrays["centroid_cosine"], cent @ cent.T, atol=1e-12)
    books = codebook_vectors(model)
    assert [len(v) for _, _, v in books] == built.tok.codebook_sizes
    assert [(c, lv) for c, lv, _ in books] == [(c, lv) for c in range(model.num_categories) for lv in range(3)]
    np.testing.assert_allclose(centroid_cosine(books), r.arrays["centroid_cosine"])
    off = (cent @ cent.T)[~np.eye(len(cent), dtype=bool)]
    assert r.numbers["mean_cosine"] == pytest.approx(off.mean()) and r.numbers["max_cosine"] == pytest.approx(off.max())
    assert r.numbers["total_codes"] == sum(built.tok.codebook_sizes) == r.arrays["tsne"].shape[0]


def test_tokens_computed_or_read_from_files(data, built, tmp_path):
    from spinlock_core.tokenizer.data import FeatureFile
    from spinlock_core.tokenizer.tokens_file import write_tokens

    tok = Tokenizer.load(built.ckpt)
    np.testing.assert_array_equal(data.tokens.tokens, tok.tokenize(built.dataset))
    source = FeatureFile(built.dataset)
    meta = source.metadata()
    files = []
    for s, sl in enumerate((slice(0, 40), slice(40, N))):  # two "shards"
        files.append(write_tokens(tmp_path / f"t{s}.h5", data.tokens.tokens[sl], tok,
                                  {k: v[sl] for k, v in meta.items()}, source=str(built.dataset)))
    from_files = DashboardData.from_checkpoint(built.ckpt, tokens=files)
    assert from_files.available() == ["engineering", "topological", "semantic", "tokens"]
    np.testing.assert_array_equal(from_files.tokens.tokens, data.tokens.tokens)
    r = tokens.render(from_files, tmp_path / "tokens.png")
    assert r.numbers["operators"] == N and r.numbers["token_columns"] == 3 * tok.num_categories
    np.testing.assert_allclose(np.nansum(r.arrays["frequencies"], axis=1), 1.0)
    with h5py.File(files[1], "r+") as f:  # tokens of another checkpoint are refused
        f.attrs["checkpoint_id"] = "0" * 64
    with pytest.raises(DashboardInputError, match="not of this checkpoint"):
        _ = DashboardData.from_checkpoint(built.ckpt, tokens=files).tokens
    # a tokens file of a newer format version is refused, naming both versions
    from spinlock_core.tokenizer.tokens_file import TOKENS_VERSION, read_tokens

    assert read_tokens(files[0])["attrs"]["code_version"] == __import__("spinlock_core").__version__
    with h5py.File(files[0], "r+") as f:
        f.attrs["version"] = TOKENS_VERSION + 1
    with pytest.raises(ValueError, match=rf"tokens file version {TOKENS_VERSION + 1} is newer than this code reads "
                                         rf"\({TOKENS_VERSION}\); upgrade spinlock"):
        read_tokens(files[0])


def test_rollouts_are_the_generators_trajectories(data, built):
    from spinlock_core.generation import simulate_operators

    d = data.dataset
    rows = d.rollout_rows
    assert len(rows) == 4 and len(set(d.ic_types[rows])) == 4  # one per IC type
    with h5py.File(built.dataset) as f:
        ics = f["inputs/fields"][rows]
    sim = simulate_operators(d.cfg, d.operator_index[rows], d.unit_params[rows], ics, device="cpu",
                             keep_trajectories=True, progress=lambda *_: None)
    np.testing.assert_array_equal(d.rollouts, sim.trajectories[:, 0][:, d.rollout_times, 0])
    np.testing.assert_array_equal(d.rollouts[:, 0], ics[:, 0])  # state 0 is the stored IC


def test_render_all_on_a_dataset_alone(built, tmp_path):
    out = render_all(built.dataset, tmp_path, dpi=30)
    assert list(out) == ["dataset"] and sorted(p.name for p in tmp_path.iterdir()) == ["dataset.png"]
    r = out["dataset"]
    assert r.size == (600, 510)
    assert r.numbers["operators"] == N and r.numbers["ic_types"] == 4 and r.numbers["parameters"] == 11
    real, conf = r.arrays["ic_balance"]
    assert real.sum() == pytest.approx(1.0) and conf.sum() == pytest.approx(1.0)
    assert r.numbers["max_ic_deviation"] == pytest.approx(np.abs(real - conf).max())


@pytest.mark.parametrize("bad", ["missing", "folder", "text"])
def test_load_rejects_what_is_neither_checkpoint_nor_dataset(bad, tmp_path):
    p = tmp_path / "x"
    if bad == "folder":
        p.mkdir()
    elif bad == "text":
        p.write_text("hello")
    with pytest.raises(DashboardInputError, match="neither a tokenizer checkpoint folder nor a Spinlock dataset"):
        DashboardData.load(p)


def test_cli_writes_the_pngs_and_rejects_a_bad_path(built, tmp_path):
    run = [sys.executable, "-m", "spinlock_core.cli", "dashboards"]
    r = subprocess.run([*run, str(built.ckpt), "--out", str(tmp_path / "c"), "--dpi", "20"], capture_output=True,
                       text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()  # a checkpoint alone: the three checkpoint dashboards
    assert [ln.split(": ")[1].split(",")[0] for ln in lines] == ["engineering", "topological", "semantic"]
    assert lines[0].startswith(f"{tmp_path / 'c' / 'engineering.png'}: engineering, 400x260 px, ")
    assert all(ln.endswith(" KiB") for ln in lines)
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["engineering.png", "semantic.png", "topological.png"]
    r = subprocess.run([*run, str(tmp_path / "nope"), "--out", str(tmp_path / "p")], capture_output=True, text=True,
                       cwd=ROOT)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("spinlock: error: ") and "nope" in r.stderr
    assert not (tmp_path / "p").exists()


def test_thumbnail_is_a_decodable_png_of_the_width(rendered):
    uri = thumbnail_data_uri(rendered["engineering"].path, width=160)
    assert uri.startswith("data:image/png;base64,")
    with Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))) as img:
        assert img.format == "PNG" and img.size == (160, round(13 * 160 / 20))
    with pytest.raises(ValueError, match="width must be an integer"):
        thumbnail_data_uri(rendered["engineering"].path, width=0)
    with pytest.raises(ValueError, match="no such image file"):
        thumbnail_data_uri(rendered["engineering"].path.with_name("none.png"))


def test_a_dashboard_refuses_inputs_it_cannot_draw(built, tmp_path):
    alone = DashboardData.from_dataset(built.dataset)
    for mod in (engineering, topological, semantic, tokens):
        with pytest.raises(ValueError, match="needs a tokenizer checkpoint"):
            mod.render(alone, tmp_path / "x.png")
    with pytest.raises(DashboardInputError, match="go with a checkpoint folder"):
        DashboardData.load(built.dataset, dataset=built.dataset)
