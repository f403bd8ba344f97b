"""Prompts: per-class voice prompt lists and their synthesized speech.

- :mod:`echolab.prompts.classes`: the one list of classes.
- :mod:`echolab.prompts.lists`: the list files (``prompts/lists/<class>.txt``, a lab's
  own ``LAB/prompts/<class>.txt``), validation, :func:`~echolab.prompts.lists.load_prompts`.
- :mod:`echolab.prompts.nonsense`: the seeded generator of unintelligible prompts.
- :mod:`echolab.prompts.speech`: the espeak, gtts and recorded speech engines.
- :mod:`echolab.prompts.audio`: the one audio format every clip is normalized to.
- :mod:`echolab.prompts.cache`: the on-disk audio cache in the lab directory.
- :mod:`echolab.prompts.synth`: synthesize every prompt up front.
"""
