"""Frame sources: files, image folders, synthetic patterns and cameras behind sources.base.Source."""
