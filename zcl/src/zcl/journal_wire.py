"""The journal's wire format: what a writer and the collector send each other.

    writer -> collector   [VERSION, record_id, line]            a record: one JSON line
    collector -> writer   [VERSION, ACK, record_id, ...]        on disk (after fsync)
    collector -> writer   [VERSION, REFUSED, record_id, reason] never to be written; do not
                                                                resend (its reason says why)

The line is the file journal's own format (journal.py), so the collector appends it as it
came; `record_id` is the line's own, repeated in a frame so that neither side parses JSON to
match an acknowledgement to its record. Frames of other shapes are dropped and counted.
"""

from __future__ import annotations

VERSION = b"ZCJ1"  # zcl journal protocol, version 1
ACK = b"ack"
REFUSED = b"refused"
