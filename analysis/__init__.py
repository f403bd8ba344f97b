"""Analysis: read captures, build the study's feature sets, compare classifiers."""
