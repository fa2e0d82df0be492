"""Shared fixtures. Nothing in the suite may reach a model hub."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import functools  # noqa: E402

import pytest  # noqa: E402


@functools.cache
def _model(name: str):
    from compute.loading import load_model

    return load_model(name, device="cpu")


@pytest.fixture
def load():
    """Load a built-in model once per session (tests must not mutate it, or must restore it)."""
    return _model
