"""The app's screens: search (the main one), help and the skipped-files list."""
