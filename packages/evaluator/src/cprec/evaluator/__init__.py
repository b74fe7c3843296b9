"""CPRec downstream evaluation, a leaf: given models scored on given downstream splits by the
recommenders (popularity, content, SASRec, LLMs zero-shot or already fine-tuned), full-ranking
metrics with paired tests, the typed results record and the report.

Entry point: `cprec.evaluator.evaluate.evaluate(EvalConfig) -> Results`.
"""
