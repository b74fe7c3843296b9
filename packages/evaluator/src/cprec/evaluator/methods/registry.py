"""Every method kind and its class as a "module:Class" string: the config lists the kinds from here
without importing torch, scikit-learn or transformers, and `make_method` imports the one it needs."""

METHODS = {
    "popularity": "cprec.evaluator.methods.popularity:Popularity",
    "content": "cprec.evaluator.methods.content:ContentTfidf",
    "sasrec": "cprec.evaluator.methods.sasrec:SASRecMethod",
    "llm": "cprec.evaluator.methods.llm:LLMZeroShot",
}
