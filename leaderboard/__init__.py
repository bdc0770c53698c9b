"""Leaderboard views: pure functions from stored result rows to tables, pages and plots.

Installed as ``arena_leaderboard``. Nothing here touches the database or runs a model.
"""

from .generative import generative_views
from .filters import Filters
from .ratings import ArenaRatings, Rating, arena_ratings, bradley_terry
from .render import Column, Figure, View, render_csv, render_json, render_markdown, render_rich
from .robustness import AttackEntry, DefenseEntry, RobustnessBoard, ThreatGroup, robustness_boards
from .views import ROBUSTNESS_TRACKS, robustness_views

__all__ = [
    "ArenaRatings",
    "AttackEntry",
    "Column",
    "DefenseEntry",
    "Figure",
    "Filters",
    "ROBUSTNESS_TRACKS",
    "Rating",
    "RobustnessBoard",
    "ThreatGroup",
    "View",
    "arena_ratings",
    "bradley_terry",
    "generative_views",
    "render_csv",
    "render_json",
    "render_markdown",
    "render_rich",
    "robustness_boards",
    "robustness_views",
]
