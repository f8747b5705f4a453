"""Pure codecs: bytes in, bytes or values out, no I/O."""
