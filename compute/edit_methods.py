"""The edit methods and their options, shared by the edit command and the dashboard's form (no torch here)."""

METHODS = ("loco", "all-layers", "neuron", "diffquickfix")
# Methods that edit the UNet layers the user chooses (--layers / --from-run); all-layers edits every layer,
# diffquickfix text-encoder layer 0.
CHOSEN_LAYERS = ("loco", "neuron")
# The closed-form methods, which take --positions and --preserve-others.
CLOSED_FORM = ("loco", "all-layers", "diffquickfix")
# Key positions: the last subject token alone, or with every later (end-of-text, padding) position.
POSITIONS = ("subject", "subject+padding")


def default_positions(method: str) -> str:
    """The paper's choice: LocoEdit keys the last subject token; DiffQuickFix's predecessor the padding too."""
    return "subject+padding" if method == "diffquickfix" else "subject"
