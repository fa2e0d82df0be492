"""Model building: the registry of named models, pipeline architectures, loading (registry name, directory, hub id or
a pipeline in memory), the tiny and full-size random-weight builders, the offline CLIP tokenizer, and the forward
order of text-reading attention layers."""
