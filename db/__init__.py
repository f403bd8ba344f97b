"""The capture catalog: SQLAlchemy models, Alembic migrations and the library API.

Use it from Python without the CLI::

    from echolab.labdir import LabDir
    from echolab.db.catalog import Catalog

    with Catalog.open(LabDir.open("lab")) as catalog:
        for capture in catalog.captures(label="weather"):
            print(capture.id, capture.path)
"""
