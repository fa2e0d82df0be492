"""A small sweep config and table readers shared by the sweep tests."""

import yaml

from locolab.contract import store

SMALL = {
    "name": "small", "model": "tiny-sd1", "steps": 2, "guidance": 7.5, "resolution": 32, "seeds": [0],
    "window_sizes": [2], "scorer": "tiny-clip", "batch_size": 6,
    "families": {
        "style": {"target": "a painting", "score_text": "style of {concept}",
                  "templates": ["a painting in the style of {concept}"], "concepts": ["van gogh", "monet"]},
        "color": {"target": "a car", "templates": ["a {concept} car"], "concepts": ["blue"]},
    },
}


def write_config(path, drop: str | None = None, **changes) -> str:
    """SMALL with ``changes``, without the key ``drop``, as a YAML file; returns its path."""
    path.write_text(yaml.safe_dump({k: v for k, v in {**SMALL, **changes}.items() if k != drop}))
    return str(path)


def table(root, name: str) -> list[dict]:
    """All rows of a table, sorted, without the columns that record when or where a run happened."""
    rows = store.Store(root).connect().sql(f"SELECT * FROM {name}").to_arrow_table().to_pylist()
    return sorted(rows, key=lambda row: (row.get("case_id") or "", row.get("scorer_id") or ""))
