"""CPRec continual pre-training: Ray Train + DeepSpeed with the Warmup-Stable-Annealing schedule.

Public API: `cprec.trainer.fit.fit(TrainConfig) -> TrainResult`, `cprec.trainer.schedule.wsa_lr`,
`cprec.trainer.schedule.make_scheduler`; heavy modules are imported only where used.
"""
