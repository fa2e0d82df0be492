"""LocoGen sweeps: their configs, the window search, and generating, scoring and storing planned cases."""
