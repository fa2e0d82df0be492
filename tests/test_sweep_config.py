"""Config errors fail before any model loads, naming the key path and the fix, with exit code 2."""

import hashlib
import json

import pytest
from sweep_helpers import SMALL, write_config

from locolab.compute.cli import main
from locolab.compute.plan import build_plan, shard_units
from locolab.compute.settings import Settings
from locolab.compute.sweep.config import CONFIGS_DIR, default_coarse, load_config
from locolab.contract.catalog.registry import MODELS


@pytest.mark.parametrize("changes, message", [
    ({"colour": 1}, "colour: unknown key"),
    ({"families": {"style": {**SMALL["families"]["style"], "templates": ["a painting of"]}}},
     "families.style.templates[0]: 'a painting of' does not contain {concept}"),
    ({"window_sizes": [2, 17]}, "window_sizes[1]: 17 exceeds the 16 cross-attention layers of tiny-sd1"),
    ({"seeds": []}, "seeds: expected a non-empty list"),
    ({"scorer": "my-clip"}, "scorer: unknown scorer 'my-clip'"),
    ({"scorer": ["tiny-clip", "my-clip"]}, "scorer[1]: unknown scorer 'my-clip'"),
    ({"scorer": ["tiny-clip", "tiny-clip"]}, "scorer: duplicate scorers"),
    ({"scorer": []}, "scorer: expected a scorer or a non-empty list"),
    ({"families": {"style": {**SMALL["families"]["style"], "concepts": []}}}, "families.style.concepts: expected"),
    ({"model": "sd-9"}, "unknown model 'sd-9'"),
    ({"window_search": {"max_size": 6}}, "window_sizes: give either window_sizes (an explicit list) or window_search"),
    ({"window_search": {"max_size": 17}, "drop": "window_sizes"},
     "window_search.max_size: 17 exceeds the 16 cross-attention layers of tiny-sd1"),
    ({"window_search": {"max_size": 6, "coarse": [1, 3]}, "drop": "window_sizes"},
     "window_search.coarse: must end at max_size 6, got [1, 3]; add 6"),
    ({"window_search": {"coarse": [1, 3]}, "drop": "window_sizes"}, "window_search.max_size: missing"),
])
def test_config_errors_exit_2_with_key_path_and_write_nothing(tmp_path, capsys, changes, message):
    config = write_config(tmp_path / "bad.yaml", **changes)
    root = tmp_path / "root"
    assert main(["sweep", config, "--artifacts", str(root)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err
    assert len(err.splitlines()) == 1
    assert not root.exists()


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path, capsys):
    config = write_config(tmp_path / "c.yaml")
    root = tmp_path / "root"
    assert main(["sweep", config, "--artifacts", str(root), "--dry-run"]) == 0
    out = capsys.readouterr().out
    # 3 prompts x (original + target + all-layers + 15 windows of size 2) x 1 seed; the style target image is shared.
    assert "3 of 3 work units, 54 cases, 53 images" in out
    assert "UNet calls: 18 at batch size 6" in out
    assert not root.exists()


def test_plan_is_deterministic_and_shards_partition_it(tmp_path):
    config = load_config(write_config(tmp_path / "c.yaml"))
    settings = Settings.defaults(MODELS["tiny-sd1"], 2, 7.5, 32)
    first, second = build_plan(config, settings, 16), build_plan(config, settings, 16)
    assert first == second
    ids = [case.case_id for unit in first for case in unit.cases]
    assert len(ids) == len(set(ids)) == 54
    shards = [shard_units(first, i, 2) for i in range(2)]
    assert sorted(u.unit_id for s in shards for u in s) == sorted(u.unit_id for u in first)
    changed = build_plan(load_config(write_config(tmp_path / "d.yaml", seeds=[1])), settings, 16)
    assert not {c.case_id for u in changed for c in u.cases} & set(ids)


def test_dry_run_of_a_window_search_prints_its_image_cost(tmp_path, capsys):
    config = write_config(tmp_path / "c.yaml", window_search={"max_size": 6}, drop="window_sizes")
    assert main(["sweep", config, "--dry-run"]) == 0
    out = capsys.readouterr().out
    # Coarse sizes 1, 2, 3, 5, 6: 3 x (3 references + 16 + 15 + 14 + 12 + 11 windows) - 1 shared target = 212 images;
    # the widest gap is size 4 alone (13 windows per concept); every size 1-6 would be 3 x (3 + 81) - 1.
    assert "window search up to m=6, coarse sizes [1, 2, 3, 5, 6]" in out
    assert ("first pass 212 images; the refinement adds at most 39 (every concept refined over sizes [4]); every size "
            "1-6 would cost 251") in out


def test_a_config_without_a_search_keeps_its_run_id():
    """Existing studies resume under the run id they had before window searches existed."""
    config = load_config(CONFIGS_DIR / "tiny-sd1.yaml")
    fields = {k: v for k, v in config.to_dict().items() if k not in ("name", "description", "batch_size", "trace",
                                                                     "method", "contribution", "window_search")}
    assert config.run_id == f"tiny-sd1-{hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:10]}"


def test_a_search_config_plans_its_coarse_sizes():
    config = load_config(CONFIGS_DIR / "style-sdxl-base.yaml")
    assert config.window_search.max_size == 10 and config.window_sizes == config.window_search.coarse
    assert config.window_sizes == default_coarse(10) == (1, 2, 3, 5, 8, 10)


def test_a_list_of_one_scorer_is_that_scorer(tmp_path):
    one = load_config(write_config(tmp_path / "one.yaml", scorer="tiny-clip"))
    listed = load_config(write_config(tmp_path / "listed.yaml", scorer=["tiny-clip"]))
    both = load_config(write_config(tmp_path / "both.yaml", scorer=["tiny-clip", "toyworld-clip"]))
    assert listed.run_id == one.run_id and listed.scorers == ("tiny-clip",)
    assert both.scorers == ("tiny-clip", "toyworld-clip") and both.run_id != one.run_id
