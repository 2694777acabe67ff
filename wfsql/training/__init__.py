"""Training targets: SFT then DPO on a pairs model, as a node of the DAG (docs/training.md).

Importing this package is cheap: compile reads `config.py` and `compile.py`; torch, TRL and PEFT are
imported by `worker.py` when a run trains.
"""

from wfsql.training.config import TrainingTarget, parse_training, project_targets

__all__ = ["TrainingTarget", "parse_training", "project_targets"]
