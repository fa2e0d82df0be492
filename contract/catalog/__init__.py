"""The catalog both sides read, torch-free: the registry of named models (``registry``) and the prompt sets of the
attribute families (``attributes``, the YAML files in ``prompts/``)."""
