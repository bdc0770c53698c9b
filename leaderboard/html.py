"""The leaderboard as one self-contained static HTML page.

Everything the page needs is inside the file: CSS and JavaScript inline, figures and pictures as
``data:`` URIs, so it opens offline and can be mailed or archived as is. Every view becomes a
section with its figure (if any) and a sortable table; buttons show one track at a time.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any, Callable

from arena.artifacts import UnreadableArtifact, read_png

from arena.text import html_text

from .render import Column, View, format_cell, heat_colour, ink_on
from .svg import examples_svg, figure_svg, svg_uri

STYLE = """
:root { --ink: #1d2330; --muted: #5b6474; --line: #d9dee7; --accent: #2457c5; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink);
       background: #f6f7f9; }
header, nav, main { max-width: 1180px; margin: 0 auto; padding: 0 20px; }
header { padding-top: 24px; }
h1 { margin: 0 0 4px; font-size: 26px; }
h2 { margin: 0 0 6px; font-size: 18px; }
.summary, .note { color: var(--muted); margin: 2px 0; font-size: 13px; }
nav { position: sticky; top: 0; background: #f6f7f9; padding-top: 10px; padding-bottom: 10px; z-index: 1;
      border-bottom: 1px solid var(--line); }
nav button { font: inherit; border: 1px solid var(--line); background: white; border-radius: 16px;
             padding: 3px 14px; margin-right: 6px; cursor: pointer; }
nav button[aria-pressed="true"] { background: var(--accent); border-color: var(--accent); color: white; }
details { margin-top: 8px; font-size: 13px; }
details a { color: var(--accent); text-decoration: none; }
section.view { background: white; border: 1px solid var(--line); border-radius: 8px; padding: 16px 18px;
               margin: 18px 0; overflow-x: auto; }
.content { display: flex; flex-wrap: wrap; gap: 12px 32px; align-items: flex-start; }
figure { margin: 8px 0 0; }
figure img { max-width: 100%; height: auto; }
table { border-collapse: collapse; margin-top: 8px; font-variant-numeric: tabular-nums; }
th, td { padding: 4px 10px; border-bottom: 1px solid var(--line); text-align: left; white-space: nowrap; }
th { cursor: pointer; user-select: none; font-size: 13px; background: #eef1f6; position: relative; }
th[aria-sort="ascending"]::after { content: " ▲"; font-size: 10px; }
th[aria-sort="descending"]::after { content: " ▼"; font-size: 10px; }
td.num { text-align: right; }
td.mark { color: #b7791f; font-weight: bold; }
td img { max-height: 160px; }
.empty { color: var(--muted); font-style: italic; }
"""

SCRIPT = """
function cellKey(row, index, numeric) {
  const cell = row.cells[index];
  const raw = cell.dataset.value !== undefined ? cell.dataset.value : cell.textContent.trim();
  if (!numeric) return raw.toLowerCase();
  return raw === "" ? NaN : Number(raw);
}
function sortBy(header) {
  const table = header.closest("table");
  const index = Array.from(header.parentNode.children).indexOf(header);
  const numeric = header.dataset.type === "number";
  const ascending = header.getAttribute("aria-sort") !== "ascending";
  table.querySelectorAll("th").forEach(th => th.removeAttribute("aria-sort"));
  header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  const body = table.tBodies[0];
  const rows = Array.from(body.rows);
  rows.sort((a, b) => {
    const x = cellKey(a, index, numeric), y = cellKey(b, index, numeric);
    if (numeric) {
      if (isNaN(x) || isNaN(y)) return isNaN(x) - isNaN(y);  // missing values last either way
      return ascending ? x - y : y - x;
    }
    return ascending ? x.localeCompare(y) : y.localeCompare(x);
  });
  rows.forEach(row => body.appendChild(row));
}
function showTrack(track) {
  document.querySelectorAll("nav button").forEach(b => b.setAttribute("aria-pressed", b.dataset.track === track));
  document.querySelectorAll("section.view").forEach(section => {
    section.hidden = track !== "all" && !section.dataset.tracks.split(" ").includes(track);
  });
}
document.querySelectorAll("table.sortable th").forEach(th => th.addEventListener("click", () => sortBy(th)));
document.querySelectorAll("nav button").forEach(b => b.addEventListener("click", () => showTrack(b.dataset.track)));
"""


def render_html(views: list[View], title: str = "Arena leaderboard", summary: str = "",
                warn: Callable[[str], None] | None = None) -> str:
    """The whole page as one string (without the export-only views).

    A picture whose file is missing or damaged is left out of its cell; ``warn`` hears of each.
    """
    views = [view for view in views if not view.export_only]
    tracks = list(dict.fromkeys(track for view in views for track in view.tracks))
    buttons = "".join(
        f'<button type="button" data-track="{_attr(t)}" aria-pressed="{str(t == "all").lower()}">{_text(t)}</button>'
        for t in ["all", *tracks]
    )
    contents = "".join(f'<li><a href="#view-{i}">{_text(view.title)}</a></li>' for i, view in enumerate(views, 1))
    sections = "\n".join(_section(i, view, warn) for i, view in enumerate(views, 1))
    if not views:
        sections = '<p class="empty">No results yet: run e.g. <code>arena run --attack fgsm --defense advtrain</code>.</p>'
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_text(title)}</title>
<link rel="icon" href="data:,">
<style>{STYLE}</style>
</head>
<body>
<header><h1>{_text(title)}</h1><p class="summary">{_text(summary)}</p></header>
<nav><div class="tracks">{buttons}</div><details><summary>Contents ({len(views)} tables)</summary><ol>{contents}</ol></details></nav>
<main>
{sections}
</main>
<script>{SCRIPT}</script>
</body>
</html>
"""


def _section(number: int, view: View, warn: Callable[[str], None] | None = None) -> str:
    parts = [f"<h2>{_text(view.title)}</h2>"]
    parts += [f'<p class="note">{_text(note)}</p>' for note in view.notes]
    body = [_table(view, warn)]
    picture = figure_svg(view)
    if picture is not None:
        body.append(f'<figure><img alt="{_attr("Figure: " + view.title)}" src="{svg_uri(picture)}"></figure>')
    parts.append(f'<div class="content">{"".join(body)}</div>')
    slug = re.sub(r"[^a-z0-9]+", "-", view.table.lower()).strip("-")
    return (f'<section class="view {slug}" id="view-{number}" data-table="{_attr(view.table)}" '
            f'data-tracks="{_attr(" ".join(view.tracks))}">{"".join(parts)}</section>')


def _table(view: View, warn: Callable[[str], None] | None = None) -> str:
    header = "".join(
        f'<th scope="col" data-key="{_attr(c.key)}" data-type="{"number" if c.numeric else "text"}">{_text(c.name)}</th>'
        for c in view.columns
    )
    body = "".join("<tr>" + "".join(_cell(row, c, warn) for c in view.columns) + "</tr>" for row in view.rows)
    return f'<table class="sortable"><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>'


def _cell(row: dict[str, Any], column: Column, warn: Callable[[str], None] | None = None) -> str:
    value = row.get(column.key)
    if column.kind == "image":
        try:
            picture = _picture(value)
        except UnreadableArtifact as exc:
            if warn is not None:
                run = f"run {row['run']}: " if row.get("run") is not None else ""
                warn(f"{run}{exc}; left out of the page (`arena run ... --force` writes it again)")
            return '<td class="empty">unreadable</td>'
        if picture is None:
            return "<td>—</td>"
        return f'<td><img alt="{_attr(column.name)}" src="{picture}"></td>'
    attributes = ""
    if column.numeric:
        attributes += f' class="num" data-value="{"" if value is None else _attr(json.dumps(value))}"'
    elif column.kind == "mark":
        attributes += ' class="mark"'
    if column.heat and isinstance(value, (int, float)):
        background = heat_colour(value)
        attributes += f' style="background: rgb{background}; color: {ink_on(background)}"'
    return f"<td{attributes}>{_text(format_cell(row, column))}</td>"


def _picture(value: Any) -> str | None:
    """The ``data:`` URI of the picture an ``image`` cell points to (a PNG file, or a run's kept
    examples drawn as SVG), or None where the cell has none. Raises ``UnreadableArtifact`` where
    the file is missing or damaged."""
    if not value:
        return None
    path = Path(value)
    if path.suffix == ".png":
        return "data:image/png;base64," + base64.b64encode(read_png(path)).decode("ascii")
    return svg_uri(examples_svg(path))


def _text(value: Any) -> str:
    return html_text(value)


def _attr(value: Any) -> str:
    return html_text(value, quote=True)
