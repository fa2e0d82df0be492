"""How a window of layers is written, the same in verdicts, tables, the Gallery, exports and the command line:
"layer 8", "layers 8–9", and for layers that are not one run "layers 1–2, 5, 7–8"."""


def layers_text(layers) -> str:
    """Any set of layer indices as runs: ``[8, 9]`` -> "layers 8–9", ``[12]`` -> "layer 12", ``[]`` -> "no layers".

    Usage: ``layers_text(record["layers"])``
    """
    runs: list[list[int]] = []
    for layer in sorted(set(layers)):
        if runs and layer == runs[-1][-1] + 1:
            runs[-1].append(layer)
        else:
            runs.append([layer])
    if not runs:
        return "no layers"
    spans = [str(run[0]) if len(run) == 1 else f"{run[0]}–{run[-1]}" for run in runs]
    return f"layer{'s' if sum(map(len, runs)) > 1 else ''} {', '.join(spans)}"


def window_label(start: int, size: int) -> str:
    """The window of ``size`` layers from ``start``: "layer 8" (size 1), "layers 8–9"."""
    return layers_text(range(start, start + size))


def window_span(start: int, end: int) -> str:
    """A window given as START:END (END exclusive, as on the command line and in ``compute``): "layers 8–9"."""
    return window_label(start, end - start)
