"""Widgets shared by tunedeck's screens."""
