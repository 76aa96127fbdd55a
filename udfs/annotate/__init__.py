"""Structured annotations: the attribute vocabulary, prompts, answer parsing, captioner backends
(the ``caption`` stage -> ``silver.captions``)."""
