"""report: Markdown reports (tables + loss plot) from the stage outputs of one experiment, or several side by side."""
