"""Traces to students: trace files, tokenizer, student models, training, GGUF export."""
