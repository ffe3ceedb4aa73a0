"""Orchestration: the stage runner (:mod:`.runner`), the batch commands (:mod:`.batch`),
the point-of-sale stream (:mod:`.stream`), the quality gate (:mod:`.gate`) and the demo
(:mod:`.demo`). Called by :mod:`saleslake.api` only; calls the stages (sources, bronze,
silver, gold, serve)."""
