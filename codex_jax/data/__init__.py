"""Data: corpus sources and filters, dedup, the tokenizer, packed token files, fine-tuning pairs."""
