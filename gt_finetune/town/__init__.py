"""Gas Town glue: find a town, read its settings, send mail and feed events, install."""
from .discover import DoltSettings, Rig, Route, Town, find_town, load_town

__all__ = ["DoltSettings", "Rig", "Route", "Town", "find_town", "load_town"]
