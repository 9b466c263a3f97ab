"""GRPO training of one LoRA for every style (`stylegrpo train`): TRL GRPOTrainer glue, rewards, recipes."""
