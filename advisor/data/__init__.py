"""The user's data: a checked path, its rows read and checked, and the splits every run shares.

- ``task``: :func:`load_task_data` -> :class:`TaskData` (columns detected, labels checked, deduplicated);
- ``readers``: a source (file, saved folder, hub id, built-in name) read into raw splits;
- ``splitting``: stratified, seeded splits sized for intervals; nested stratified prefixes;
- ``datafiles``: a ``--data`` path checked before the heavy libraries load.
"""
