"""Prompts: per-class voice prompt lists and their synthesized speech."""
