"""Collector: drives an Echo (real or simulated), plays prompts and captures its traffic."""
