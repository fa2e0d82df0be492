"""TIME: the weights equal TIME's own edit (diffusers' ``edit_model``: its token alignment, λ = 0.1) solved densely in
float64, where the destination extends the source as in TIME's examples."""

import pytest
import torch

from locolab.compute.edit.request import build_edit, make_request
from locolab.compute.edit.time_edit import destination
from locolab.contract.errors import UserError
from locolab.contract.specs import EditSpec


def _time_alignment(tokenizer, old: str, new: str) -> list[int]:
    """TIME's alignment as its code writes it: each source token to the next equal destination token, then on."""
    a, b = tokenizer(old).input_ids, tokenizer(new).input_ids
    out, j = [], 0
    for token in a:
        while b[j] != token:
            j += 1
        out.append(j)
        j += 1
    out += range(j, 77)
    return (out + [76] * 77)[:77]


def test_time_weights_equal_its_formula_solved_in_float64(load):
    model = load("tiny-sd1")
    request = make_request(EditSpec("tiny-sd1", "objects", "roses", method="time", target="blue roses",
                                    layers=(3, 12)), "float32")
    assert request["lambda"] == 0.1
    assert request["source_prompts"] == ["roses", "a photo of roses", "an image of roses", "a picture of roses"]
    edit = build_edit(model, request)
    pipe = model.pipe
    pairs = [(p, p.replace("roses", "blue roses")) for p in request["source_prompts"]]
    with torch.no_grad():
        embedded = [[pipe.text_encoder(pipe.tokenizer(t, padding="max_length", max_length=77,
                                                      return_tensors="pt").input_ids)[0][0].double() for t in pair]
                    for pair in pairs]
    assert len(edit.weights) == 4
    for name, new in edit.weights.items():
        w0 = pipe.unet.get_parameter(name.removeprefix("unet.")).detach().double()
        mat1, mat2 = 0.1 * w0, 0.1 * torch.eye(w0.shape[1], dtype=torch.float64)
        for (old, dest), (context, goal) in zip(pairs, embedded):
            values = goal[_time_alignment(pipe.tokenizer, old, dest)] @ w0.T
            mat1 += values.T @ context
            mat2 += context.T @ context
        expected = mat1 @ torch.linalg.inv(mat2)
        assert (new.double() - w0).abs().max() > 1e-2
        assert (new.double() - expected).abs().max() < 1e-5 * expected.abs().max()


def test_time_edits_every_layer_by_default_and_refuses_positions(load):
    assert make_request(EditSpec("tiny-sd1", "style", "van gogh", method="time"), "float32")["layers"] == list(
        range(16))
    with pytest.raises(UserError, match="--method time keys every position"):
        EditSpec("tiny-sd1", "style", "van gogh", method="time", positions="subject")


def test_the_destination_replaces_the_last_occurrence_of_the_concept():
    assert destination("a dog next to a Dog", "dog", "cat") == "a dog next to a cat"
    with pytest.raises(UserError, match="does not occur"):
        destination("a cat", "dog", "cat")
