"""Plugin text is data: markup, terminal escapes, Markdown, HTML and mathtext in what a plugin
supplies are shown literally by every output, and never act on it."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from rich.console import Console
from torch import nn

import arena
import arena.cli
from arena.cli import cli
from arena.errors import PluginError
from arena.plugins import Source, load_registry, set_registry
from arena.progress import Reporter

from .test_leaderboard_page import browser_page

#: Rich markup (one closing tag that matches nothing), a clear-screen and a set-title sequence,
#: a Markdown table separator, a newline, a carriage return, an inline script and mathtext with
#: an undefined macro.
PAYLOAD = ("[bold red]loud[/] [/x] <script>window.pwned=1</script> \x1b[2J\x1b]0;pwned\x07 a|b\nc\r "
           "$\\undefinedmacro{x}$ `tick` *em*")
#: What must never reach the output: ESC, BEL, CR and the C1 control sequence introducer.
CONTROLS = ("\x1b", "\x07", "\r", "\x9b")


class Loud(arena.Attack):
    __doc__ = PAYLOAD
    name = "loud"
    access = arena.Access.ZERO_QUERY

    def __init__(self, note: str = PAYLOAD):
        self.note = note

    def perturb(self, access, x, y, threat, target=None):
        signs = torch.randint(0, 2, x.shape, device=x.device, dtype=x.dtype) * 2 - 1
        return (x + threat.eps * signs).clamp(0.0, 1.0)


class LoudDefense(arena.Defense):
    __doc__ = PAYLOAD
    name = "loud-defense"

    def __init__(self, note: str = "plain"):
        self.note = note

    def build(self, dataset, ctx):
        return nn.Sequential(ctx.trained_defense("standard"))


class Exploding(arena.Attack):
    """Raises with the payload as its message."""

    name = "exploding"
    access = arena.Access.ZERO_QUERY

    def perturb(self, access, x, y, threat, target=None):
        raise RuntimeError(PAYLOAD)


class _Plugin:
    @staticmethod
    @arena.hookimpl
    def register_attacks(register):
        register(Loud)
        register(Exploding)

    @staticmethod
    @arena.hookimpl
    def register_defenses(register):
        register(LoudDefense)


PACKAGE = Source("arena-[bold]loud[/x]", "1.0[/x]")


def _install() -> None:
    set_registry(load_registry(extra=[(_Plugin(), PACKAGE)]))


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def assert_clean(result, exit_code: int = 0) -> str:
    """The command's output, after checking its exit code and that no control character leaked."""
    output = result.stdout + result.stderr
    assert result.exit_code == exit_code, output
    leaked = [c for c in CONTROLS if c in output]
    assert not leaked, (leaked, output)
    return output


@pytest.fixture(scope="module")
def injected(arena_home, tmp_path_factory):
    """Runs of the loud plugins: with the payload as a default, as a changed hyperparameter
    (so that it is part of every label) and as an error message. The database is this test
    worker's own (the model cache is shared)."""
    db = f"sqlite:///{tmp_path_factory.mktemp('text-injection') / 'results.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ARENA_HOME", str(arena_home))
        _install()
        try:
            changed = invoke("run", "-a", "loud", "-d", "standard,loud-defense", "--eps", "0.1,0.2", "--n", "20",
                             "-p", f"loud.note=changed {PAYLOAD}", "-p", f"loud-defense.note={PAYLOAD}", "--db", db)
            default = invoke("run", "-a", "loud", "-d", "standard", "--n", "20", "--db", db)
            failed = invoke("run", "-a", "exploding", "-d", "standard", "--n", "20", "--db", db)
        finally:
            set_registry(None)
    return {"db": db, "changed": changed, "default": default, "failed": failed}


@pytest.fixture
def loud():
    _install()


@pytest.fixture
def wide(monkeypatch):
    """A terminal wide enough that no table folds the text, so it can be found whole."""
    monkeypatch.setattr(arena.cli, "stdout", Console(soft_wrap=False, width=2000))
    monkeypatch.setattr(arena.cli, "stderr", Console(stderr=True, width=2000))


def test_terminal_output_shows_plugin_text_literally(injected, loud, wide):
    db = injected["db"]
    for name in ("changed", "default"):
        summary = assert_clean(injected[name])
        assert "loud" in summary and "Results" in summary
    failed = " ".join(assert_clean(injected["failed"], exit_code=1).split())  # run at 80 columns: lines wrap
    assert "[bold red]loud[/] [/x] <script>window.pwned=1</script> \\x1b[2J\\x1b]0;pwned\\x07 a|b" in failed

    listed = assert_clean(invoke("plugins", "-v"))
    assert "[bold red]loud[/] [/x] <script>window.pwned=1</script> \\x1b[2J\\x1b]0;pwned\\x07 a|b" in listed
    assert "arena-[bold]loud[/x]" in listed and "1.0[/x]" in listed

    stored = assert_clean(invoke("results", "--all", "--db", db))
    assert "loud(note=changed [bold red]loud[/] [/x] <script>" in stored
    assert "\\x1b[2J\\x1b]0;pwned\\x07 a|b\\nc\\r $\\undefinedmacro{x}$" in stored

    rows = json.loads(invoke("results", "--json", "--db", db).stdout)
    assert {row["attack_params"].get("note") for row in rows if row["attack"] == "loud"} == {
        PAYLOAD, f"changed {PAYLOAD}"}  # stored as given: the text is data
    for row in rows:
        shown = assert_clean(invoke("show", str(row["run_id"]), "--db", db))
        assert "arena-[bold]loud[/x]" in shown
        if row["status"] == "error":
            assert "raised RuntimeError: [bold red]loud[/] [/x] <script>" in shown
        else:
            assert "[bold red]loud[/] [/x]" in shown

    board = assert_clean(invoke("leaderboard", "--db", db))
    assert "loud(note=changed [bold red]loud[/] [/x] <script>window.pwned=1</script> \\x1b[2J" in board
    assert "loud-defense(note=[bold red]loud[/]" in board


def test_terminal_output_at_80_columns(injected, loud):
    db = injected["db"]
    for args in (["plugins", "-v"], ["results", "--all", "--db", db], ["leaderboard", "--db", db]):
        assert_clean(invoke(*args))


def test_markdown_export_escapes_plugin_text(injected, loud):
    markdown = assert_clean(invoke("leaderboard", "--format", "md", "--db", injected["db"]))
    assert "<script>" not in markdown and "&lt;script&gt;window.pwned=1&lt;/script&gt;" in markdown
    assert "\\[bold red\\]loud\\[/\\]" in markdown and "a\\|b\\nc\\r \\$\\undefinedmacro{x}\\$" in markdown
    tables = [block.splitlines() for block in re.split(r"\n\s*\n", markdown)]
    tables = [[line for line in block if line.startswith("|")] for block in tables]
    separators = re.compile(r"(?<!\\)\|")
    checked = 0
    for lines in filter(None, tables):
        counts = {len(separators.findall(line)) for line in lines}
        assert len(counts) == 1, lines  # every row has the header's cells: nothing broke a row
        checked += len(lines)
    assert checked > 10


def test_csv_export_parses_back(injected, loud):
    text = assert_clean(invoke("leaderboard", "--format", "csv", "--db", injected["db"]))
    header, *rows = list(csv.reader(io.StringIO(text)))
    assert rows and all(len(row) == len(header) for row in rows)
    labels = [field for row in rows for field in row if field.startswith("loud(note=changed ")]
    assert labels and all("<script>window.pwned=1</script> \\x1b[2J" in label for label in labels)
    assert any("\\x1b[2J" in name for name in header)  # the matrix names its columns by attack label


def test_html_page_shows_plugin_text_and_runs_none_of_it(injected, loud, tmp_path):
    folder = tmp_path / "site"
    assert_clean(invoke("leaderboard", "--format", "html", "-o", str(folder), "--db", injected["db"]))
    page_path = folder / "index.html"
    source = page_path.read_text(encoding="utf-8")
    assert "<script>window.pwned" not in source and not any(c in source for c in CONTROLS)

    with browser_page(page_path) as (page, problems):
        assert problems == []
        assert page.evaluate("typeof window.pwned") == "undefined"
        assert page.evaluate("document.scripts.length") == 1  # the page's own
        text = page.inner_text("main")
        assert "loud(note=changed [bold red]loud[/] [/x] <script>window.pwned=1</script> \\x1b[2J" in text
        assert "$\\undefinedmacro{x}$" in text
        # Figures labelled with the payload (heat maps, curves, ratings) were drawn.
        assert page.locator("section.matrix img").count() == 2 and page.locator("section.curves img").count() == 1
        assert page.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
    assert problems == []


def test_examples_picture_with_a_mathtext_title(injected, loud):
    from arena_leaderboard.figures import examples_png

    rows = json.loads(invoke("results", "--json", "--db", injected["db"]).stdout)
    examples = next(row["artifacts"]["examples"] for row in rows if row["artifacts"].get("examples"))
    assert examples_png(examples, PAYLOAD).startswith(b"\x89PNG")


def test_progress_bars_show_plugin_text_as_text():
    console = Console(file=io.StringIO(), force_terminal=True, width=200)
    with Reporter(console, enabled=True) as reporter:
        with reporter.task(f"training {PAYLOAD}", total=2) as advance:
            advance(status=PAYLOAD)
            advance()
        reporter.log(PAYLOAD)
        reporter.warn(PAYLOAD)
    output = console.file.getvalue()
    assert "[/x]" in output and "\x1b]0;pwned" not in output and "\x1b[2J" not in output


def _registered(cls, source=Source("arena-x", "1.0")):
    hooks = type("Hooks", (), {"register_attacks": staticmethod(arena.hookimpl(
        lambda register: register(cls), specname="register_attacks"))})()
    return load_registry(extra=[(hooks, source)])


def test_a_name_with_a_trailing_newline_is_refused():
    sneaky = type("Sneaky", (Exploding,), {"name": "fgsm2\n"})
    registry = _registered(sneaky)
    assert "fgsm2\n" not in registry.names("attack") and "fgsm2" not in registry.names("attack")
    (problem,) = [p for p in registry.problems if p.package == "arena-x"]
    assert "needs a class attribute `name`" in problem.error and "'fgsm2\\n'" in problem.error
    assert "\n" not in problem.error
    with pytest.raises(PluginError, match="needs a class attribute"):
        sneaky.validate_class()


@pytest.mark.parametrize("source, what", [
    (Source("arena-x", "1.0\x1b[2J"), "version"),
    (Source("arena-\x07x", "1.0"), "package name"),
    (Source("arena-x\n", "1.0"), "package name"),
])
def test_control_characters_in_package_names_and_versions_are_refused(source, what, arena):
    registry = _registered(Exploding, source)
    assert "exploding" not in registry.names("attack")
    (problem,) = registry.problems
    assert f"the {what}" in problem.error and "control characters" in problem.error
    assert "\n" not in problem.error and "\x1b" not in problem.error and "\x07" not in problem.error
    set_registry(registry)
    assert_clean(invoke("plugins"))
    assert_clean(invoke("plugins", "-v"))
    assert_clean(invoke("run", "-a", "exploding", "-d", "standard", "--n", "20", "--db", arena.db), exit_code=1)
