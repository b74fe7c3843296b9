"""CPRec downstream evaluation: datasets, recommenders (popularity, content, SASRec, LLM zero-shot and
fine-tuned), full-ranking metrics with paired tests, and the report.

Entry point: `cprec.evaluator.evaluate.evaluate(EvalConfig) -> dict`.
"""
