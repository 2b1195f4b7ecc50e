"""The Textual TUI (`migstream tui STREAM`), installed as `migstream.tui`."""
