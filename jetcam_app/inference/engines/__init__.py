"""Inference engines: one file per backend behind engines.base.Engine."""
