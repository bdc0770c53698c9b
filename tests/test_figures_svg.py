"""The page's figures as SVG and the PNG encoder behind its pictures, checked against closed forms
and against PIL and matplotlib reading or drawing the same data."""

from __future__ import annotations

import base64
import io
import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image
from safetensors.numpy import save_file

from arena_leaderboard import Column, Figure, View
from arena_leaderboard.figures import examples_png
from arena_leaderboard.pictures import SEISMIC, examples_mosaic, png_bytes
from arena_leaderboard.render import heat_colour
from arena_leaderboard.svg import examples_svg, figure_svg, nice_ticks

SVG = "{http://www.w3.org/2000/svg}"
PAYLOAD = 'evil <script>alert(1)</script> & "quotes" \x1b[2J'


def test_png_bytes_decode_to_the_same_pixels():
    rng = np.random.default_rng(0)
    pixels = rng.random((7, 11, 3))
    decoded = np.asarray(Image.open(io.BytesIO(png_bytes(pixels))).convert("RGB"))
    assert decoded.shape == (7, 11, 3)
    assert np.array_equal(decoded, np.round(pixels * 255).astype(np.uint8))


def test_seismic_matches_matplotlib():
    from matplotlib import colormaps

    values = np.linspace(0, 1, 101)
    ours = np.stack([np.interp(values, np.linspace(0, 1, len(SEISMIC)), SEISMIC[:, c]) for c in range(3)], -1)
    assert np.abs(ours - colormaps["seismic"](values)[:, :3]).max() < 0.01  # its 256-entry table


@pytest.mark.parametrize("low, high, expected", [
    (0.0, 1.0, [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]),
    (812.0, 1237.0, [900.0, 1000.0, 1100.0, 1200.0]),  # a step of 85 rounds up to 100
    (0.0, 3.0, [0.0, 1.0, 2.0, 3.0]),
    (-0.013, 0.021, [-0.01, 0.0, 0.01, 0.02]),
    (5.0, 5.0, [4.0, 4.5, 5.0, 5.5, 6.0]),
])
def test_nice_ticks(low, high, expected):
    """Multiples of the smallest 1, 2 or 5 times a power of ten at least (high - low) / 5."""
    assert nice_ticks(low, high) == pytest.approx(expected)


def _view(kind: str) -> View:
    attacks = ["fgsm", PAYLOAD]
    columns = [Column("defense", "defense")] + [Column(f"attack:{a}", a, "percent", heat=True) for a in attacks]
    columns.append(Column("rating", "rating", "rating", interval=("rating_low", "rating_high")))
    rows = [{"defense": name, "attack:fgsm": value, f"attack:{PAYLOAD}": None if name == "b" else 1 - value,
             "rating": 1000 + 100 * value, "rating_low": 950 + 100 * value, "rating_high": 1050 + 100 * value,
             "side": "defense"}
            for name, value in (("a", 0.25), ("b", 0.5), (PAYLOAD, 0.75))]
    keys = [f"attack:{a}" for a in attacks]
    figure = {"heatmap": Figure("heatmap", "defense", keys, x_label="attack", y_label="defense"),
              "lines": Figure("lines", "defense", keys, x=[0.1, 0.2], x_label="eps", y_label="robust accuracy"),
              "intervals": Figure("intervals", "defense", ["rating"], x_label="rating")}[kind]
    return View("A view", "matrix", {}, columns, rows, figure=figure)


@pytest.mark.parametrize("kind", ["heatmap", "lines", "intervals"])
def test_figures_are_well_formed_svg_with_plugin_text_as_text(kind):
    svg = figure_svg(_view(kind))
    root = ET.fromstring(svg)  # well-formed XML: every label escaped
    assert root.tag == f"{SVG}svg" and float(root.get("width")) > 100 and float(root.get("height")) > 50
    assert "<script" not in svg and "\x1b" not in svg
    texts = [element.text or "" for element in root.iter(f"{SVG}text")]
    assert any(text.startswith('evil <script>alert(1)</script> & "quot') for text in texts)
    assert all(len(text) <= 40 for text in texts)  # long labels end in an ellipsis
    assert all("\x1b" not in text for text in texts)


def test_heat_map_cells_carry_the_tables_colours_and_values():
    root = ET.fromstring(figure_svg(_view("heatmap")))
    fills = [rect.get("fill") for rect in root.iter(f"{SVG}rect")]
    for value in (0.25, 0.5, 0.75):  # fgsm column, and 1 - value in the other (b's missing)
        assert "#%02x%02x%02x" % heat_colour(value) in fills
    texts = [element.text for element in root.iter(f"{SVG}text")]
    assert {"25.0%", "50.0%", "75.0%"} <= set(texts) and texts.count("50.0%") == 1  # b's other cell is empty


def test_intervals_put_each_point_inside_its_interval():
    root = ET.fromstring(figure_svg(_view("intervals")))
    circles = [float(c.get("cx")) for c in root.iter(f"{SVG}circle")]
    bars = [(float(line.get("x1")), float(line.get("x2"))) for line in root.iter(f"{SVG}line")
            if line.get("stroke-width") == "1.4"]
    assert len(circles) == len(bars) == 3
    for x, (low, high) in zip(circles, bars):
        assert low < x < high
    assert circles == sorted(circles)  # ratings 1025 < 1050 < 1075 in row order


def test_examples_svg_embeds_the_same_mosaic_the_png_draws(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.random((3, 1, 8, 8)).astype(np.float32)
    x_adv = np.clip(x + rng.choice([-0.1, 0.1], size=x.shape), 0, 1).astype(np.float32)
    path = tmp_path / "examples.safetensors"
    arrays = {"index": np.array([4, 9, 17]), "x": x, "x_adv": x_adv, "label": np.array([1, 2, 3]),
              "adv_pred": np.array([1, 5, 3])}
    save_file(arrays, str(path))
    svg = examples_svg(path)
    root = ET.fromstring(svg)
    (image,) = list(root.iter(f"{SVG}image"))
    encoded = re.fullmatch(r"data:image/png;base64,(.+)", image.get("href")).group(1)
    embedded = np.asarray(Image.open(io.BytesIO(base64.b64decode(encoded))).convert("RGB"))
    mosaic = examples_mosaic(arrays)
    assert np.array_equal(embedded, np.round(np.clip(mosaic.pixels, 0, 1) * 255).astype(np.uint8))
    texts = [element.text for element in root.iter(f"{SVG}text")]
    assert {"#4: 1", "#9: 2", "#17: 3", "→ 5", "clean", "adversarial", "perturbation"} <= set(texts)
    fooled = [t for t in root.iter(f"{SVG}text") if t.text == "→ 5"]
    assert fooled[0].get("fill") == "#c0392b"  # the one example the attack fooled, in red
    assert examples_png(path).startswith(b"\x89PNG")  # `arena show` draws the same mosaic as a PNG
