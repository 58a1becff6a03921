"""The demo: synthetic partners' files for a few hundred invented people, loaded through the real adapters."""
