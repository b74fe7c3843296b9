"""CPRec recipes: `cprec run` wires data_prep, trainer and evaluator on a preset; `cprec tune` sweeps WSA."""
