"""Feature sets: the study's tcptrace, histogram and combined sets (``sets``: names, records,
data sets; ``transformers``: the scikit-learn transformers), the native tcptrace port they rest on
(``tcptrace``), and the per-capture feature cache in the catalog (``store``)."""
