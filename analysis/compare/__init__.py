"""The classifier comparison: grids (``grids``), one trial's protocol (``trials``), the
exact grid search (``search``), the run over every feature set, model and trial
(``runner``), paired tests (``stats``) and the report (``report``)."""
