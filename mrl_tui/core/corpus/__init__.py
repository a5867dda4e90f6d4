"""Files → documents → chunks: the folder walk, the safe readers, the chunker."""
