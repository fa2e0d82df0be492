"""Where a result came from: library versions and the code's git commit."""

import os
import platform
import subprocess


def versions() -> dict:
    """Versions of the libraries that determine generated images."""
    import diffusers
    import torch
    import transformers

    return {"torch": torch.__version__, "diffusers": diffusers.__version__,
            "transformers": transformers.__version__, "python": platform.python_version()}


def git_commit() -> str | None:
    """The commit of the checkout this code runs from, or None outside git."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=os.path.dirname(os.path.abspath(__file__)))
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None
