"""Sample tasks used by the sample routes.yaml. Each module registers its tasks with @task."""
