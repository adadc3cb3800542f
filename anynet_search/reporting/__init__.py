"""From studies to what a user reads: loading a study's results, the figures, the analysis run that writes
the report (HTML from `templates/`), config exports and the status of a running study."""
