"""LocoLab compute stage: LocoGen localization sweeps and LocoEdit edits on UNet text-to-image models."""

import logging


class _NoTorchvisionNotice(logging.Filter):
    # torchvision is deliberately absent (it would replace the pinned torch); transformers' notice about its PIL
    # fallback is expected and only noise here.
    def filter(self, record: logging.LogRecord) -> bool:
        return "requires torchvision (not installed)" not in record.getMessage()


logging.getLogger("transformers.utils.import_utils").addFilter(_NoTorchvisionNotice())
