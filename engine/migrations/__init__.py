"""Alembic's environment for the database schema: ``env.py``, ``script.py.mako``, ``versions/``.

Owns the revision files, one a schema change, each frozen once released: a revision writes its
own column types (``sa.String``, ``sa.DateTime``) and never imports ``engine.tables``, whose
classes move on. Must not be run by hand with an alembic.ini: ``engine.migrate`` builds the
configuration in code and hands ``env.py`` the connection to migrate.
"""
