"""Inference tasks."""
