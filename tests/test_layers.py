"""Cross-attention layers are found in forward order with the real module names."""

import collections
import json

from locolab.compute.cli import main

SD15_ATTENTIONS = (["down_blocks.0.attentions.0", "down_blocks.0.attentions.1", "down_blocks.1.attentions.0",
                    "down_blocks.1.attentions.1", "down_blocks.2.attentions.0", "down_blocks.2.attentions.1",
                    "mid_block.attentions.0"]
                   + [f"up_blocks.{b}.attentions.{a}" for b in (1, 2, 3) for a in (0, 1, 2)])


def test_tiny_sd1_has_the_sd15_paths_in_forward_order(load):
    model = load("tiny-sd1")
    assert [layer.path for layer in model.layers] == [f"{a}.transformer_blocks.0.attn2" for a in SD15_ATTENTIONS]
    assert [layer.index for layer in model.layers] == list(range(16))


def test_tiny_sd1_resolutions_follow_the_unet(load):
    # 64 px image, 4x VAE -> 16x16 latent, halved by each of the three downsamplers.
    resolutions = [layer.resolution for layer in load("tiny-sd1").layers]
    assert resolutions == [16, 16, 8, 8, 4, 4, 2, 4, 4, 4, 8, 8, 8, 16, 16, 16]


def test_tiny_sdxl_has_70_layers_down_mid_up(load):
    layers = load("tiny-sdxl").layers
    assert len(layers) == 70
    assert collections.Counter(layer.block for layer in layers) == {"down": 24, "mid": 10, "up": 36}
    mid = [layer for layer in layers if layer.block == "mid"]
    # Forward order puts the mid block between down and up, and keeps two-digit indices in numeric order.
    assert [layer.index for layer in mid] == list(range(24, 34))
    assert [layer.transformer_index for layer in mid] == list(range(10))
    assert layers[24].text_dim == 64


def test_sd2_layers_are_linear_projection_layout(load):
    layers = load("tiny-sd2").layers
    assert len(layers) == 16
    assert [layer.heads for layer in layers[:3]] == [2, 2, 4]


def test_layers_cli_json_matches_the_model(load, capsys):
    assert main(["layers", "--model", "tiny-sd1", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["architecture"] == "sd1"
    assert [row["path"] for row in listed["layers"]] == [layer.path for layer in load("tiny-sd1").layers]
