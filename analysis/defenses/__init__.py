"""Defenses on stored traffic: what would stop the eavesdropper, and at what cost.

Each defense is a documented, seeded transformation of a capture's packet
sequence (time, signed size; positive from the device), modelling what a
padding or shaping device and cloud would put on the wire: ``trace`` holds the
sequence types and the constant-rate sender they share, ``registry`` the names,
parameters and specs (``front:n=1400,w=1-8``), ``padding`` packet padding and
size noise, ``rate`` the constant-rate family (BuFLO, CS-BuFLO, Tamaraw,
RegulaTor), ``dummies`` the dummy-packet family (WTF-PAD, FRONT), ``overhead``
the cost of a defended trace, and ``dataset`` defended campaigns in the catalog.
"""
