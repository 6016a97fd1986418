"""nemo_rl_sweep: hyperparameter search for NeMo RL training runs, usable with or without Hydra."""

__version__ = "0.1.0"
