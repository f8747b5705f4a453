"""One open KPL aggregated record per predicted shard, with exact size accounting.

A Kinesis record's size is its data plus its partition key (UTF-8). For an aggregate that is
magic + protobuf + MD5 + the aggregate's partition key (its first user record's), so every byte
is counted before a record is added, and a full aggregate is exactly at or under the limit.
A lone record is sent as itself (its own key and explicit hash key), as the KPL does.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from itertools import accumulate, chain, compress, count
from operator import add, itemgetter
from typing import TYPE_CHECKING, Any

from pipeline.codecs import kpl
from producers.records import KinesisRecord

if TYPE_CHECKING:
    from producers.shard_map import ShardMap

MAX_RECORD_BYTES = 1024 * 1024
OVERHEAD = kpl.OVERHEAD

_MAGIC = kpl.MAGIC
_hashlib_md5 = hashlib.md5  # OpenSSL's: the fastest here for the large inputs aggregates are
_FEW_PIECES = 512
_key_entry = kpl.key_entry
_varint = kpl.varint
_record_header = kpl.record_header
# Byte strings that repeat across records, made once: the partition key table's entry prefixes
# (tag + length, for keys of up to 256 four-byte characters) and record headers by data length
# and key index.
_PK_PREFIX = [b"\x0a" + kpl.varint(n) for n in range(1025)]
_PK_PREFIX_TEXT = [p.decode() for p in _PK_PREFIX[:0x80]]  # the same, as text (ASCII)
_HEADERS: dict[int, list[bytes]] = {}
_HEADER_ENDS: dict[int, list[int]] = {}
_HEADER_CACHE_INDEXES = 0x4000  # key indexes below this have cached headers (two-byte varints)
_encode = str.encode  # UTF-8 by default
# Records per block of ``route_and_add``: each block is routed and added while its keys and
# data are still in the CPU caches (one pass over all keys, then another, misses on every key).
_BLOCK = 2048
# Key table indexes as int objects made once (the table of a 1 MiB aggregate of 100-byte records
# has about 7,000 keys at most): the batch path takes them from here instead of making its own.
_INDEXES = list(range(0x8000))
_first = itemgetter(0)


def _first_position(group: tuple[Any, Sequence[int]]) -> int:
    return group[1][0]


def _header(pk_index: int, data_len: int) -> bytes:
    """``kpl.record_header`` without an explicit hash key, cached for small indexes."""
    if pk_index >= _HEADER_CACHE_INDEXES:
        return _record_header(pk_index, None, data_len)
    hs = _HEADERS.get(data_len)
    if hs is None or len(hs) <= pk_index:
        hs = _headers(data_len, pk_index + 1)
    return hs[pk_index]


def _headers(data_len: int, stop: int) -> list[bytes]:
    """The cached headers for ``data_len``, holding at least the key indexes below ``stop``
    (at most ``_HEADER_CACHE_INDEXES``); ``_HEADER_ENDS[data_len][i]`` is the total length of
    the headers of key indexes below ``i``."""
    hs = _HEADERS.get(data_len)
    if hs is None:
        if len(_HEADERS) >= 4096:
            _HEADERS.clear()
            _HEADER_ENDS.clear()
        hs = _HEADERS[data_len] = []
        _HEADER_ENDS[data_len] = [0]
    if len(hs) < stop:
        ends = _HEADER_ENDS[data_len]
        for i in range(len(hs), stop):
            h = _record_header(i, None, data_len)
            hs.append(h)
            ends.append(ends[-1] + len(h))
    return hs


def _key_entries(keys: Sequence[str]) -> tuple[bytes, int]:
    """The partition key table entries (tag, length, UTF-8 key) of ``keys``, joined; and the
    length of each entry when they all have one length (UUIDs, padded ids), else 0."""
    if not keys:
        return b"", 0
    lens = list(map(len, keys))
    first = lens[0]
    if first < 0x80 and lens.count(first) == len(lens):
        # One prefix for all, before the first key and between the others; joined as text and
        # encoded once, which is exact for ASCII keys: one byte per character.
        sep = _PK_PREFIX_TEXT[first]
        joined = sep.join(keys)
        if joined.isascii():
            return (sep + joined).encode(), first + 2
    kbs = list(map(_encode, keys))
    pieces = [b""] * (2 * len(kbs))
    pieces[0::2] = map(_prefix, map(len, kbs))
    pieces[1::2] = kbs
    return b"".join(pieces), 0


def _prefix(n: int) -> bytes:
    """A key table entry's tag and length, for a key of ``n`` bytes."""
    return _PK_PREFIX[n] if n < len(_PK_PREFIX) else b"\x0a" + _varint(n)


def _entry_lengths(keys: Sequence[str]) -> list[int]:
    """The length of each key's table entry."""
    lens = list(map(len, map(_encode, keys)))
    return list(map(add, lens, map(len, map(_prefix, lens))))


def _assemble(pk_entries: list[bytes], ehk_entries: list[bytes], parts: list[bytes]) -> bytes:
    """``kpl.assemble``, with one copy of the bytes instead of two when the pieces are few (the
    chunks ``add_many`` joined): the MD5 is taken over the pieces, then they are joined with the
    magic and the digest at once (an aggregate is up to 1 MiB)."""
    if len(parts) + len(pk_entries) > _FEW_PIECES:
        return kpl.assemble(pk_entries, ehk_entries, parts)  # one update call per piece costs more
    md5 = _hashlib_md5()
    update = md5.update
    for piece in pk_entries:
        update(piece)
    for piece in ehk_entries:
        update(piece)
    for piece in parts:
        update(piece)
    return b"".join(chain((_MAGIC,), pk_entries, ehk_entries, parts, (md5.digest(),)))


class OpenAggregate:
    """The aggregated record being filled for one shard (mutable working state, not a record)."""

    __slots__ = (
        "shard_id",
        "explicit_hash_key",
        "first_key",
        "first_ehk",
        "size",
        "pk_index",
        "pk_entries",
        "ehk_index",
        "ehk_entries",
        "parts",
        "handles",
        "first_arrival",
        "oldest_arrival",
    )

    def __init__(self, shard_id: str, explicit_hash_key: str, first_arrival: float) -> None:
        self.shard_id = shard_id
        self.explicit_hash_key = explicit_hash_key  # inside the shard's range: pins the aggregate
        self.first_key = ""
        self.first_ehk: str | None = None
        self.size = OVERHEAD
        self.pk_index: dict[str, int] = {}
        self.pk_entries: list[bytes] = []  # the partition key table's bytes, entries or pieces
        self.ehk_index: dict[str, int] = {}
        self.ehk_entries: list[bytes] = []
        self.parts: list[bytes] = []  # record header, data, record header, data, ...
        self.handles: list[Any] = []
        self.first_arrival = first_arrival
        self.oldest_arrival = first_arrival

    def __len__(self) -> int:
        return len(self.handles)

    def seal(self, deadline: float) -> KinesisRecord:
        """The finished Kinesis record."""
        if len(self.handles) == 1:
            data = self.parts[1]
            return KinesisRecord(
                self.shard_id,
                self.first_key,
                self.first_ehk,
                data,
                len(data) + len(self.first_key.encode("utf-8")),
                tuple(self.handles),
                deadline,
                self.oldest_arrival,
            )
        data = _assemble(self.pk_entries, self.ehk_entries, self.parts)
        return KinesisRecord(
            self.shard_id,
            self.first_key,
            self.explicit_hash_key,
            data,
            self.size,
            tuple(self.handles),
            deadline,
            self.oldest_arrival,
        )


class Aggregator:
    """Fills one aggregate per shard; hands back the aggregates it seals.

    ``add`` seals the shard's aggregate when the next record would not fit (size or count);
    ``seal_due`` seals those that waited ``max_buffered_time``; ``seal_all`` seals everything.
    """

    def __init__(
        self,
        max_bytes: int = MAX_RECORD_BYTES,
        max_count: int = 4_294_967_295,
        max_buffered_time: float = 0.1,
    ) -> None:
        self.max_bytes = max_bytes
        self.max_count = max_count
        self.max_buffered_time = max_buffered_time
        self.open: dict[str, OpenAggregate] = {}

    def add(
        self,
        shard_id: str,
        shard_hash_key: str,
        partition_key: str,
        data: bytes,
        explicit_hash_key: str | None,
        handle: Any,
        now: float,
        arrival: float | None = None,
    ) -> KinesisRecord | None:
        """Add one user record to its shard's aggregate; return the aggregate it sealed, if any.

        ``shard_hash_key`` is a hash key inside the shard's range (a decimal string), used as the
        aggregate's explicit hash key; ``arrival`` (default ``now``) is when the record was put.
        """
        agg = self.open.get(shard_id)
        if agg is None:
            agg = self.open[shard_id] = OpenAggregate(shard_id, shard_hash_key, now)
        n = len(data)
        sealed = None
        # This method runs once per user record: it is written for speed (see bench/producer.py).
        while True:
            pki = agg.pk_index.get(partition_key)
            if pki is None:
                pki = len(agg.pk_index)
                kb = partition_key.encode("utf-8")
                entry = _PK_PREFIX[len(kb)] + kb if len(kb) < 0x80 else _key_entry(kb)
                cost = len(entry)
            else:
                entry = None
                cost = 0
            if explicit_hash_key is None:
                ehi = None
                ehk_entry = None
                hs = _HEADERS.get(n)
                header = hs[pki] if hs is not None and pki < len(hs) else _header(pki, n)
            else:
                ehi = agg.ehk_index.get(explicit_hash_key)
                if ehi is None:
                    ehi = len(agg.ehk_entries)
                    ehk_entry = _key_entry(explicit_hash_key.encode("ascii"), True)
                    cost += len(ehk_entry)
                else:
                    ehk_entry = None
                header = _record_header(pki, ehi, n)
            cost += len(header) + n
            handles = agg.handles
            if not handles:
                break
            if agg.size + cost <= self.max_bytes and len(handles) < self.max_count:
                break
            sealed = agg.seal(agg.first_arrival + self.max_buffered_time)
            agg = self.open[shard_id] = OpenAggregate(shard_id, shard_hash_key, now)
        if not handles:
            agg.first_key = partition_key
            agg.first_ehk = explicit_hash_key
            cost += len(partition_key.encode("utf-8"))  # the aggregate's own partition key
        if entry is not None:
            agg.pk_index[partition_key] = pki
            agg.pk_entries.append(entry)
        if ehk_entry is not None:
            assert explicit_hash_key is not None and ehi is not None
            agg.ehk_index[explicit_hash_key] = ehi
            agg.ehk_entries.append(ehk_entry)
        parts = agg.parts
        parts.append(header)
        parts.append(data)
        handles.append(handle)
        agg.size += cost
        if arrival is not None and arrival < agg.oldest_arrival:
            agg.oldest_arrival = arrival
        return sealed

    def route_and_add(
        self,
        shard_map: ShardMap,
        partition_keys: Sequence[str],
        datas: Sequence[bytes],
        now: float,
        handles: Sequence[Any] | None = None,
        arrivals: Sequence[float] | None = None,
    ) -> list[KinesisRecord]:
        """Predict each record's shard (``shard_map.route_many``) and add it (``add_many``), a
        block of records at a time; the aggregates sealed, in the order ``add`` seals them."""
        n = len(partition_keys)
        if n <= _BLOCK:
            return self.add_many(
                shard_map.route_many(partition_keys),
                shard_map.start_keys,
                partition_keys,
                datas,
                now,
                handles,
                arrivals,
            )
        sealed: list[KinesisRecord] = []
        route_many = shard_map.route_many
        start_keys = shard_map.start_keys
        for lo in range(0, n, _BLOCK):
            hi = lo + _BLOCK
            keys = partition_keys[lo:hi]
            sealed += self.add_many(
                route_many(keys),
                start_keys,
                keys,
                datas[lo:hi],
                now,
                None if handles is None else handles[lo:hi],
                None if arrivals is None else arrivals[lo:hi],
            )
        return sealed

    def add_many(
        self,
        groups: Iterable[tuple[Any, Sequence[int]]],
        shard_hash_keys: dict[str, str],
        partition_keys: Sequence[str],
        datas: Sequence[bytes],
        now: float,
        handles: Sequence[Any] | None = None,
        arrivals: Sequence[float] | None = None,
    ) -> list[KinesisRecord]:
        """``add`` for many records without explicit hash keys; the aggregates it sealed.

        ``groups`` is ``ShardMap.route_many(partition_keys)``: (shard, positions) per shard, the
        positions ascending. ``handles`` default to None per record, ``arrivals`` to ``now``.
        The result is what calling ``add`` for each record in order gives: the same aggregates,
        byte for byte, sealed in the same order (tests compare the two).
        """
        sealed: list[tuple[int, KinesisRecord]] = []
        n = len(partition_keys)
        groups = sorted((g for g in groups if len(g[1])), key=_first_position)
        opened = self.open
        for shard, _ in groups:
            # Open aggregates in the order their first records come, as ``add`` would.
            if shard.shard_id not in opened:
                opened[shard.shard_id] = OpenAggregate(shard.shard_id, shard_hash_keys[shard.shard_id], now)
        for shard, positions in groups:
            shard_id = shard.shard_id
            keys: Sequence[str] = partition_keys
            data: Sequence[bytes] = datas
            hs: Sequence[Any] | None = handles
            if len(positions) == 1:
                i = positions[0]
                keys, data, hs = [partition_keys[i]], [datas[i]], None if handles is None else [handles[i]]
            elif not (type(positions) is range and len(positions) == n and positions.start == 0):
                # One getter for the group's items of each list: tuples made in single C calls.
                take = itemgetter(*positions)
                keys, data, hs = take(partition_keys), take(datas), None if handles is None else take(handles)
            self._fill(shard_id, shard_hash_keys[shard_id], keys, data, hs, positions, now, arrivals, sealed)
        if len(sealed) > 1:
            sealed.sort(key=_first)
        return [kr for _, kr in sealed]

    def _fill(
        self,
        shard_id: str,
        shard_hash_key: str,
        keys: Sequence[str],
        datas: Sequence[bytes],
        handles: Sequence[Any] | None,
        positions: Sequence[int],
        now: float,
        arrivals: Sequence[float] | None,
        sealed: list[tuple[int, KinesisRecord]],
    ) -> None:
        """Add one shard's records (in order) to its aggregate, a chunk at a time.

        Each chunk is priced whole with C-level passes: the key table entries of the keys new
        to the aggregate, each record's header and data. When it fits (the usual case) it is
        committed whole; otherwise the exact cumulative sizes find the first record that does
        not fit: the records before it are committed and the aggregate is sealed there, as
        ``add`` does when that record comes.
        """
        agg = self.open.get(shard_id)
        if agg is None:
            agg = self.open[shard_id] = OpenAggregate(shard_id, shard_hash_key, now)
        max_bytes = self.max_bytes
        m = len(keys)
        a = 0
        per_record = len(datas[0]) + 8  # a record's cost, estimated; refined as chunks go
        while a < m:
            pk_index = agg.pk_index
            held = len(agg.handles)
            room = max_bytes - agg.size
            # As many records as should fit, so that most chunks are taken whole.
            chunk = min(max(16, min(4096, room // per_record)), max(1, self.max_count - held))
            b = min(m, a + chunk)
            if a or b < m:
                ck = keys[a:b]
                cd = datas[a:b]
            else:
                ck, cd = keys, datas  # the whole group in one chunk: no copies
            k = b - a
            base = len(pk_index)
            # Each key's index in the table, inserting the keys it lacks (undone below for keys
            # first used after a cut); one pass when every key is new or every key is known.
            numbers = _INDEXES[base : base + k] if base + k <= len(_INDEXES) else count(base)
            pkis: Sequence[int] = list(map(pk_index.setdefault, ck, numbers))
            added = len(pk_index) - base
            all_new = added == k
            new: Sequence[str]
            if all_new:
                new = ck  # random keys: indexes base, base + 1, ... in order
            elif not added:
                new = ()  # a few hot keys, all in the table already
            else:
                # Keys new to the table got indexes with gaps (a repeated key took a number
                # too): number them again in order of first use.
                new = list(dict.fromkeys(compress(ck, map(base.__le__, pkis))))
                pk_index.update(zip(new, count(base)))
                pkis = list(map(pk_index.__getitem__, ck))
            stop = base + len(new)
            entries, entry_len = _key_entries(new)
            entries_len = len(entries)
            dl = list(map(len, cd))
            d0 = dl[0]
            if stop <= _HEADER_CACHE_INDEXES and dl.count(d0) == k:
                hl = _headers(d0, stop)
                if not all_new:
                    hd = list(map(hl.__getitem__, pkis))
                    headers_len = sum(map(len, hd))
                else:
                    hd = hl[base:stop]
                    ends = _HEADER_ENDS[d0]
                    headers_len = ends[stop] - ends[base]
                data_len = d0 * k
            else:
                hd = list(map(_header, pkis, dl))
                headers_len = sum(map(len, hd))
                data_len = sum(dl)
            first_key_bytes = 0 if held else len(ck[0].encode("utf-8"))
            total = headers_len + data_len + entries_len + first_key_bytes
            if total <= room and held + k <= self.max_count:
                take = k
                keep = len(new)
            else:
                # The exact cut: the size after each record, new keys' entries counted where
                # they are first used, the aggregate's own partition key with its first record.
                costs = list(map(add, map(len, hd), dl))
                costs[0] += first_key_bytes
                entry_lens = [entry_len] * len(new) if entry_len else _entry_lengths(new)
                if all_new:
                    firsts: Sequence[int] = range(k)
                    costs = list(map(add, costs, entry_lens))
                else:
                    first_at = dict(zip(reversed(ck), range(k - 1, -1, -1), strict=True))
                    firsts = list(map(first_at.__getitem__, new))
                    for i, e in zip(firsts, entry_lens, strict=True):
                        costs[i] += e
                cum = list(accumulate(costs, initial=0))
                # (room < 0 after a lone record larger than max_bytes: nothing more fits)
                take = max(0, min(bisect_right(cum, room) - 1, self.max_count - held))
                if not held:
                    take = max(take, 1)  # a lone record always goes (put checked its size)
                keep = bisect_left(firsts, take)  # new keys first used before the cut
                total = cum[take]
                for key in new[keep:]:
                    del pk_index[key]
                entries = entries[: keep * entry_len if entry_len else sum(entry_lens[:keep])]
            if not held:
                agg.first_key = ck[0]
                agg.first_ehk = None
            # Each chunk's key table entries and records are joined now, while their bytes are
            # in the CPU caches: sealing then joins a few large pieces instead of four small
            # ones per record. (A lone record keeps its header and data apart: ``seal`` sends
            # its data as it is.)
            if keep:
                agg.pk_entries.append(entries)
            if take:
                pair = [b""] * (2 * take)
                pair[0::2] = hd[:take] if take < k else hd
                pair[1::2] = cd[:take] if take < k else cd
                if take > 1 or held:
                    agg.parts.append(b"".join(pair))
                else:
                    agg.parts += pair
                if handles is None:
                    agg.handles += [None] * take
                else:
                    agg.handles += handles[a : a + take]
                if arrivals is not None:
                    oldest = min(map(arrivals.__getitem__, positions[a : a + take]))
                    if oldest < agg.oldest_arrival:
                        agg.oldest_arrival = oldest
                agg.size += total
                per_record = max(1, total // take)
            a += take
            if take < k:
                # The record at ``a`` does not fit: seal, as ``add`` does when that record comes.
                sealed.append((positions[a], agg.seal(agg.first_arrival + self.max_buffered_time)))
                agg = self.open[shard_id] = OpenAggregate(shard_id, shard_hash_key, now)

    def next_deadline(self) -> float | None:
        """When the oldest open aggregate is due, or None if none is open."""
        if not self.open:
            return None
        return min(a.first_arrival for a in self.open.values()) + self.max_buffered_time

    def seal_due(self, now: float, hold: Iterable[str] = (), early: float = 0.0) -> list[KinesisRecord]:
        """Seal the aggregates that waited ``max_buffered_time``, except the shards in ``hold``.

        A shard whose limiter already has a backlog is held: sending its aggregate early would
        not get it out sooner, and letting it fill saves records and requests. When one aggregate
        is due, those due within ``early`` seconds go with it, in the same PutRecords request.
        """
        held = set(hold)
        due = [
            (agg.first_arrival + self.max_buffered_time, shard_id)
            for shard_id, agg in self.open.items()
            if shard_id not in held
        ]
        if not due or min(due)[0] > now:
            return []
        out = []
        for deadline, shard_id in due:
            if deadline <= now + early:
                out.append(self.open.pop(shard_id).seal(deadline))
        return out

    def seal_all(self) -> list[KinesisRecord]:
        """Seal every open aggregate."""
        out = [a.seal(a.first_arrival + self.max_buffered_time) for a in self.open.values()]
        self.open.clear()
        return out

    def remove_shards(self, shard_ids: Iterable[str]) -> list[Any]:
        """Drop the open aggregates of these shards (gone after resharding); return their handles."""
        out: list[Any] = []
        for shard_id in shard_ids:
            agg = self.open.pop(shard_id, None)
            if agg is not None:
                out.extend(agg.handles)
        return out

    def buffered(self) -> int:
        """User records in open aggregates."""
        return sum(len(a) for a in self.open.values())
