"""Prefect flows: thin wrappers that resolve settings, call `kbtc` steps, log and publish artifacts."""
