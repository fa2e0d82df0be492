"""The attribute families are one source for sweeps and edits; facts name an update; the preservation set."""

import re

import pytest

from locolab.compute.sweep.config import CONFIGS_DIR, load_config, parse_config
from locolab.contract.catalog.attributes import PROMPT_SETS, attribute_family, preservation_prompts, unrelated_prompts
from locolab.contract.errors import UserError
from locolab.contract.names import FAMILIES

PAPER_CONFIGS = sorted(p for p in CONFIGS_DIR.glob("*.yaml") if p.stem.split("-")[0] in FAMILIES)


def test_there_is_no_second_family_source():
    assert not (CONFIGS_DIR / "families").exists()


@pytest.mark.parametrize("path", PAPER_CONFIGS + [CONFIGS_DIR / "toyworld.yaml"], ids=lambda p: p.stem)
def test_shipped_sweeps_read_the_families_the_edits_read(path):
    config = load_config(path)
    prompt_set = "toyworld" if config.model == "toyworld" else "paper"
    for family in config.families:
        edits = attribute_family(family.name, prompt_set)
        assert [c.name for c in family.concepts] == list(edits.concepts)
        for concept in family.concepts:
            assert concept.score_text.format(concept=concept.name) == edits.score_text_for(concept.name)
            for prompt, target in family.prompts(concept):
                assert concept.name in prompt and concept.name not in target


def test_facts_update_a_role_to_a_new_holder_scored_against_both():
    facts = attribute_family("facts")
    assert len(facts.concepts) >= 5
    for concept in facts.concepts:
        old, new = facts.score_text_for(concept), facts.target_for(concept)
        assert old != new and old != concept and new != facts.target
        assert facts.new_fact_text_for(new) == new
    assert attribute_family("style").new_fact_text_for("a painting") is None
    sweep = next(f for f in load_config(CONFIGS_DIR / "facts-sd-1.4.yaml").families if f.name == "facts")
    president = next(c for c in sweep.concepts if c.name == "the president of the united states")
    assert president.score_text == "donald trump"
    assert sweep.prompts(president)[0] == ("a photo of the president of the united states", "a photo of joe biden")


def test_a_template_target_may_name_the_concepts_target():
    raw = {"name": "t", "model": "tiny-sd1", "window_sizes": [1], "seeds": [0], "scorer": "tiny-clip",
           "families": {"objects": {"templates": [{"prompt": "a photo of {concept}", "target": "a photo of {target}"},
                                                  {"prompt": "{concept} on a table", "target": "a table"}],
                                    "concepts": [{"name": "r2d2", "target": "a robot"}, "snoopy"],
                                    "target": "a dog"}}}
    family = parse_config(raw).families[0]
    r2d2, snoopy = family.concepts
    assert family.prompts(r2d2) == [("a photo of r2d2", "a photo of a robot"), ("r2d2 on a table", "a robot")]
    assert family.prompts(snoopy) == [("a photo of snoopy", "a photo of a dog"), ("snoopy on a table", "a table")]
    del raw["families"]["objects"]["target"]
    with pytest.raises(UserError, match=r"families.objects.templates\[0\]: no target prompt for 'snoopy'"):
        parse_config(raw)


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def test_the_preservation_set_is_large_generic_and_names_no_shipped_concept():
    prompts = unrelated_prompts("paper")
    assert len(prompts) >= 300 and len(set(prompts)) == len(prompts)
    names = set()
    for name in FAMILIES:
        family = attribute_family(name)
        for concept in family.concepts:
            names |= {concept, family.score_text_for(concept), family.target_for(concept)}
    names = {n for n in names if n not in {"a painting", "an animal", "an object", "a device", "a person"}}
    clashes = [(p, n) for p in prompts for n in names if re.search(rf"\b{re.escape(n)}\b", p)]
    assert clashes == []
    colors = set(attribute_family("color").concepts) | {"gray", "grey"}
    assert not [p for p in prompts if _words(p) & colors]


def test_a_subset_of_the_preservation_set_is_random_seeded_and_in_set_order():
    whole = preservation_prompts("paper", "van gogh")
    assert whole == list(unrelated_prompts("paper"))
    subset = preservation_prompts("paper", "van gogh", 20)
    assert len(subset) == 20 and subset == preservation_prompts("paper", "van gogh", 20)
    assert [p for p in whole if p in subset] == subset
    assert subset != whole[:20] and subset != preservation_prompts("paper", "van gogh", 20, seed=1)
    assert preservation_prompts("paper", "van gogh", 10_000) == whole


def test_the_toy_world_keeps_its_own_preservation_set():
    toy = unrelated_prompts("toyworld")
    assert 10 <= len(toy) < 50 and not set(toy) & set(unrelated_prompts("paper"))
    assert all("stripes" not in p for p in preservation_prompts("toyworld", "stripes"))
    assert set(PROMPT_SETS) == {"paper", "toyworld"}


def test_asking_for_the_whole_preservation_set_or_more_is_recorded_as_all_of_it():
    from locolab.compute.edit.evaluation import eval_id, eval_prompts, eval_settings, unrelated_count

    meta = {"prompt_set": "toyworld", "family": "style", "concept": "stripes", "target": "a red square on plain",
            "source_prompts": ["a red square on stripes"]}
    available = len(preservation_prompts("toyworld", "stripes"))
    assert available == 12
    assert [unrelated_count(meta, n) for n in (None, 5, 11, 12, 20)] == [None, 5, 11, None, None]
    # The same prompts, hence the same evaluation: asking for 20 of 12 is not a setting of its own.
    assert eval_prompts(meta, 20) == eval_prompts(meta, None)
    assert eval_id(eval_settings("s", _settings(), [0], unrelated_count(meta, 20), 3)) == \
        eval_id(eval_settings("s", _settings(), [0], None, 3))


def _settings():
    from locolab.compute.settings import Settings

    return Settings(10, 5.0, 32, 32)
