"""The real CLIP BPE tokenizer (49,408 tokens), built offline from the vocabulary file shipped in ``assets/``.

The file is OpenAI's ``bpe_simple_vocab_16e6.txt.gz`` (MIT-licensed data, as distributed in open-clip-torch), so
token ids match the released checkpoints (end-of-text = 49407) and token positions behave as in real models.
"""

import functools
import gzip
from pathlib import Path

from transformers import CLIPTokenizer

VOCAB_FILE = Path(__file__).parent / "assets" / "bpe_simple_vocab_16e6.txt.gz"
VOCAB_SIZE = 49408
MAX_LENGTH = 77


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable-character table, which CLIP's BPE is defined over."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars)))


@functools.cache
def _vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    lines = gzip.open(VOCAB_FILE).read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : 49152 - 256 - 2 + 1]]
    tokens = list(_bytes_to_unicode().values())
    tokens += [t + "</w>" for t in tokens]
    tokens += ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(tokens)}, merges


def clip_tokenizer(pad_token: str = "<|endoftext|>") -> CLIPTokenizer:
    """A fresh CLIP tokenizer with the real vocabulary.

    Args:
        pad_token: ``"<|endoftext|>"`` as in SD-1.x, or ``"!"`` as in SD-2.x / SD-XL's second tokenizer.
    """
    vocab, merges = _vocab_and_merges()
    tokenizer = CLIPTokenizer(vocab=dict(vocab), merges=list(merges), pad_token=pad_token,
                              model_max_length=MAX_LENGTH)
    if len(tokenizer) != VOCAB_SIZE:
        raise RuntimeError(f"CLIP tokenizer has {len(tokenizer)} tokens, expected {VOCAB_SIZE}")
    return tokenizer
