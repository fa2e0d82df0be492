"""Attention contribution (the DiT paper's localization): the measure and its study."""
