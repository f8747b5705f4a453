"""Replay: reprocess any range of history from the stream, the raw archive or an on-failure queue.

``sources`` reads history, ``targets`` delivers it (the consumer's own handler, a deployed function
or a stream), ``versions`` names a reprocess's outputs, ``cursor`` makes a run resumable and
``runner`` wires them; ``cli`` is ``pipeline replay``.
"""
