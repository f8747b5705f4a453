"""Positions of user records, as strings whose lexical order is the numeric order.

Kinesis sequence numbers are decimal strings of up to 129 digits; DynamoDB numbers hold 38, so
positions are stored as zero-padded fixed-width strings.
"""

from __future__ import annotations

SEQ_WIDTH = 130
SUB_WIDTH = 10


def encode_position(sequence_number: str | int, sub_sequence: int = 0) -> str:
    """Fixed-width sortable form of (sequence number, sub-sequence number)."""
    return f"{int(sequence_number):0{SEQ_WIDTH}d}.{sub_sequence:0{SUB_WIDTH}d}"


def decode_position(position: str) -> tuple[str, int]:
    """Inverse of ``encode_position``: (sequence number as a decimal string, sub-sequence)."""
    seq, _, sub = position.partition(".")
    return str(int(seq)), int(sub or 0)


def short(position: str) -> str:
    """Compact human/S3-key form: ``<seq>_<sub>`` without padding."""
    seq, sub = decode_position(position)
    return f"{seq}_{sub}"
