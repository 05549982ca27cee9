"""Composition root: configuration, CLI and the wiring of every module into one process."""
