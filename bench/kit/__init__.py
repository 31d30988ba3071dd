"""What the benchmarks share — the processes they drive, /proc readings, pgbench — not
benchmarks themselves (those are ``bench/*.py``, each with ``--json``)."""
