"""The classifier comparison: grids (``grids``), one trial's protocol (``trials``), the exact
grid search (``search``), what a run is asked (``specs``), its data (``sources``, ``synthetic``),
feature matrices (``matrices``), trial keys and the plan (``keys``), running trials locally or on
Dask (``execute``), what the catalog keeps (``storage``), the summary (``summary``), the run
itself (``runner``), paired tests (``stats``) and the report (``report``)."""
