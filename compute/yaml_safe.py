"""YAML as people write it, read strictly: PyYAML's safe loader, refusing what it would otherwise accept silently.

- a key given twice in one mapping (PyYAML keeps the last value, so ``seeds`` written twice loses the first list);
- aliases (``*name``): a config has no need of them, and nested aliases expand exponentially in memory (a
  "billion laughs" document is a few hundred bytes).

Usage: ``raw = load_yaml(path.read_text())``; errors are ``yaml.YAMLError`` whose first line names the problem.
"""

import yaml


class _StrictLoader(yaml.SafeLoader):
    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise yaml.composer.ComposerError(
                None, None, f"an alias (*name) at line {mark.line + 1}: aliases are not accepted, write the value "
                "out", mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                repeated = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key: the base class refuses it
                continue
            if repeated:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} given twice in one mapping (line {key_node.start_mark.line + 1}): "
                    "keep one", key_node.start_mark)
        return super().construct_mapping(node, deep)


def load_yaml(text: str):
    """The value of a YAML document (``yaml.safe_load``'s), refusing repeated keys and aliases."""
    return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader subclass)
