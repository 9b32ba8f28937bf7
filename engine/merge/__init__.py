"""Merging: an adapter into its base (`merge` jobs) and several models or adapters into one (`merge-models`).

`compat` and `queue` are light (no torch) and refuse what cannot work before a job is queued;
`methods` holds the tensor formulas; `adapter` and `models` are the job handlers.
"""
