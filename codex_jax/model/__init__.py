"""The one GPT (every family's features are config fields) and Hugging Face import/export."""
