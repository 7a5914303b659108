"""Verification: one forward pass per split, then plain functions over the cached outputs."""
