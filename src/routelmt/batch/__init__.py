"""Hybrid batch translation of a whole file under an exact budget (``routelmt translate
--large``): the plan (``plan``), the router's part (``router``), the large-call ledger
(``ledger``) and the run (``run``)."""

from routelmt.batch.plan import BatchBudget, Plan, Tier, allocate
from routelmt.batch.run import BatchJob, BatchRun, run_batch

__all__ = ["BatchBudget", "BatchJob", "BatchRun", "Plan", "Tier", "allocate", "run_batch"]
