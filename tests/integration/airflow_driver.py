"""Drives real Airflow for tests/integration/test_airflow_dags.py.

Runs with .venv-airflow's Python (Airflow is not installed in the test venv), against the
AIRFLOW_HOME and SALESLAKE_* settings of its environment, and writes one JSON document to
OUT (Airflow's own logs go to stdout/stderr)::

    python airflow_driver.py dagbag OUT         # parse the DAG folder like the DAG processor
    python airflow_driver.py test DAG_ID OUT    # dag.test() one run, then read the metadata DB
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _bag():
    from airflow.configuration import conf
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=conf.get("core", "dags_folder"))


def _scheduler_view(dag) -> dict:
    """The DAG as the scheduler sees it: serialized and deserialized, as Airflow stores it."""
    from airflow.serialization.serialized_objects import DagSerialization

    scheduled = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag))
    timetable = scheduled.timetable
    condition = getattr(timetable, "asset_condition", None)
    return {
        "timetable": type(timetable).__name__,
        "summary": timetable.summary,
        "assets": sorted(asset.uri for _, asset in condition.iter_assets()) if condition is not None else [],
        "catchup": scheduled.catchup,
        "max_active_runs": scheduled.max_active_runs,
    }


def dagbag() -> dict:
    bag = _bag()
    dags = {}
    for dag_id, dag in bag.dags.items():
        dags[dag_id] = {
            **_scheduler_view(dag),
            "tasks": {
                t.task_id: {
                    "retries": t.retries,
                    "retry_delay_seconds": t.retry_delay.total_seconds(),
                    "on_failure_callback": [cb.__name__ for cb in t.on_failure_callback],
                    "outlets": [a.uri for a in t.outlets],
                    "trigger_rule": str(t.trigger_rule.value if hasattr(t.trigger_rule, "value") else t.trigger_rule),
                }
                for t in dag.tasks
            },
            "upstream": {t.task_id: sorted(t.upstream_task_ids) for t in dag.tasks},
        }
    return {"import_errors": {str(k): v for k, v in bag.import_errors.items()}, "dags": dags}


def _text(state) -> str | None:
    """A state enum (or plain string) as its value."""
    return None if state is None else str(getattr(state, "value", state))


def test(dag_id: str) -> dict:
    """One ``dag.test()`` run, then what it left in the metadata DB."""
    from airflow.models.asset import AssetDagRunQueue, AssetEvent, AssetModel
    from airflow.models.dag import DagModel
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from airflow import settings

    if settings.Session is None:
        settings.configure_orm()
    dag = _bag().dags[dag_id]
    run = dag.test()
    with create_session() as session:
        tasks = {
            ti.task_id: {"state": _text(ti.state), "try_number": ti.try_number}
            for ti in run.get_task_instances(session=session)
        }
        xcoms = {
            x.task_id: XComModel.deserialize_value(x)
            for x in session.scalars(
                select(XComModel).where(
                    XComModel.dag_id == dag_id, XComModel.run_id == run.run_id, XComModel.key == "return_value"
                )
            )
        }
        events = [
            {"uri": uri, "task_id": task_id, "extra": extra}
            for uri, task_id, extra in session.execute(
                select(AssetModel.uri, AssetEvent.source_task_id, AssetEvent.extra)
                .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
                .where(AssetEvent.source_dag_id == dag_id, AssetEvent.source_run_id == run.run_id)
            )
        ]
        queued = [
            {"dag_id": target, "uri": uri}
            for target, uri in session.execute(
                select(AssetDagRunQueue.target_dag_id, AssetModel.uri).join(
                    AssetModel, AssetModel.id == AssetDagRunQueue.asset_id
                )
            )
        ]
        # the scheduler's own question: which asset-triggered DAGs are due for a run now?
        _, triggered = DagModel.dags_needing_dagruns(session)
        due = sorted(triggered)
        session.rollback()  # dags_needing_dagruns locks rows; change nothing
    return {
        "run_id": run.run_id,
        "state": _text(run.state),
        "tasks": tasks,
        "xcoms": xcoms,
        "asset_events": events,
        "queued": queued,
        "due": due,
    }


def main(argv: list[str]) -> int:
    command, *args = argv
    out = Path(args[-1])
    result = dagbag() if command == "dagbag" else test(args[0])
    out.write_text(json.dumps(result, default=str, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
