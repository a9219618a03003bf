"""The run directory: its write-once SQLite ledger and its fingerprint.

- ``ledger``: records written once, read back on resume; the lock; running costs and work lost to a kill;
- ``rundir``: the fingerprint (digests of the data, the ladder's weights, the settings) and ``--restart``.
"""
