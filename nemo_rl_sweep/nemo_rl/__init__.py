"""NeMo RL integration: load NeMo RL recipes, run its scripts per trial, read their numbers.

Kept free of heavy imports so ``nemo_rl_sweep.nemo_rl.config`` can be imported on its own.
"""
