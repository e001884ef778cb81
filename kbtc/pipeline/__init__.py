"""Pipeline steps as plain functions (no Prefect): each is also a `kbtc` command and wrapped by a flow."""
