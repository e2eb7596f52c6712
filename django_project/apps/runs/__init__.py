"""Runs: plans and their budgets, executions, the hash-chained event ledger, and run_processor."""
