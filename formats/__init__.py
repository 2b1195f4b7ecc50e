"""Language-neutral description of the stream (Kaitai Struct), installed as `migstream.formats`."""
