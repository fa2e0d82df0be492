"""ESD-x: training changes only the chosen layers' to_k/to_v, restores the model bit for bit, and is reproducible from
its seed."""

import pytest
import torch

from locolab.compute.edit.request import build_edit, make_request
from locolab.contract.errors import UserError
from locolab.contract.specs import EditSpec


def _edit(load, seed: int):
    spec = EditSpec("tiny-sd1", "style", "van gogh", method="esd-x", layers=(8, 9), iterations=2, lr=1e-3, seed=seed)
    return build_edit(load("tiny-sd1"), make_request(spec, "float32"))


@pytest.mark.slow  # three trainings
def test_esd_x_is_reproducible_from_its_seed_and_leaves_the_model_as_it_was(load):
    unet = load("tiny-sd1").pipe.unet
    before = {name: value.clone() for name, value in unet.state_dict().items()}
    first, again, other = _edit(load, 0), _edit(load, 0), _edit(load, 1)
    assert sorted(first.weights) == [f"unet.up_blocks.1.attentions.{i}.transformer_blocks.0.attn2.{m}.weight"
                                     for i in (1, 2) for m in ("to_k", "to_v")]
    assert all(torch.equal(first.weights[n], again.weights[n]) for n in first.weights)
    assert any(not torch.equal(first.weights[n], other.weights[n]) for n in first.weights)
    for name, new in first.weights.items():
        assert (new - before[name.removeprefix("unet.")]).abs().max() > 1e-4  # two Adam steps of 1e-3 moved it
    after = unet.state_dict()
    assert all(torch.equal(after[name], value) for name, value in before.items())
    assert all(not p.requires_grad or p.grad is None for p in unet.parameters())
    assert (first.meta["iterations"], first.meta["lr"], first.meta["seed"]) == (2, 1e-3, 0)


def test_esd_options_are_refused_elsewhere():
    with pytest.raises(UserError, match="--iterations/--lr/--negative-guidance/--seed are for --method esd-x only"):
        EditSpec("tiny-sd1", "style", "van gogh", layers=(8,), seed=3)
