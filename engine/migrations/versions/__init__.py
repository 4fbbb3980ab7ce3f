"""The schema's revisions, oldest first by number (``0001_baseline.py``, ...).

Alembic reads these files by path (it skips this one); the package only ships them.
"""
