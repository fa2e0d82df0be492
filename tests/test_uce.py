"""UCE: the weights equal UCE's own formula solved densely in float64 from embeddings read as its code reads them."""

import pytest
import torch

from locolab.compute.edit.request import build_edit, make_request
from locolab.contract.errors import UserError
from locolab.contract.specs import EditSpec


def _last_token(pipe, text: str) -> torch.Tensor:
    """UCE's key of a text: its embedding at ``attention_mask.sum() - 2`` (the token before end-of-text)."""
    embedding = pipe.encode_prompt(prompt=text, device="cpu", num_images_per_prompt=1,
                                   do_classifier_free_guidance=False)[0][0]
    mask = pipe.tokenizer(text, padding="max_length", max_length=pipe.tokenizer.model_max_length, truncation=True,
                          return_tensors="pt")["attention_mask"]
    return embedding[int(mask.sum()) - 2].double()


@pytest.mark.slow
def test_uce_weights_equal_its_formula_solved_in_float64(load):
    model = load("tiny-sd1")
    spec = EditSpec("tiny-sd1", "style", "van gogh", method="uce", layers=(8, 9), erase_scale=2.0,
                    preserve_scale=0.5, dtype="float32")
    request = make_request(spec, "float32")
    assert request["lambda"] == 0.5 and "monet" in request["preserve_prompts"]
    assert all(p.endswith("van gogh") for p in request["source_prompts"])  # so the key is UCE's last token
    edit = build_edit(model, request)
    pipe = model.pipe
    with torch.no_grad():
        guide = _last_token(pipe, request["target"])
        erase = [_last_token(pipe, p) for p in request["source_prompts"]]
        keep = [_last_token(pipe, p) for p in request["preserve_prompts"]]
    assert len(edit.weights) == 4
    for name, new in edit.weights.items():
        w0 = pipe.unet.get_parameter(name.removeprefix("unet.")).detach().double()
        mat1, mat2 = 0.5 * w0, 0.5 * torch.eye(w0.shape[1], dtype=torch.float64)
        for c in erase:
            mat1 += 2.0 * torch.outer(w0 @ guide, c)
            mat2 += 2.0 * torch.outer(c, c)
        for c in keep:
            mat1 += 0.5 * torch.outer(w0 @ c, c)
            mat2 += 0.5 * torch.outer(c, c)
        expected = mat1 @ torch.linalg.inv(mat2)
        assert (new.double() - w0).abs().max() > 1e-2  # the edit changes the weights
        assert (new.double() - expected).abs().max() < 1e-5 * expected.abs().max()


def test_uce_edits_every_cross_attention_layer_by_default():
    request = make_request(EditSpec("tiny-sd1", "style", "van gogh", method="uce"), "float32")
    assert request["layers"] == list(range(16))  # tests/test_export.py builds it: 32 to_k/to_v matrices


@pytest.mark.parametrize("kwargs, message", [
    ({"method": "loco", "layers": (8,), "erase_scale": 2.0}, "--erase-scale/--preserve-scale are for --method uce"),
    ({"method": "uce", "preserve_others": True}, "--method uce always preserves"),
    ({"method": "neuron", "layers": (8,), "lam": 0.1}, "--lambda are for the closed-form methods only"),
])
def test_uce_options_are_refused_elsewhere(kwargs, message):
    with pytest.raises(UserError, match=message):
        EditSpec("tiny-sd1", "style", "van gogh", **kwargs)
