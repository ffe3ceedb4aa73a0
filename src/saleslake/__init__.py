"""saleslake: a sales data lakehouse in a box.

The public entry points live in :mod:`saleslake.api`; the CLI and the Airflow DAGs call
only those.
"""

__version__ = "0.1.0"
