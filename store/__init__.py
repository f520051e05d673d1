"""The knowledge store: SQL source of truth, lifecycle, the derived Weaviate index, embeddings."""
