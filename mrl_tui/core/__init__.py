"""The headless core: corpus, chunking, embedding, nested index, cache. No Textual here."""
