"""Attention contribution: the measure against explicit attention arithmetic for each kind of site (PixArt's
cross-attention, FLUX's double- and single-stream joint attention), and a study end to end: localization, the
dominant sites, their top-k intervention scored like a LocoGen window, sharded and resumed."""

import math

import numpy as np
import pytest
import torch
from diffusers.models.embeddings import apply_rotary_emb
from PIL import Image
from sweep_helpers import table, write_config

from locolab.compute.cli import main
from locolab.compute.contribution.measure import concept_positions, record_contributions
from locolab.compute.generation import Case, generate_batch
from locolab.compute.models.loading import load_model
from locolab.compute.settings import Settings
from locolab.contract import store, summaries
from locolab.contract.names import ATTENTION_CONTRIBUTION, TOP_K

CONCEPT = [3, 5]  # the measured text positions of sample 1


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    return x.unflatten(-1, (heads, -1)).transpose(1, 2)  # (R, S, H*d) -> (R, H, S, d)


def _recorded(model, index: int, call) -> torch.Tensor:
    """The contribution ``record_contributions`` finds for two samples (none, then CONCEPT) in one direct call of
    site ``index``."""
    with record_contributions(model, [[], CONCEPT]) as found, torch.no_grad():
        call(model.attentions[index])
    assert found.calls[index] == 1 and found.calls.sum() == 1
    return found.mean()[:, index]


def test_cross_attention_contribution_is_the_concepts_share_through_the_output_projection(load):
    model = load("tiny-pixart")
    attn = model.attentions[5]
    generator = torch.Generator().manual_seed(0)
    hidden, text = torch.randn(2, 64, 16, generator=generator), torch.randn(2, 120, 16, generator=generator)
    bias = torch.zeros(2, 1, 120)
    bias[:, :, 9:] = -10000.0  # padding after 9 tokens, as PixArt's transformer passes it
    found = _recorded(model, 5, lambda a: a(hidden, encoder_hidden_states=text, attention_mask=bias))
    with torch.no_grad():
        q, k, v = (_heads(f(x), attn.heads) for f, x in ((attn.to_q, hidden), (attn.to_k, text), (attn.to_v, text)))
        probs = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]) + bias[:, None], dim=-1)
        out = attn.to_out[0]((probs[..., CONCEPT] @ v[:, :, CONCEPT]).transpose(1, 2).flatten(2))
    assert found[0] == 0
    assert torch.allclose(found[1], out[1].norm(dim=-1).mean().double(), rtol=1e-5)


def _flux_inputs(model, text_len: int):
    generator = torch.Generator().manual_seed(0)
    ids = torch.cat([torch.zeros(text_len, 3), torch.stack(torch.meshgrid(
        torch.zeros(1), torch.arange(4.0), torch.arange(4.0), indexing="ij"), -1).reshape(-1, 3)])
    rotary = model.denoiser.pos_embed(ids)
    return generator, rotary


def _joint_probs(attn, q, k):
    return torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)


@pytest.mark.slow
def test_flux_double_stream_contribution_matches_explicit_joint_attention(load):
    model = load("tiny-flux")
    attn, text_len = model.attentions[7], 77
    generator, rotary = _flux_inputs(model, text_len)
    image, text = torch.randn(2, 16, 32, generator=generator), torch.randn(2, text_len, 32, generator=generator)
    found = _recorded(model, 7, lambda a: a(hidden_states=image, encoder_hidden_states=text,
                                            image_rotary_emb=rotary))
    with torch.no_grad():
        def project(f, norm, x):
            return norm(f(x).unflatten(-1, (attn.heads, -1)))

        q = torch.cat([project(attn.add_q_proj, attn.norm_added_q, text), project(attn.to_q, attn.norm_q, image)], 1)
        k = torch.cat([project(attn.add_k_proj, attn.norm_added_k, text), project(attn.to_k, attn.norm_k, image)], 1)
        v = torch.cat([attn.add_v_proj(text), attn.to_v(image)], 1).unflatten(-1, (attn.heads, -1))
        q, k = (apply_rotary_emb(x, rotary, sequence_dim=1).transpose(1, 2) for x in (q, k))
        probs = _joint_probs(attn, q, k)[:, :, text_len:]  # image-token queries
        out = attn.to_out[0]((probs[..., CONCEPT] @ v.transpose(1, 2)[:, :, CONCEPT]).transpose(1, 2).flatten(2))
    assert torch.allclose(found[1], out[1].norm(dim=-1).mean().double(), rtol=1e-5)


@pytest.mark.slow
def test_flux_single_stream_contribution_has_no_output_projection(load):
    model = load("tiny-flux")
    attn, text_len = model.attentions[40], 77
    generator, rotary = _flux_inputs(model, text_len)
    joint = torch.randn(2, text_len + 16, 32, generator=generator)
    found = _recorded(model, 40, lambda a: a(hidden_states=joint, image_rotary_emb=rotary))
    with torch.no_grad():
        q, k = (apply_rotary_emb(norm(f(joint).unflatten(-1, (attn.heads, -1))), rotary, sequence_dim=1)
                .transpose(1, 2) for f, norm in ((attn.to_q, attn.norm_q), (attn.to_k, attn.norm_k)))
        v = _heads(attn.to_v(joint), attn.heads)
        probs = _joint_probs(attn, q, k)[:, :, text_len:]
        out = (probs[..., CONCEPT] @ v[:, :, CONCEPT]).transpose(1, 2).flatten(2)
    assert torch.allclose(found[1], out[1].norm(dim=-1).mean().double(), rtol=1e-5)


def test_contributions_average_over_steps_and_read_only_conditional_rows(load):
    model = load("tiny-pixart")
    settings = Settings(3, 4.5, 32, 32)
    prompt = "a painting in the style of van gogh"
    where = concept_positions(model, prompt, "van gogh")
    assert where == [6, 7]  # T5: a painting in the style of van gogh: no start token
    with record_contributions(model, [where]) as found:
        generate_batch(model, [Case(prompt, 0)], settings)
    assert found.calls.tolist() == [3] * 28
    with record_contributions(model, [where, []]) as pair:
        generate_batch(model, [Case(prompt, 0), Case("a painting", 0)], settings)
    assert torch.allclose(pair.mean()[0], found.mean()[0], rtol=1e-4)
    assert pair.mean()[1].abs().max() == 0
    assert found.mean()[0].min() > 0


@pytest.mark.slow
@pytest.mark.heavy  # the slow tier: make test-heavy
def test_study_localizes_intervenes_shards_and_resumes(tmp_path, capsys):
    config = write_config(tmp_path / "c.yaml", name="contrib", model="tiny-pixart", steps=2, guidance=4.5,
                          families={"style": {"target": "a painting", "score_text": "style of {concept}",
                                              "templates": ["a painting in the style of {concept}",
                                                            "{concept} style painting of a tree"],
                                              "concepts": ["van gogh"]}},
                          seeds=[0, 1], contribution={"top_k": [1, 3]})
    root = str(tmp_path / "root")
    run = ["contribution", config, "--artifacts", root, "--no-progress"]
    assert main([*run, "--shard", "0/2"]) == 0
    assert "style / van gogh: 2 of 4 localization images done (other shards?): rerun to intervene" in \
        capsys.readouterr().out
    assert main([*run, "--shard", "1/2"]) == 0
    assert main(run) == 0  # shard 0's interventions, now that every prompt is localized
    out = capsys.readouterr().out
    scores = [r for r in table(root, "scores") if r["method"] == ATTENTION_CONTRIBUTION]
    contributions = table(root, "contributions")
    assert len(contributions) == 2 * 2 * 28  # prompts x seeds x sites
    con = store.Store(root).connect()
    sites = summaries.contribution_map(con).to_pylist()
    by_site = {}
    for row in contributions:
        by_site.setdefault(row["site"], []).append(row["contribution"])
    assert [round(r["contribution"], 9) for r in sites] == [round(float(np.mean(by_site[s])), 9) for s in range(28)]
    assert abs(sum(r["share"] for r in sites) - 1) < 1e-9
    ranked = [r["site"] for r in sorted(sites, key=lambda r: r["site_rank"])]
    interventions = summaries.top_k_interventions(con).to_pylist()
    assert [(r["k"], r["blocks"], r["n_images"]) for r in interventions] == [
        (1, ranked[:1], 4), (3, sorted(ranked[:3]), 4)]
    # Every score is an image's CLIP score; no column means something else for this method.
    assert {r["kind"] for r in scores} == {"original", "target", TOP_K}
    assert {r["scorer_id"] for r in scores} == {"tiny-clip"}
    assert {(r["window_start"], r["window_size"], r["site"]) for r in scores} == {(None, None, None)}
    # An intervention's stored image is LocoGen's swap at those sites, generated anew.
    case = next(r for r in table(root, "cases") if r["kind"] == TOP_K and len(r["blocks"]) == 3 and r["seed"] == 1)
    model = load_model("tiny-pixart", device="cpu")
    image = generate_batch(model, [Case(case["prompt"], 1, sites=tuple(case["blocks"]), target="a painting")],
                           Settings(2, 4.5, 32, 32))[0]
    stored = np.asarray(Image.open(f"{root}/{case['image_path']}"), dtype=np.float32) / 255
    assert np.abs(stored - np.round(image * 255) / 255).max() <= 1 / 255
    assert "k=3  sites" in out
    assert main(run) == 0
    assert "0 units run, 2 already done; 0 images generated" in capsys.readouterr().out
    # Another top-k over the same prompts and settings is a new run whose localization an earlier run stored: it
    # intervenes at once, against those references (it used to wait for its own localization for ever).
    assert main([*run, "--top-k", "2"]) == 0
    out = capsys.readouterr().out
    assert "rerun to intervene" not in out and "k=2  sites" in out
    rerun = next(line.split()[1].rstrip(":") for line in out.splitlines() if line.startswith("run "))
    con = store.Store(root).connect()  # a connection reads the parts present when it was made
    (mine,) = summaries.top_k_interventions(con, run_ids=[rerun]).to_pylist()  # its own rows: the top-2 images
    assert (mine["k"], mine["blocks"], mine["n_images"], mine["original_score"]) == (2, sorted(ranked[:2]), 4, None)
    from locolab.compute.contribution.study import localization_cases, plan_localization
    from locolab.compute.models.loading import resolve
    from locolab.compute.sweep.config import load_config, with_contribution

    study = with_contribution(load_config(config), top_k=(2,))
    settings = Settings.defaults(resolve(study.model), study.steps, study.guidance, study.resolution)
    shared = localization_cases(plan_localization(study, settings))
    (mine,) = summaries.top_k_interventions(con, run_ids=[rerun], case_ids=shared).to_pylist()
    first = {r["k"]: r for r in interventions}
    assert (mine["original_score"], mine["target_score"]) == (first[1]["original_score"], first[1]["target_score"])
    assert mine["normalized_drop"] is not None


@pytest.mark.slow
def test_the_notebook_function_averages_the_recorded_contributions(load):
    from locolab import compute

    model = load("tiny-pixart")
    prompts = ["a painting in the style of van gogh", "van gogh style painting of a tree"]
    per_site = compute.attention_contribution(model, prompts, "van gogh", seeds=[0], steps=2, size=32)
    expected = torch.zeros(28, dtype=torch.float64)
    for prompt in prompts:
        with record_contributions(model, [concept_positions(model, prompt, "van gogh")]) as found:
            generate_batch(model, [Case(prompt, 0)], Settings(2, 4.5, 32, 32))
        expected += found.mean()[0] / 2
    assert torch.allclose(per_site, expected, rtol=1e-4)
