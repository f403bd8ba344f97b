"""Prompts: per-class voice prompt lists and their synthesized speech.

- :mod:`prompts.classes`: the one list of classes.
- :mod:`prompts.lists`: the list files (``prompts/lists/<class>.txt``, a lab's
  own ``LAB/prompts/<class>.txt``), validation, :func:`~prompts.lists.load_prompts`.
- :mod:`prompts.nonsense`: the seeded generator of unintelligible prompts.
- :mod:`prompts.speech`: the espeak, gtts and recorded speech engines.
- :mod:`prompts.audio`: the one audio format every clip is normalized to.
- :mod:`prompts.cache`: the on-disk audio cache in the lab directory.
- :mod:`prompts.synth`: synthesize every prompt up front.
"""
