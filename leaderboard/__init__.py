"""Leaderboard views: pure functions from stored result rows to tables, pages and plots.

Installed as ``arena_leaderboard``. Nothing here touches the database or runs a model.
"""

from .generative import generative_views
from .robustness import AttackEntry, DefenseEntry, RobustnessBoard, ThreatGroup, robustness_boards
from .render import render_csv, render_json, render_markdown, render_rich, views

__all__ = [
    "AttackEntry",
    "DefenseEntry",
    "RobustnessBoard",
    "ThreatGroup",
    "generative_views",
    "render_csv",
    "render_json",
    "render_markdown",
    "render_rich",
    "robustness_boards",
    "views",
]
