"""Prefect tasks: thin wrappers that call tlops and log to MLflow. Importing this package imports nothing heavy."""
