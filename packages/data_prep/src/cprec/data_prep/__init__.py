"""CPRec data preparation: source readers, the generated default world, cleaning, sequences and tokens."""
