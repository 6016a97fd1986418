"""Hydra glue of nemo_rl_sweep. Hydra imports every module here at start-up, so they stay light."""
