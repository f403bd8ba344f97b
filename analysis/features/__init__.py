"""Feature sets: the study's tcptrace, histogram and combined sets (``sets``), the native
tcptrace port they rest on (``tcptrace``), and the per-capture feature cache in the catalog
(``store``)."""
