"""The catalog's web pages: SQL views and canned queries, and the Datasette plugin
that serves capture files and analysis reports (used by ``echolab.db.serve``)."""
