"""One real eps sweep through the CLI, shown in every format and as a page in a real browser."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import arena
from arena.artifacts import local_path
from arena.cli import cli
from arena.plugins import Source, load_registry, set_registry

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


@contextlib.contextmanager
def browser_page(path: Path) -> Iterator[tuple[Any, list[str]]]:
    """``path`` open in headless chromium, and the list the page's problems go to: console
    errors, page errors and every request that leaves the page's own file and data URLs."""
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.exists(), "the page test needs Debian's chromium: apt-get install -y chromium"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            problems: list[str] = []
            page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
            page.on("pageerror", lambda error: problems.append(str(error)))
            page.on("request", lambda request: problems.append(request.url)
                    if not request.url.startswith(("file:", "data:")) else None)
            page.goto(path.as_uri(), wait_until="load")
            yield page, problems
        finally:
            browser.close()


class RandomSign(arena.Attack):
    """Random noise at the full budget: x + eps * s with s uniform in {-1, +1} per pixel."""

    name = "random-sign"
    access = arena.Access.ZERO_QUERY

    def perturb(self, access, x, y, threat, target=None):
        signs = torch.randint(0, 2, x.shape, device=x.device, dtype=x.dtype) * 2 - 1
        return (x + threat.eps * signs).clamp(0.0, 1.0)


def register_attacks(register):
    register(RandomSign)


def invoke(*args: str):
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output + result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def sweep_db(arena_home):
    """FGSM and random signs against standard and advtrain at eps 0.1 and 0.2 (all 360 points).

    The database sits in the session's shared ARENA_HOME: a second xdist worker running these
    tests finds the results stored and reuses them.
    """
    db = f"sqlite:///{arena_home / 'leaderboard-sweep.db'}"
    plugin = type("RandomSignPlugin", (), {"register_attacks": staticmethod(arena.hookimpl(register_attacks))})()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ARENA_HOME", str(arena_home))
        set_registry(load_registry(extra=[(plugin, Source("arena-random-sign", "0.1"))]))
        try:
            invoke("run", "-a", "fgsm,random-sign", "-d", "standard,advtrain", "--eps", "0.1,0.2", "--db", db)
        finally:
            set_registry(None)
    return db


def leaderboard(db: str, *args: str):
    return invoke("leaderboard", "--db", db, *args)


def test_leaderboard_of_a_real_sweep_in_every_format(sweep_db, monkeypatch):
    views = json.loads(leaderboard(sweep_db, "--format", "json"))
    results = {(r["defense"], r["attack"], r["eps"]): r for r in json.loads(invoke("results", "--json", "--db", sweep_db))}
    for eps in (0.1, 0.2):
        group = [v for v in views if v.get("eps") == eps]
        tables = {v["table"]: v["entries"] for v in group}
        assert set(tables) == {"defenses", "attacks", "ratings", "matrix"}
        # Adversarial training is the clear winner: worst case and rating agree.
        assert [e["defense"] for e in tables["defenses"]] == ["advtrain", "standard"]
        assert [e["player"] for e in tables["ratings"] if e["side"] == "defense"] == ["advtrain", "standard"]
        assert [e["player"] for e in tables["ratings"] if e["side"] == "attack"] == ["fgsm", "random-sign"]
        # The attack from outside Arena is named with its package.
        assert [e["attack"] for e in tables["attacks"]] == ["fgsm", "random-sign (arena-random-sign 0.1)"]
        for entry in tables["matrix"]:
            for attack in ("fgsm", "random-sign"):
                assert entry[f"attack:{attack}"] == results[(entry["defense"], attack, eps)]["robust_accuracy"]
        worst = {e["defense"]: e["worst_case"] for e in tables["defenses"]}
        assert worst["advtrain"] <= results[("advtrain", "fgsm", eps)]["robust_accuracy"]
    (curves,) = [v for v in views if v["table"] == "curves"]
    advtrain = next(e for e in curves["entries"] if e["defense"] == "advtrain")
    assert advtrain["clean_accuracy"] >= advtrain["eps:0.1"] >= advtrain["eps:0.2"]

    monkeypatch.setenv("COLUMNS", "80")  # a terminal's width: wide tables are split into pages
    text = leaderboard(sweep_db)
    assert "Arena ratings — digits · linf eps=0.1 · untargeted" in text and "rating (95% CI)" in text
    assert max(len(line) for line in text.splitlines()) <= 80
    monkeypatch.delenv("COLUMNS")  # a pipe: every table whole
    assert "(continued)" not in leaderboard(sweep_db)

    only = json.loads(leaderboard(sweep_db, "--format", "json", "--eps", "0.2", "--track", "attacks"))
    tables = {(v["table"], v.get("eps")) for v in only}
    assert tables == {("attacks", 0.2), ("ratings", 0.2), ("matrix", 0.2), ("runs", None)}
    (runs,) = [v for v in only if v["table"] == "runs"]  # the runs behind those tables, and no others
    assert {e["key"] for e in runs["entries"]} == {r["key"] for r in results.values() if r["eps"] == 0.2}
    assert "No results" in leaderboard(sweep_db, "--norm", "l2")
    assert "| defense \\ attack | fgsm | random-sign |" in leaderboard(sweep_db, "--format", "md")
    assert "rating_low" in leaderboard(sweep_db, "--format", "csv").splitlines()[0]


def test_html_page_in_a_headless_browser(sweep_db, tmp_path):
    printed = leaderboard(sweep_db, "--format", "html", "-o", str(tmp_path / "site"))
    page_path = tmp_path / "site" / "index.html"
    assert printed.strip() == str(page_path)
    # Every view but the provenance one, which only the exports carry.
    expected_views = len([v for v in json.loads(leaderboard(sweep_db, "--format", "json")) if v["table"] != "runs"])

    with browser_page(page_path) as (page, problems):
        assert problems == []  # no errors, and nothing fetched from a network
        assert page.inner_text("h1") == "Arena leaderboard"
        # One section per view, plus the examples the page alone shows.
        assert page.locator("section.view").count() == expected_views + 2
        images = page.locator("img")
        assert images.count() >= 2 * 2 + 1 + 2 * 2  # ratings and heat maps, curves, examples
        assert page.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
        ratings = page.locator("section.ratings").first
        assert "advtrain" in ratings.inner_text() and "random-sign" in ratings.inner_text()

        defenses = page.locator("section.defenses").first
        first_defense = lambda: defenses.locator("tbody tr td").nth(1).inner_text()  # noqa: E731
        assert first_defense() == "advtrain"
        defenses.locator("th", has_text="worst case").click()  # ascending: the weakest first
        assert first_defense() == "standard"
        page.locator("nav button[data-track='attacks']").click()
        assert not defenses.is_visible() and page.locator("section.attacks").first.is_visible()
        page.locator("nav button[data-track='all']").click()

        screenshot = Image.open(io.BytesIO(page.screenshot()))
        matrix = page.locator("section.matrix", has_text="eps=0.2")  # standard keeps 9% against FGSM there
        matrix = Image.open(io.BytesIO(matrix.screenshot()))
    assert problems == []
    assert screenshot.size == (1280, 900)
    pixels = np.asarray(screenshot.convert("RGB")).reshape(-1, 3).astype(int)
    assert (np.abs(pixels - pixels[0]).sum(1) > 30).mean() > 0.05  # drawn, not a blank page
    colours = np.asarray(matrix.convert("RGB")).reshape(-1, 3).astype(int)
    red, green, blue = colours.T
    reddish = ((red - green > 60) & (red - blue > 60)).mean()
    greenish = ((green - red > 40) & (green - blue > 30)).mean()
    assert reddish > 0.01 and greenish > 0.01  # cells at both ends of the scale, beyond the colour bar


def test_show_writes_a_picture_of_the_kept_examples(sweep_db):
    rows = json.loads(invoke("results", "--json", "--db", sweep_db))
    run = next(r for r in rows if r["attack"] == "fgsm" and r["defense"] == "standard" and r["eps"] == 0.2)
    output = invoke("show", str(run["run_id"]), "--db", sweep_db)
    line = next(line for line in output.splitlines() if line.startswith("Examples: "))
    picture = Path(line.removeprefix("Examples: "))
    assert picture.parent.name == "pictures" and picture.stem.startswith(local_path(run["artifacts"]["examples"]).stem)
    image = Image.open(picture)
    width, height = image.size
    assert image.format == "PNG" and width > 2 * height  # eight examples side by side, three rows


def test_generators_on_the_page_with_their_nearest_training_images(arena_home, tmp_path, monkeypatch):
    """The baselines (no training): the memoriser's pairs are its copies, and the page shows
    them flagged and unranked, with every picture drawn."""
    monkeypatch.setenv("ARENA_HOME", str(arena_home))
    db = f"sqlite:///{tmp_path / 'g.db'}"
    invoke("run", "-g", "memorizer,uniform", "--samples", "64", "--db", db)
    invoke("leaderboard", "--format", "html", "-o", str(tmp_path / "site"), "--db", db)
    with browser_page(tmp_path / "site" / "index.html") as (page, problems):
        generators = page.locator("section.generators").first
        text = generators.inner_text()
        assert "memorizer" in text and "uniform" in text and "memorised" in text and "worse-than-noise" in text
        assert generators.locator("tbody tr td").first.inner_text() == "—"  # neither is ranked
        neighbours = page.locator("section.neighbours")
        assert neighbours.count() == 1 and neighbours.locator("img").count() == 2
        assert page.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
    assert problems == []
