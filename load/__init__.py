"""The specification's load profile with Locust: load/phases.yaml (the phases), phases.py (their
schedule), locustfile.py (the users), report.py, machine.py, run.py (``make load``). docs/load.md."""
