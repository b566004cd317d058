"""Judgmental Rationales Generator: glimpse/gaze rationales, judge, refinement, store."""
