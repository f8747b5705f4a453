"""Lambda consumers of the stream: one handler per sink, sharing one decode/dedupe core."""
