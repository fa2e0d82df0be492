"""Shared fixtures. Nothing in the suite may reach a model hub."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
# Tiny models gain nothing from intra-op threads, and tests start subprocesses beside this one: with OpenMP's
# default (one thread per core) a busy 2-core machine oversubscribes and runs 5-10x slower. Subprocesses inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import functools  # noqa: E402

import pytest  # noqa: E402


@functools.cache
def _model(name: str):
    from locolab.compute.models.loading import load_model

    return load_model(name, device="cpu")


@pytest.fixture
def load():
    """Load a built-in model once per session (tests must not mutate it, or must restore it)."""
    return _model
