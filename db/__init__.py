"""The capture catalog: SQLAlchemy models, Alembic migrations and the library API.

Use it from Python without the CLI::

    from echolab.lab import Lab
    from db.catalog import Catalog

    with Catalog.open(Lab.open("lab")) as catalog:
        for capture in catalog.captures(label="weather"):
            print(capture.id, capture.path)
"""
