"""Hydra sweeper plugin: Optuna >= 5 studies with pruning, resumable SQLite/PostgreSQL storage."""
