"""How a customer's state is stored: orjson, compressed with zstd against a fixed dictionary.

A state's JSON repeats the same field names for every customer (``domain.customer.new_state``
and the nested records of orders, carts, loyalty, RFM, sessions). zstd with a dictionary
holding those names stores a shopper in a fraction of the bytes of its JSON (measured with
``bench/state_size.py``: docs/operations.md, "Size of a customer's state"); docs/domain.md,
"Targets", allows at most 2 KiB per customer, which plain JSON of a shopper with a few orders
already exceeds. Every changelog record, RocksDB value and in-memory store entry shrinks alike.

A live profile's JSON is msgspec's: the state is a dict whose values are typed records
(``domain.records``, msgspec Structs: the typed-state rewrite, docs/design/typed-state.md), each
written as the JSON object of its fields where the dict it replaced stood, so the stored bytes
are the ones orjson wrote for the dicts before. A whole state that is a record (a redirect or an
erasure marker) is written by orjson as the dict it was, without the typed format's tag
(``domain.records.flat_marker``).

Stored values carry their format in the first byte, so a store always reads what an older
worker wrote:

- ``{``: plain orjson, as workers before this format wrote;
- ``0x01``: a zstd frame compressed against ``DICTIONARY_1``.

``decode`` builds the records of the keys that are records in the core's dict
(``domain.records.LEAVES``) after orjson, so a state reads back as the core wrote it.

``DICTIONARY_1`` is part of the stored format and must never change: values written with it
are in changelogs and on disks. A better dictionary is a new format byte beside it. It holds
field names and placeholder values only, never a customer's data.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import msgspec
import orjson
import zstandard

from touchstream.domain.records import Erased, RecordFormatError, Redirect, flat_marker, lift
from touchstream.errors import TouchstreamError

PLAIN = 0x7B  # "{": an orjson object, the format before compression
ZSTD_1 = 0x01

# a raw-content dictionary: zstd finds these field names in it instead of in each value; the
# likeliest matches are nearest the end, where references cost the fewest bits
DICTIONARY_1 = (
    b'{"customer_id":"ts-000000000000000000000000","into":"ts-","erased_at":1700000000000,'
    b'"rank":[1,1700000000000,"ts-"],"merged":["ts-@1"],"refused":[],"asked":[],"pending":{},'
    b'"version":1,"src":{"0":1,"ts-/0":1},"seen":["0000000000000000"],'
    b'"orders":{"":{"at":1700000000000,"net":1000,"eff":1000000,"pts":10,"ref":0}},'
    b'"returns":{"":{"order":"","at":1700000000000,"refund":1000}},"redemptions":{},'
    b'"points":0,"qualifying_spend_minor":0,"signup_bonus_at":null,"first_purchase_at":null,'
    b'"last_purchase_at":null,"loyalty":{"tier":null,"at":null,"due":null,"spend":0,'
    b'"risk":null,"warned":null,"expired":null,"vips":0},'
    b'"first_seen_at":1700000000000,"last_event_at":1700000000000,'
    b'"events":{"page_view":1,"product_view":1,"search":1,"add_to_cart":1,"remove_from_cart":1,'
    b'"checkout_started":1,"purchase":1,"return":1,"identify":1,"loyalty_signup":1,'
    b'"email_open":1,"email_click":1,"consent_updated":1},'
    b'"carts":{"":{"items":{"":[1,1000]},"at":1700000000000,"since":1700000000000,'
    b'"closed_at":null,"reminded":null,"value":0}},"carts_closed_until":null,'
    b'"consent":{"email_marketing":{"granted":true,"at":1700000000000},'
    b'"sms_marketing":{"granted":false,"at":1700000000000},'
    b'"profiling":{"granted":true,"at":1700000000000}},"delivered":[],"deferred":[],'
    b'"session":{"start":1700000000000,"last":1700000000000,"channel":"web","page_views":0,'
    b'"product_views":0,"searches":0,"cart_adds":0,"converted":false,"views":{},"added":[]},'
    b'"late_events":0,"rewards":[],"unlocks":{},'
    b'"identifiers":{"loyalty_id":["L"],'
    b'"email":["0000000000000000000000000000000000000000000000000000000000000000"],'
    b'"phone":[""],"device_id":[""],"anonymous_id":[""]},'
    b'"rfm":{"at":null,"scores":{"r":5,"f":4,"m":3,"segment":"Champions"},"due":null,'
    b'"lapse":null,"figures":{"orders_365":1,"spend_365_minor":1000,'
    b'"avg_order_value_minor":1000,"avg_days_between_purchases":0.0}}}'
)

_DICT_1 = zstandard.ZstdCompressionDict(DICTIONARY_1, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
# level 3 (zstd's default): 9.2 us and 450 bytes mean over the bench's states, level 1 7.9 us
# and 469. The frame needs no checksum (Kafka's record CRC and RocksDB's block checksums cover
# the bytes) nor a dictionary id (the format byte names it). zstandard's (de)compressors must
# not be used by two threads at once: ``_COMPRESS`` and ``_DECOMPRESS`` are the event loop
# thread's, ``_COMPRESS_MANY`` the packing thread's.


def _compressor() -> zstandard.ZstdCompressor:
    """The one setting every stored state is compressed with (``pack``, ``pack_later``)."""
    return zstandard.ZstdCompressor(
        level=3, dict_data=_DICT_1, write_checksum=False, write_dict_id=False
    )


_COMPRESS = _compressor().compress
_DECOMPRESS = zstandard.ZstdDecompressor(dict_data=_DICT_1).decompress
_ZSTD_1 = bytes([ZSTD_1])

# A fetch's states are compressed on a thread of their own while the event loop's thread goes
# on (streams/delivery.py: while the broker acknowledges the fetch's output). python-zstandard
# compresses a whole list in C without the GIL (``multi_compress_to_buffer``; its C backend,
# the one CPython wheels use), so on a second core this is time the event loop's thread no
# longer spends. Its CFFI backend (PyPy, or a failed C build) has the method but raises
# NotImplementedError: there, states are compressed where they are written.
_PACKING: ThreadPoolExecutor | None = None
_COMPRESS_MANY = _compressor().multi_compress_to_buffer if zstandard.backend == "cext" else None


class StateFormatError(TouchstreamError):
    """A stored state no codec of this version reads: never guessed at, never dropped."""


def pack(plain: bytes) -> bytes:
    """The stored form of a state already serialized with orjson."""
    return _ZSTD_1 + _COMPRESS(plain)


def pack_later(plains: list[bytes]) -> Future[Any] | None:
    """``pack`` of each of ``plains``, computed on the packing thread: the future's result is
    the compressed frames in order (``pack_frame`` makes each a stored value). None where the
    zstd backend cannot compress a list without the GIL: ``pack`` them where they are needed."""
    global _PACKING
    if _COMPRESS_MANY is None or not plains:
        return None
    if _PACKING is None:
        _PACKING = ThreadPoolExecutor(1, thread_name_prefix="touchstream-state-pack")
    return _PACKING.submit(_COMPRESS_MANY, plains)  # type: ignore[arg-type]  # (bytes are)


def pack_frame(frame: Any) -> bytes:
    """The stored form of a frame ``pack_later`` compressed: the same bytes as ``pack``."""
    return _ZSTD_1 + frame


def unpack(stored: bytes) -> bytes:
    """The orjson bytes of a stored state, whichever format wrote it."""
    head = stored[0] if stored else None
    if head == PLAIN:
        return stored
    if head == ZSTD_1:
        try:
            return _DECOMPRESS(memoryview(stored)[1:])
        except zstandard.ZstdError as exc:
            raise StateFormatError(f"customer state: corrupt zstd value ({exc})") from exc
    if head is None:
        raise StateFormatError("customer state: empty value")
    raise StateFormatError(
        f"customer state in an unknown format (first byte 0x{head:02x}): written by a newer "
        "Touchstream, or not a Touchstream table"
    )


_RECORD_JSON = msgspec.json.Encoder().encode


def _record(value: Any) -> orjson.Fragment | dict[str, Any]:
    """orjson's hook for a value it does not serialise itself: a record's JSON, by msgspec; a
    redirect or an erasure marker (a whole state) as the dict format 2 stores, without the
    typed format's tag (``domain.records.flat_marker``)."""
    if isinstance(value, (Redirect, Erased)):
        return flat_marker(value)
    if isinstance(value, msgspec.Struct):
        return orjson.Fragment(_RECORD_JSON(value))
    raise TypeError(f"customer state: a {type(value).__name__} is not JSON")


# A live profile (a dict holding records) is written by msgspec's encoder in one pass: the
# same bytes as orjson calling ``_record`` back for each record it holds (every bench state,
# tests/unit/tables/test_state_codec.py), 5.1 against 7.3 us per state once the ledger,
# loyalty marks, RFM, consent, session, carts and the trigger log are records. msgspec writes
# a set as an array where orjson refuses it; the core stores none, which that test's
# comparison with orjson over the bench states holds (orjson would raise on one).
_LIVE_JSON = msgspec.json.Encoder().encode


def plain(state: dict[str, Any] | Redirect | Erased) -> bytes:
    """A state's JSON as stored before compression (``encode`` without the zstd step)."""
    if type(state) is dict:
        return _LIVE_JSON(state)
    return orjson.dumps(state, default=_record)


def encode(state: dict[str, Any] | Redirect | Erased) -> bytes:
    """The stored form of ``state``: a dict whose values may be records (``domain.records``),
    or a redirect or an erasure marker, stored as the dict it was."""
    return pack(plain(state))


def decode(stored: bytes) -> dict[str, Any]:
    """The state ``stored`` holds, its leaf records built (``domain.records.lift``: the keys
    the typed-state rewrite has made records so far, docs/design/typed-state.md, step 3), so
    that ``decode(encode(state)) == state``. A value of a shape no record holds raises
    ``StateFormatError`` naming the bad field, never guessed."""
    state: dict[str, Any] = orjson.loads(unpack(stored))
    try:
        return lift(state)
    except RecordFormatError as exc:
        raise StateFormatError(str(exc)) from exc
