"""Helpers shared by the viewer's tests."""
