"""The Textual app. Nothing heavy is imported here: the first frame must not wait for torch."""
