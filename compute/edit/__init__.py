"""Editors (LocoEdit's closed form, neurons, DiffQuickFix), their requests and stored folders, and the
evaluation of an edit."""
