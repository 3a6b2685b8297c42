"""Evaluating versions on labelled sets.

- ``sets.py``: labelled sets from a folder, a zip, a CSV or an archive (a table model's: a CSV of rows);
- ``run.py``: evaluate(): a set through a Backend, in batches;
- ``metrics.py``: the scores (numpy), the residual plot;
- ``results.py``: the typed result: scores, disagreements, per-item rows;
- ``jobs.py``: EvaluationJobs, an evaluation as a bounded background job.
"""
